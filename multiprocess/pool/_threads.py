"""``ThreadPool``: the front of ``Pool`` over an engine of threads.

No pipes, no pickling: the threads pull chunks from the same kind of job
queue and complete the result objects themselves.
"""

import collections
import itertools
import threading

from ..exceptions import ProcessError
from ._errors import traceback
from ._front import Pool
from ._jobs import APPLY, CLOSE, MAP, RUN, TERMINATE



class ThreadPool(Pool):
    """A ``Pool`` whose workers are threads of this process.

    No pickling: arguments, callables and results are passed as they are,
    and exceptions are re-raised without a remote traceback.
    """

    _wrap_exception = False

    def __init__(self, processes=None, initializer=None, initargs=()):
        super().__init__(processes, initializer, initargs)

    def _make_engine(self):
        return _ThreadEngine(self._pool, self._cache, self._processes,
                             self._initializer, self._initargs)

    # the engine starts plain threads; kept for code that builds workers
    Process = staticmethod(lambda ctx, *args, **kwds:
                           _dummy_process(*args, **kwds))


def _dummy_process(*args, **kwds):
    from ..dummy import DummyProcess
    return DummyProcess(*args, **kwds)


class _ThreadEngine:
    """Worker threads pulling tasks from a shared job queue."""

    def __init__(self, pool, cache, processes, initializer, initargs):
        self.pool, self.cache, self.processes = pool, cache, processes
        self.initializer, self.initargs = initializer, initargs
        self.state = RUN
        self.cond = threading.Condition(threading.Lock())
        self.jobs = collections.deque()
        self.busy = 0
        self.thread = None

    def _spawn(self):
        t = threading.Thread(target=self._work, daemon=True,
                             name='ThreadPoolWorker-%d' % (len(self.pool) + 1))
        t.pid = None
        self.pool.append(t)
        t.start()

    def populate(self):
        for _ in range(self.processes):
            self._spawn()

    def repopulate(self):
        with self.cond:
            self.pool[:] = [t for t in self.pool if t.is_alive()]
            while len(self.pool) < self.processes and self.state == RUN:
                self._spawn()

    def start(self):
        pass

    def submit(self, job):
        with self.cond:
            self.jobs.append(job)
            self.cond.notify()

    def _take(self):
        """The next (job, index, kind, data) to run, or None to exit."""
        with self.cond:
            while True:
                if self.state == TERMINATE:
                    return None
                while self.jobs:
                    job = self.jobs[0]
                    try:
                        got = job.next_task()
                    except BaseException as exc:
                        got = None
                        job.done_feeding = True
                        job.result._set(job.count, (False, exc))
                    if got is None:
                        self.jobs.popleft()
                        continue
                    return (job,) + got
                job = got = None      # don't keep the last job alive
                if self.state == CLOSE:
                    self.cond.notify_all()
                    return None
                self.cond.wait()

    def _work(self):
        if self.initializer is not None:
            self.initializer(*self.initargs)
        while True:
            got = self._take()
            if got is None:
                return
            job, index, kind, data = got
            try:
                if kind == APPLY:
                    func, args, kwds = data
                    outcome = (True, func(*args, **kwds))
                elif kind == MAP:
                    outcome = (True, list(map(job.func, data)))
                else:
                    outcome = (True, list(itertools.starmap(job.func, data)))
            except Exception as exc:
                outcome = (False, exc)
            if self.state == TERMINATE:
                return
            try:
                job.result._set(index, outcome)
            except BaseException:
                traceback.print_exc()
            got = job = data = outcome = None

    def close(self):
        with self.cond:
            if self.state == RUN:
                self.state = CLOSE
            self.cond.notify_all()

    def terminate(self):
        with self.cond:
            self.state = TERMINATE
            self.jobs.clear()
            self.cond.notify_all()
        # as with processes: what can no longer complete fails, not hangs
        error = ProcessError('the pool was terminated before this task '
                             'completed')
        for result in list(self.cache.values()):
            try:
                result._abort(error)
            except BaseException:
                traceback.print_exc()

    def join(self):
        current = threading.current_thread()
        for t in list(self.pool):
            if t is not current:
                t.join()
