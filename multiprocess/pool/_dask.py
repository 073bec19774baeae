"""The engine of ``multiprocess.cluster.Pool``: tasks moved by Dask.

Imported only once a cluster pool is created (it needs ``distributed``);
the dask workers import it too, to run ``_run_task``.  The front -- result
objects, chunking, ordering, callbacks -- is the local pool's; this module
only moves tasks::

    caller threads        engine thread              dask client loop          dask workers
    --------------        -------------              ----------------          ------------
    apply_async / map --> jobs (the pool's _Job)
                          pull chunks while fewer
                          than `processes` tasks
                          are in flight; pickle
                          them with our pickler  -->  client.map(_run_task,
                                                      payload bytes, keys)  --> _run_task:
                                                                                unpickle, run,
                                                                                pickle the
                          in-flight count drops  <--  a future finished         outcome (bytes)
                          (room for the next)         gather finished ones
                          decode, complete the   <--  in batches
    AsyncResult.get() <-- result objects, run
                          callbacks

Our engine thread owns the pool's state (jobs, result objects, callbacks);
the client's event loop owns the dask futures.  They talk through
``loop.add_callback`` one way and a condition variable the other, so a
slow callback or a slow iterable never stalls dask's loop, and the dask
loop never runs user code.

Everything crosses the cluster as bytes made by multiprocess's pickler
(dill's reach): dask only ever sees ``_run_task`` (found by name on the
workers) and bytes.  So the scheduler and the workers need multiprocess and
dill installed, never the caller's own modules or ``__main__``.
"""

import collections
import itertools
import os
import pickle
import re
import threading
import time
import uuid

import distributed

from ..exceptions import ProcessError, TaskTimeoutError, WorkerLostError
from ._errors import MaybeEncodingError, _format_tb, traceback
from ._jobs import APPLY, CLOSE, MAP, RUN, TERMINATE
from ._results import _abort_all
from ._wire import (_decode_error, _dumps, _dumps_call,
                    _error_payload, _loads_chunk, _native)


# ------------------------------------------------------- the worker side
# State of one dask worker process, shared by the pools that use it.

_worker_lock = threading.Lock()
_init_blobs = {}            # pool id -> pickled (initializer, initargs)
_initialized = set()        # pool ids whose initializer ran in this process
_funcs = collections.OrderedDict()   # (pool id, job id) -> callable
_FUNC_CACHE = 16


def _initialize(pool_id):
    """Run the pool's initializer once in this process, before its first
    task here.  A failure fails the task that triggered it, and the next
    task of that pool in this process tries again."""
    with _worker_lock:
        if pool_id in _initialized:
            return
        blob = _init_blobs.get(pool_id)
        if blob is None:
            raise ProcessError(
                'this dask worker has not received the initializer of pool '
                '%s (its worker plugin is missing)' % pool_id)
        initializer, initargs = pickle.loads(blob)
        initializer(*initargs)
        _initialized.add(pool_id)


def _job_func(pool_id, job_id, blob):
    """The callable of a map job, unpickled once per process and job."""
    key = (pool_id, job_id)
    with _worker_lock:
        func = _funcs.get(key)
        if func is not None:
            _funcs.move_to_end(key)
            return func
    func = pickle.loads(blob)
    with _worker_lock:
        _funcs[key] = func
        while len(_funcs) > _FUNC_CACHE:
            _funcs.popitem(last=False)
    return func


def _run_timed(calls, timeout):
    """The values of ``calls`` (thunks) run one after the other by a helper
    thread while this one watches the clock: a call past ``timeout``
    seconds fails the task with TaskTimeoutError on time.  A thread cannot
    be stopped, so that call runs on, abandoned (as in a ThreadPool)."""
    cond = threading.Condition(threading.Lock())
    state = {'deadline': time.monotonic() + timeout, 'values': [],
             'error': None, 'done': False, 'abandoned': False}

    def run():
        try:
            for i, call in enumerate(calls):
                with cond:
                    if state['abandoned']:
                        return
                    state['deadline'] = time.monotonic() + timeout
                value = call()
                state['values'].append(value)
        except BaseException as exc:
            state['error'] = exc
        with cond:
            state['done'] = True
            cond.notify()

    threading.Thread(target=run, daemon=True,
                     name='multiprocess-timed-call').start()
    with cond:
        while not state['done']:
            left = state['deadline'] - time.monotonic()
            if left <= 0:
                state['abandoned'] = True
                raise TaskTimeoutError(
                    'a call ran longer than task_timeout (%g s) on the dask '
                    'worker process %d; it runs on in its thread, which '
                    'cannot be stopped' % (timeout, os.getpid()),
                    timeout, None)
            cond.wait(left)
    if state['error'] is not None:
        raise state['error']
    return state['values']


def _run_task(pool_id, has_init, kind, job_id, func_blob, payload,
              timeout=None):
    """One task, in a dask worker thread.  Returns ``(True, pickle of the
    value, seconds)`` or ``(False, error payload, seconds)`` (see
    _wire._error_payload), seconds being how long it ran: the
    task's own exceptions never become dask errors, so a dask error always
    means the cluster failed the task (a lost worker, a cancellation)."""
    func = value = None
    start = time.perf_counter()
    try:
        if has_init and pool_id not in _initialized:
            _initialize(pool_id)
        if kind == APPLY:
            func, args, kwds = pickle.loads(payload)
            if timeout is None:
                value = func(*args, **kwds)
            else:
                value, = _run_timed([lambda: func(*args, **kwds)], timeout)
        else:
            func = _job_func(pool_id, job_id, func_blob)
            items = _loads_chunk(payload)
            if timeout is not None:
                star = kind != MAP
                value = _run_timed(
                    [(lambda x=x: func(*x) if star else func(x))
                     for x in items], timeout)
            elif kind == MAP:
                value = list(map(func, items))
            else:
                value = list(itertools.starmap(func, items))
        try:
            return True, bytes(_dumps(value)), \
                time.perf_counter() - start
        except BaseException as why:
            return False, _error_payload(
                MaybeEncodingError(why, value), None), \
                time.perf_counter() - start
    except BaseException as exc:
        return False, _error_payload(exc, _format_tb(exc)), \
            time.perf_counter() - start


class _InitPlugin(distributed.WorkerPlugin):
    """Hands a pool's initializer to every worker, present and future; the
    first task of the pool in each worker process runs it (in a task
    thread, not on the worker's event loop, which must keep answering)."""

    idempotent = True

    def __init__(self, pool_id, blob):
        self.pool_id, self.blob = pool_id, blob

    def setup(self, worker):
        _init_blobs[self.pool_id] = self.blob

    def teardown(self, worker):
        _init_blobs.pop(self.pool_id, None)
        _initialized.discard(self.pool_id)
        with _worker_lock:
            for key in [k for k in _funcs if k[0] == self.pool_id]:
                del _funcs[key]


# ------------------------------------------------------- the client side

class _Task:
    __slots__ = ('key', 'job', 'index', 'kind', 'payload', 'future')

    def __init__(self, key, job, index, kind, payload):
        self.key, self.job, self.index = key, job, index
        self.kind, self.payload = kind, payload
        self.future = None


_NAME_CHARS = re.compile(r'[^A-Za-z0-9_]+')


def _key_prefix(func):
    # the dashboard groups tasks by the key's prefix: show the user's name
    name = _NAME_CHARS.sub('_', getattr(func, '__name__', '') or '')
    return (name.strip('_') or 'task')[:40]


def _lost_error(exc):
    """The exception a task gets when the cluster failed it."""
    if isinstance(exc, distributed.KilledWorker):
        return WorkerLostError(
            'the dask worker running this task died (the scheduler gave up '
            'after %s attempts, the last on %s); it may have crashed, '
            'called os._exit() or run out of memory'
            % (exc.allowed_failures + 1 if isinstance(
                exc.allowed_failures, int) else 'several',
               getattr(exc.last_worker, 'address', exc.last_worker)))
    return exc


class DaskEngine:
    """Moves the pool's tasks to a dask cluster (see the module docstring).

    Interface used by the pool front: ``populate()``, ``start()``,
    ``submit(job)``, ``close()``, ``terminate()``, ``join()``,
    ``repopulate()``, attributes ``thread`` and ``jobs``.
    """

    # Tasks handed to the scheduler per slot: one running and one waiting,
    # as the local engine keeps in each worker's pipe; FAST_DEPTH while
    # tasks run shorter than SHORT_TASK seconds, since a worker finishing
    # one then waits for a round trip through this client before it gets
    # the next, and each refill (a graph update) costs the scheduler about
    # what a few tasks do.  (How many run at once is up to dask: the
    # cluster's threads.)
    DEPTH = 2
    FAST_DEPTH = 64
    SHORT_TASK = 0.01
    # imap look-ahead, in chunks per slot (as the local engine's)
    LOOKAHEAD = 64
    # how long shutting down may wait on the cluster before giving up
    SHUTDOWN_TIMEOUT = 10

    def __init__(self, pool, cache, client, processes, initializer,
                 initargs, owned=()):
        self.pool, self.cache, self.client = pool, cache, client
        self.loop = client.loop
        self.processes = processes
        self.initializer, self.initargs = initializer, initargs
        self.owned = list(owned)     # client/cluster objects we close
        self.id = uuid.uuid4().hex[:16]
        self.plugin_name = None
        self.state = RUN
        self.cond = threading.Condition(threading.Lock())
        self.woken = False
        self.jobs = collections.deque()
        self.sent = 0               # tasks handed to dask
        self.finished = 0           # of those, known finished on the cluster
        self.outcomes = []          # (task, status, value) from the loop
        self.pending = 0            # tasks handed to dask, not delivered
        self.task_ids = itertools.count()
        self.task_time = 1.0        # moving average of the run time of tasks
        self.thread = None
        self.stopped = threading.Event()
        self.shut = False
        # loop side (touched only on the client's event loop)
        self.tasks = {}             # key -> _Task handed to dask
        self.done = []              # finished, not gathered yet
        self.collecting = False

    # -- life cycle ----------------------------------------------------------

    def populate(self):
        self.pool[:] = ['%s#%d' % (self.client.scheduler.address, i)
                        for i in range(self.processes)]
        if self.initializer is not None:
            from .. import _pickling, reduction
            _pickling._pickle_for_remote(True)
            try:
                blob = bytes(reduction.ForkingPickler.dumps(
                    (self.initializer, self.initargs)))
            finally:
                _pickling._pickle_for_remote(False)
            self.plugin_name = 'multiprocess-pool-' + self.id
            try:
                self.client.register_plugin(_InitPlugin(self.id, blob),
                                            name=self.plugin_name)
            except BaseException:
                self.plugin_name = None
                self._shutdown()
                raise

    def repopulate(self):
        # the cluster keeps its own workers alive
        return None

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name='multiprocess-cluster-engine')
        self.thread.start()

    def wake(self):
        with self.cond:
            self.woken = True
            self.cond.notify()

    def submit(self, job):
        if self.stopped.is_set():
            raise ProcessError("the pool's engine has stopped; create a new "
                               "pool")
        with self.cond:
            self.jobs.append(job)
            self.woken = True
            self.cond.notify()

    def close(self):
        with self.cond:
            if self.state == RUN:
                self.state = CLOSE
            self.woken = True
            self.cond.notify()

    def terminate(self):
        with self.cond:
            # the engine thread empties self.jobs when it sees this: it
            # may be walking that deque right now
            self.state = TERMINATE
            self.woken = True
            self.cond.notify()
        self._call_loop(self._cancel_all)
        _abort_all(self.cache.values())
        if self.thread is not None and \
                self.thread is not threading.current_thread():
            self.thread.join(self.SHUTDOWN_TIMEOUT)
        self._shutdown()

    def join(self):
        if self.thread is not None and \
                self.thread is not threading.current_thread():
            self.thread.join()
        self._shutdown()

    def _shutdown(self):
        """Forget the initializer on the workers; close what we started."""
        if self.shut:
            return
        self.shut = True
        in_loop = self._in_loop()
        if self.plugin_name is not None and not in_loop:
            try:
                self.client.unregister_worker_plugin(self.plugin_name)
            except BaseException:
                pass        # the cluster may be gone already
            self.plugin_name = None
        for thing in self.owned:
            try:
                if in_loop:
                    # a close from the loop's own thread cannot wait for it
                    self.loop.add_callback(thing.close)
                else:
                    thing.close(timeout=self.SHUTDOWN_TIMEOUT)
            except BaseException:
                pass
        self.owned = []

    def _in_loop(self):
        import asyncio
        try:
            return asyncio.get_running_loop() is self.loop.asyncio_loop
        except RuntimeError:
            return False

    def _call_loop(self, func, *args):
        try:
            self.loop.add_callback(func, *args)
        except BaseException:
            pass            # loop closed: nothing left to cancel there

    # -- the engine thread -------------------------------------------------

    def _run(self):
        from .. import _pickling
        # everything this thread pickles goes to other machines
        _pickling._pickle_for_remote(True)
        try:
            while self._step():
                pass
        except BaseException:
            text = traceback.format_exc()
            error = ProcessError('the cluster pool engine failed:\n' + text)
            for result in list(self.cache.values()):
                try:
                    result._abort(error)
                except BaseException:
                    pass
            raise
        finally:
            self.stopped.set()

    def _step(self):
        with self.cond:
            while not self.woken:
                self.cond.wait()
            self.woken = False
            outcomes, self.outcomes = self.outcomes, []
            state = self.state
        if state == TERMINATE:
            self.jobs.clear()
            return False
        for task, status, value in outcomes:
            self._deliver(task, status, value)
        outcomes = task = value = None
        batch = self._fill()
        if batch:
            self._call_loop(self._submit_on_loop, batch)
        return not (state == CLOSE and not self.jobs and not self.pending)

    def _room(self):
        inflight = self.sent - self.finished
        bound = self.processes * (
            self.FAST_DEPTH if self.task_time < self.SHORT_TASK
            else self.DEPTH)
        # Refill in batches, once half the bound has finished: each batch
        # is one client.map, which costs the scheduler a graph update.
        if inflight > bound // 2:
            return 0
        return bound - inflight

    def _fill(self):
        """Tasks to hand to dask now, in submission order, at most as many
        as there is room for."""
        batch = []
        room = self._room()
        jobs = self.jobs
        i = 0
        while room > 0 and i < len(jobs) and self.state != TERMINATE:
            job = jobs[i]
            if job.sets_length and self._held_back(job):
                i += 1
                continue
            task = self._next_task(job)
            if task is None:
                with self.cond:
                    del jobs[i]
                continue
            if task is False:
                continue        # that task failed here; the job goes on
            batch.append(task)
            room -= 1
        self.sent += len(batch)
        self.pending += len(batch)
        return batch

    def _next_task(self, job):
        """The job's next task, None once it has none, False when it could
        not be made (its outcome is already set)."""
        if job.kind != APPLY and not job.sets_length and \
                job.id not in self.cache:
            # a map that already failed: the rest would be wasted
            job.done_feeding = True
            job.source = None
        if job.kind != APPLY and job.wire_func is None \
                and not job.done_feeding:
            try:
                job.wire_func = bytes(_dumps(job.func))
            except BaseException as exc:
                job.fail_rest(exc)
                return None
        try:
            got = job.next_task()
        except BaseException as exc:
            job.fail_rest(exc)
            return None
        if got is None:
            return None
        index, kind, data = got
        try:
            if kind == APPLY:
                payload = bytes(_dumps_call(data))
                func = data[0]
            else:
                payload = bytes(_dumps(data))
                func = job.func
        except BaseException as exc:
            job.result._set(index, (False, exc))
            return False
        if job.sets_length:
            job.result._count_sent(len(data))
        key = '%s-%s-%d' % (_key_prefix(func), self.id, next(self.task_ids))
        return _Task(key, job, index, kind, payload)

    def _held_back(self, job):
        """An imap whose consumer is too far behind (see
        IMapIterator._held_back; imap's buffersize replaces our bound)."""
        return job.result._held_back(
            self.LOOKAHEAD * self.processes * job.chunksize, self.wake)

    def _deliver(self, task, status, value):
        self.pending -= 1
        if status == 'ok':
            ok, blob, took = value
            self.task_time += (took - self.task_time) * 0.2
            if ok:
                try:
                    outcome = (True, _native.loads(blob))
                except BaseException as exc:
                    outcome = (False, MaybeEncodingError(
                        exc, '<the result, which could not be unpickled '
                        'here>'))
            else:
                outcome = (False, _decode_error(blob))
        else:
            outcome = (False, value)
        try:
            task.job.result._set(task.index, outcome)
        except BaseException:
            traceback.print_exc()

    # -- the client's event loop -------------------------------------------

    def _post(self, items, finished=0):
        with self.cond:
            self.outcomes.extend(items)
            self.finished += finished
            self.woken = True
            self.cond.notify()

    def _submit_on_loop(self, batch):
        if self.state == TERMINATE:
            return
        try:
            futures = self.client.map(
                _run_task,
                [self.id] * len(batch),
                [self.initializer is not None] * len(batch),
                [t.kind for t in batch],
                [t.job.id for t in batch],
                [t.job.wire_func or b'' for t in batch],
                [t.payload for t in batch],
                [t.job.timeout for t in batch],
                key=[t.key for t in batch], pure=False)
        except BaseException as exc:
            self._post([(t, 'error', exc) for t in batch], len(batch))
            return
        import asyncio
        for task, future in zip(batch, futures):
            task.future = future
            task.payload = None
            self.tasks[task.key] = task
            asyncio.ensure_future(self._watch(task))

    async def _watch(self, task):
        # Future._state.wait() is what distributed's own wait() and
        # as_completed await; it has no public per-future awaitable that
        # does not also fetch the result (we fetch in batches instead).
        await task.future._state.wait()
        self.done.append(task)
        self._post((), 1)
        if not self.collecting:
            self.collecting = True
            import asyncio
            asyncio.ensure_future(self._collect())

    async def _collect(self):
        """Fetch the values of finished tasks, as many at a time as have
        finished meanwhile."""
        try:
            while self.done:
                batch, self.done = self.done, []
                ready = {t.key: t.future for t in batch
                         if t.future.status == 'finished'}
                values, failure = {}, None
                if ready:
                    try:
                        values = await self.client.gather(
                            ready, errors='skip', asynchronous=True)
                    except BaseException as exc:
                        failure = exc
                items = []
                for t in batch:
                    value = values.get(t.key)
                    if value is not None:
                        items.append((t, 'ok', value))
                        continue
                    status = t.future.status
                    if status == 'error':
                        exc = _lost_error(await t.future.exception(
                            asynchronous=True))
                    elif status == 'cancelled':
                        exc = ProcessError(
                            'dask cancelled this task (the pool was '
                            'terminated, or the cluster or its client '
                            'went away)')
                    else:
                        exc = failure or ProcessError(
                            'the result of this task could not be fetched '
                            'from the cluster (%s)' % status)
                    items.append((t, 'error', exc))
                for t in batch:
                    self.tasks.pop(t.key, None)
                    t.future = None     # dask may forget the key now
                self._post(items)
        finally:
            self.collecting = False

    def _cancel_all(self):
        futures = [t.future for t in self.tasks.values()
                   if t.future is not None]
        self.tasks.clear()
        if futures:
            import asyncio
            asyncio.ensure_future(self.client.cancel(
                futures, asynchronous=True))
