"""``ThreadPool``: the front of ``Pool`` over an engine of threads.

No pipes, no pickling: the threads pull chunks from the same kind of job
queue and complete the result objects themselves.
"""

import collections
import itertools
import threading
import time

from ..exceptions import TaskTimeoutError
from ._errors import traceback
from ._front import Pool
from ._jobs import APPLY, CLOSE, MAP, RUN, TERMINATE
from ._results import _Failure, _abort_all


class ThreadPool(Pool):
    """A ``Pool`` whose workers are threads of this process.

    No pickling: arguments, callables and results are passed as they are,
    and exceptions are re-raised without a remote traceback.

    ``task_timeout``: a call past it fails with ``TaskTimeoutError`` on
    time, but a thread cannot be stopped: it runs the call to its end (its
    result is dropped) while a new thread takes its place in the pool.
    """

    _wrap_exception = False

    def __init__(self, processes=None, initializer=None, initargs=(), *,
                 task_timeout=None):
        super().__init__(processes, initializer, initargs,
                         task_timeout=task_timeout)

    def _make_engine(self):
        return _ThreadEngine(self._pool, self._cache, self._processes,
                             self._initializer, self._initargs)

    # the engine starts plain threads; kept for code that builds workers
    Process = staticmethod(lambda ctx, *args, **kwds:
                           _dummy_process(*args, **kwds))


def _dummy_process(*args, **kwds):
    from ..dummy._process import DummyProcess
    return DummyProcess(*args, **kwds)


class _ThreadEngine:
    """Worker threads pulling tasks from a shared job queue."""

    def __init__(self, pool, cache, processes, initializer, initargs):
        self.pool, self.cache, self.processes = pool, cache, processes
        self.initializer, self.initargs = initializer, initargs
        self.state = RUN
        lock = threading.Lock()
        self.cond = threading.Condition(lock)
        # the watchdog's own condition: a notify() meant for a worker must
        # never be consumed by it
        self.alarm = threading.Condition(lock)
        self.jobs = collections.deque()
        self.busy = 0
        self.thread = None
        # task_timeout: the rest of a chunk whose call timed out, run first
        # (job, index, kind, data, results before it)
        self.retry = collections.deque()
        self.running = {}       # thread -> _Call, timed calls only
        self.watchdog = None

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

    def _wake(self):
        with self.cond:
            self.cond.notify()

    def _take(self):
        """The next (job, index, kind, data, prefix) to run, or None to
        exit (prefix: see self.retry)."""
        with self.cond:
            while True:
                if self.state == TERMINATE:
                    return None
                if self.retry:
                    return self.retry.popleft()
                for job in self.jobs:
                    if job.sets_length and job.result._buffer is not None \
                            and job.result._held_back(0, self._wake):
                        continue        # imap(buffersize=): consumer behind
                    try:
                        got = job.next_task()
                    except BaseException as exc:
                        got = None
                        job.done_feeding = True
                        job.result._set(job.count, (False, exc))
                    if got is None:
                        self.jobs.remove(job)
                        break
                    if job.sets_length:
                        job.result._count_sent(len(got[2]))
                    return (job,) + got + (None,)
                else:
                    job = got = None      # don't keep the last job alive
                    if self.state == CLOSE and not self.jobs:
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
            job, index, kind, data, prefix = got
            if job.timeout is not None:
                if not self._run_timed(job, index, kind, data, prefix):
                    return      # timed out: another thread took our place
                continue
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

    # -- task_timeout ------------------------------------------------------

    def _run_timed(self, job, index, kind, data, prefix):
        """Run a task of a job with a timeout, call by call, each watched
        by the watchdog.  False if a call timed out (the watchdog completed
        the result and started a replacement: this thread must end)."""
        call = _Call(job, index, kind, data, prefix)
        me = threading.current_thread()
        try:
            if kind == APPLY:
                func, args, kwds = data
                calls = [lambda: func(*args, **kwds)]
            elif kind == MAP:
                calls = [(lambda x=x: job.func(x)) for x in data]
            else:
                calls = [(lambda x=x: job.func(*x)) for x in data]
            for i, one in enumerate(calls):
                with self.cond:
                    if call.abandoned:
                        return False
                    call.item = i
                    call.deadline = time.monotonic() + job.timeout
                    self.running[me] = call
                    self._watch()
                value = one()
                with self.cond:
                    if call.abandoned:
                        return False
                    self.running.pop(me, None)
                call.results.append(value)
            outcome = (True, call.results[0] if kind == APPLY
                       else (prefix or []) + call.results)
        except Exception as exc:
            with self.cond:
                self.running.pop(me, None)
                if call.abandoned:
                    return False
            outcome = (False, exc)
        if self.state == TERMINATE:
            return False
        try:
            job.result._set(index, outcome)
        except BaseException:
            traceback.print_exc()
        return True

    def _watch(self):
        """Start the watchdog, or tell it of a new deadline (lock held)."""
        if self.watchdog is None:
            self.watchdog = threading.Thread(
                target=self._watchdog, daemon=True,
                name='ThreadPoolWatchdog')
            self.watchdog.start()
        self.alarm.notify()

    def _watchdog(self):
        while True:
            expired = []
            with self.cond:
                if self.state == TERMINATE or (
                        self.state == CLOSE and not self.jobs
                        and not self.retry and not self.running):
                    self.watchdog = None
                    return
                now = time.monotonic()
                nearest = None
                for thread, call in list(self.running.items()):
                    if call.deadline <= now:
                        call.abandoned = True
                        del self.running[thread]
                        expired.append((thread, call))
                    elif nearest is None or call.deadline < nearest:
                        nearest = call.deadline
                for thread, call in expired:
                    self._expire(thread, call)
                if not expired:
                    self.alarm.wait(None if nearest is None
                                    else nearest - now)
            for thread, call in expired:
                if call.outcome is not None:
                    try:
                        call.job.result._set(call.index, call.outcome)
                    except BaseException:
                        traceback.print_exc()

    def _expire(self, thread, call):
        """A call ran past its limit (lock held): decide its outcome, queue
        the rest of its chunk, and replace the thread stuck in it."""
        job = call.job
        exc = TaskTimeoutError(
            'a call ran longer than task_timeout=%gs; it fails, but a '
            'thread cannot be stopped: it runs on and its result is '
            'dropped' % job.timeout, job.timeout)
        if call.kind == APPLY or not job.sets_length:
            call.outcome = (False, exc)
        else:
            done = (call.prefix or []) + call.results + [_Failure(exc)]
            rest = call.data[call.item + 1:]
            if rest:
                self.retry.append((job, call.index, call.kind, rest, done))
                call.outcome = None
            else:
                call.outcome = (True, done)
        # the stuck thread is no longer the pool's (join() does not wait
        # for it); a new one takes its place
        try:
            self.pool.remove(thread)
        except ValueError:
            pass
        if self.state == RUN or self.state == CLOSE:
            self._spawn()

    def close(self):
        with self.cond:
            if self.state == RUN:
                self.state = CLOSE
            self.cond.notify_all()
            self.alarm.notify_all()

    def terminate(self):
        with self.cond:
            self.state = TERMINATE
            self.jobs.clear()
            self.retry.clear()
            self.cond.notify_all()
            self.alarm.notify_all()
        # as with processes: what can no longer complete fails, not hangs
        _abort_all(self.cache.values())

    def join(self):
        current = threading.current_thread()
        for t in list(self.pool):
            if t is not current:
                t.join()


class _Call:
    """A task of a timed job being run by a thread, for the watchdog."""

    __slots__ = ('job', 'index', 'kind', 'data', 'prefix', 'item',
                 'deadline', 'results', 'abandoned', 'outcome')

    def __init__(self, job, index, kind, data, prefix):
        self.job, self.index, self.kind = job, index, kind
        self.data, self.prefix = data, prefix
        self.item = 0
        self.deadline = None
        self.results = []
        self.abandoned = False
        self.outcome = None
