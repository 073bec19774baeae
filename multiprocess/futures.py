"""``concurrent.futures`` on the multiprocess pool.

``ProcessPoolExecutor`` has the API of the standard library's
``concurrent.futures.ProcessPoolExecutor`` of the running Python, plus what
3.14 added (``map(..., buffersize=)``, ``terminate_workers()``,
``kill_workers()``) on every version.  Callables and arguments cross with
dill's reach (lambdas, closures, functions defined in ``__main__``), and
its futures are ``concurrent.futures.Future`` objects, so ``wait`` and
``as_completed`` work on them.

Unlike the standard library's executor, one dead worker does not break
the executor: the future of the call it was running fails with
``multiprocess.WorkerLostError``, calls it had not started run on another
worker, and the executor goes on.  Only an initializer that fails, or
``terminate_workers()``/``kill_workers()``, make it unusable
(``BrokenProcessPool``, as in the standard library).

How it is built::

    submit() --> pending (deque; futures here can be cancelled)
                    | _feed: while fewer than `limit` calls are out,
                    v        hand the next one to the pool
                 Pool.apply_async(fn, args, kwds, callback, error_callback)
                    |
                    v   (engine thread)
                 callback -> Future.set_result / set_exception, then _feed

Only the pool's public API is used, so the executor runs on whatever engine
the pool has.  No lock of ours is held while calling into the pool: its
callbacks run on its engine thread with the engine's lock held, and they
take ours.
"""

import collections
import itertools
import os
import threading
import time
import weakref
from concurrent.futures import _base
from concurrent.futures.process import BrokenProcessPool

from .util import _chunks

__all__ = ['ProcessPoolExecutor', 'BrokenProcessPool']


def _run_chunk(fn, chunk):
    """One task of ``map(..., chunksize=n)``: the calls of a chunk."""
    return [fn(*args) for args in chunk]


def _initialize(initializer, initargs):
    """Run the user's initializer in a worker; its failure breaks the
    executor as in the standard library (the error says why)."""
    try:
        initializer(*initargs)
    except BaseException as exc:
        raise BrokenProcessPool(
            'A process in the process pool failed in its initializer '
            '(%s: %s); the executor is not usable anymore'
            % (type(exc).__name__, exc)) from exc


def _resolve_context(mp_context, max_tasks_per_child):
    from . import context
    if mp_context is None:
        if max_tasks_per_child is not None:
            # as in the standard library: a worker started by fork from a
            # process with threads may inherit held locks
            return context._default_context.get_context('spawn')
        return context._default_context.get_context()
    if isinstance(mp_context, context.BaseContext):
        return mp_context
    # e.g. a context of the standard library's multiprocessing: ours of
    # the same start method
    method = mp_context.get_start_method(allow_none=False)
    return context._default_context.get_context(method)


class ProcessPoolExecutor(_base.Executor):
    """An executor running calls in a pool of worker processes.

    ``max_workers`` defaults to the number of CPUs; ``mp_context`` picks the
    start method (a multiprocess or multiprocessing context);
    ``initializer(*initargs)`` runs in each worker when it starts; a worker
    is replaced after ``max_tasks_per_child`` calls when that is set.
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None,
                 initargs=(), *, max_tasks_per_child=None):
        if max_workers is None:
            count = getattr(os, 'process_cpu_count', os.cpu_count)
            max_workers = count() or 1
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        ctx = _resolve_context(mp_context, max_tasks_per_child)
        if (max_tasks_per_child is not None
                and ctx.get_start_method() == 'fork'):
            raise ValueError("max_tasks_per_child is incompatible with the "
                             "'fork' multiprocessing start method; supply "
                             "a different mp_context.")
        self._max_workers = max_workers
        self._mp_context = ctx
        self._initializer, self._initargs = initializer, initargs
        self._max_tasks_per_child = max_tasks_per_child
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending = collections.deque()   # (future, fn, args, kwargs)
        self._inflight = {}     # id(future) -> future, handed to the pool
        self._handing = 0       # calls popped from _pending, not yet handed
        # Calls handed to the pool at once: enough to keep every worker
        # busy with one call queued behind the running one; the rest stay
        # cancellable here.
        self._limit = 2 * max_workers
        self._shutdown = False
        self._pool_closed = False
        self._broken = None     # the message once unusable
        self._pool = None
        self._stopper = None    # the thread terminating a broken pool
        self._start_pool()

    def _start_pool(self):
        init, initargs = None, ()
        if self._initializer is not None:
            init, initargs = _initialize, (self._initializer, self._initargs)
        self._pool = self._mp_context.Pool(
            self._max_workers, init, initargs, self._max_tasks_per_child)

    @property
    def _processes(self):
        """pid -> Process of the live workers (what the standard library's
        executor exposes under that name)."""
        pool = self._pool
        if pool is None:
            return {}
        return {p.pid: p for p in list(pool._pool)}

    # -- submitting ------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs):
        """Schedule ``fn(*args, **kwargs)`` in a worker; returns its
        ``concurrent.futures.Future``."""
        with self._lock:
            if self._broken:
                raise BrokenProcessPool(self._broken)
            if self._shutdown:
                raise RuntimeError('cannot schedule new futures after '
                                   'shutdown')
            future = _base.Future()
            self._pending.append((future, fn, args, kwargs))
        self._feed()
        return future

    def _feed(self):
        """Hand pending calls to the pool while fewer than ``_limit`` are
        out; close the pool once shut down and nothing is left to hand."""
        while True:
            with self._lock:
                item = None
                while (self._pending and self._broken is None and
                       len(self._inflight) + self._handing < self._limit):
                    item = self._pending.popleft()
                    if item[0].set_running_or_notify_cancel():
                        break
                    item = None         # cancelled while it waited
                if item is None:
                    close = (self._shutdown and not self._pending
                             and not self._handing and not self._pool_closed
                             and self._broken is None)
                    if close:
                        self._pool_closed = True
                    self._changed.notify_all()
                    break
                self._handing += 1
            future, fn, args, kwargs = item
            item = None
            try:
                self._hand(future, fn, args, kwargs)
            finally:
                with self._lock:
                    self._handing -= 1
        if close:
            self._pool.close()

    def _hand(self, future, fn, args, kwargs):
        key = id(future)
        with self._lock:
            self._inflight[key] = future
        ref = weakref.ref(self)

        def done(value):
            executor = ref()
            if executor is not None:
                executor._complete(key, True, value)

        def failed(exc):
            executor = ref()
            if executor is not None:
                executor._complete(key, False, exc)

        try:
            self._pool.apply_async(fn, args, kwargs, done, failed)
        except BaseException as exc:
            # the pool stopped under us (terminate_workers, a broken pool)
            self._complete(key, False, exc)

    def _complete(self, key, ok, value):
        with self._lock:
            future = self._inflight.pop(key, None)
            broken = (not ok and isinstance(value, BrokenProcessPool)
                      and self._broken is None)
        if future is not None:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if broken:
            self._break(str(value))
        else:
            self._feed()

    def _break(self, message, stop=None):
        """The executor cannot go on: fail every call not completed yet
        and stop the workers (``stop`` is 'terminate' or 'kill' to signal
        them first)."""
        with self._lock:
            if self._broken is None:
                self._broken = message
            failing = [item[0] for item in self._pending]
            self._pending.clear()
            failing += self._inflight.values()
            self._inflight.clear()
        pool = self._pool
        if stop is not None:
            for proc in list(pool._pool):
                try:
                    if proc.is_alive():
                        getattr(proc, stop)()
                except (ValueError, OSError):
                    pass
        for future in failing:
            if not future.done():
                future.set_exception(BrokenProcessPool(message))
        stopper = None
        if threading.current_thread() is pool._worker_handler:
            # (an initializer failure, seen in a callback on the engine
            # thread, which cannot wait for itself to stop)
            stopper = threading.Thread(target=pool.terminate, daemon=True,
                                       name='ProcessPoolExecutor-stop')
            stopper.start()
        else:
            pool.terminate()
        with self._lock:
            self._stopper = stopper
            self._pool_closed = True
            self._changed.notify_all()

    # -- results in order --------------------------------------------------

    def map(self, fn, *iterables, timeout=None, chunksize=1,
            buffersize=None):
        """Like ``map(fn, *iterables)``, the calls made by the workers.

        ``chunksize`` calls travel together as one task; ``timeout`` (seconds
        from this call) bounds the wait for all results; with
        ``buffersize`` the iterables are read lazily and at most that many
        tasks are submitted and not yet consumed.  A call that raised
        raises when its result is reached; leaving the iteration early
        cancels what has not started.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or >= 1.")
        deadline = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables)
        if chunksize > 1:
            tasks = ((_run_chunk, fn, chunk)
                     for chunk in _chunks(calls, chunksize))
        else:
            tasks = ((fn,) + args for args in calls)
        tasks = iter(tasks)
        futures = collections.deque(
            self.submit(*task) for task in
            (tasks if buffersize is None
             else itertools.islice(tasks, buffersize)))
        if buffersize is None:
            tasks = None
        return self._results(futures, tasks, deadline, chunksize > 1)

    def _results(self, futures, tasks, deadline, chunked):
        # a generator of its own, so that the first batch is submitted
        # by map() itself, before anything is consumed
        ref = weakref.ref(self)
        try:
            while futures:
                if tasks is not None:
                    executor = ref()
                    task = next(tasks, None) if executor is not None else None
                    if task is None:
                        tasks = None
                    else:
                        futures.append(executor.submit(*task))
                    executor = None
                future = futures.popleft()
                try:
                    if deadline is None:
                        value = future.result()
                    else:
                        value = future.result(deadline - time.monotonic())
                except BaseException:
                    future.cancel()
                    raise
                future = None
                if chunked:
                    yield from value
                else:
                    yield value
        finally:
            for future in futures:
                future.cancel()

    # -- ending ------------------------------------------------------------

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more calls may be submitted.  ``cancel_futures`` cancels the
        calls that have not started; with ``wait`` this returns once every
        other call completed and the workers exited.  Calling it again
        does nothing more."""
        with self._lock:
            self._shutdown = True
            cancelled = []
            if cancel_futures:
                cancelled = [item[0] for item in self._pending]
                self._pending.clear()
        for future in cancelled:
            future.cancel()
        self._feed()
        pool = self._pool
        if not wait or pool is None:
            return
        if threading.current_thread() is pool._worker_handler:
            return      # a done-callback cannot wait for its own thread
        with self._lock:
            self._changed.wait_for(lambda: self._pool_closed)
        if self._stopper is not None:
            self._stopper.join()
        pool.join()

    def terminate_workers(self):
        """Stop every worker now with SIGTERM.  Calls that have not
        completed fail with ``BrokenProcessPool``; the executor is shut
        down and cannot be used anymore."""
        self._force('terminate')

    def kill_workers(self):
        """As ``terminate_workers()``, with SIGKILL."""
        self._force('kill')

    def _force(self, how):
        with self._lock:
            self._shutdown = True
            cancelled = [item[0] for item in self._pending]
            self._pending.clear()
        for future in cancelled:
            future.cancel()
        self._break('the executor was stopped by %s_workers()' % how, how)
