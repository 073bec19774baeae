"""The front of a pool: ``Pool``, what callers see.  It makes result
objects and jobs (chunking, callbacks and ordering live there) and hands
the jobs to its engine through the small interface described in the
package docstring; it never touches a pipe, a pickle or a worker.
"""

import itertools
import warnings

from .. import util
from ._engine import _Engine
from ._jobs import (APPLY, CLOSE, INIT, MAP, RUN, STARMAP, TERMINATE, _Job,
                    _map_chunksize)
from ._results import ApplyResult, IMapIterator, IMapUnorderedIterator, \
    MapResult


class Pool(object):
    """A pool of worker processes running tasks submitted to it.

    ``processes`` defaults to ``os.cpu_count()`` (``os.process_cpu_count()``
    from Python 3.13 on, as the stdlib); ``initializer(*initargs)``
    runs in each worker when it starts; a worker is replaced after
    ``maxtasksperchild`` tasks when that is set; ``context`` picks the start
    method.  A worker that dies while running a task makes that task fail
    with ``WorkerLostError``; the pool replaces it and carries on.

    Beyond the standard library: ``task_timeout`` (seconds) is the default
    limit of every call (see ``apply_async``); a worker whose private
    resident memory exceeds ``max_memory_per_child`` bytes after a task is replaced,
    as with ``maxtasksperchild``.
    """

    # worker tracebacks travel back as text (ThreadPool: False)
    _wrap_exception = True

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None, *, task_timeout=None,
                 max_memory_per_child=None):
        # __del__ looks at these even when the checks below raise
        self._state, self._pool, self._cache = INIT, [], {}
        _check_pool_args(processes, initializer, maxtasksperchild)
        self._task_timeout = _check_timeout(task_timeout)
        self._max_memory = _check_memory(max_memory_per_child)
        self._processes = processes or util._default_pool_size()
        self._initializer, self._initargs = initializer, initargs
        self._maxtasksperchild = maxtasksperchild
        self._ctx = context or _default_context()
        self._engine = self._make_engine()
        self._engine.populate()          # raises after cleaning up on failure
        self._engine.start()
        self._state = RUN
        self._terminate = util.Finalize(self, self._engine.terminate,
                                        exitpriority=15)

    # how workers are made; tests and subclasses replace it
    Process = staticmethod(lambda ctx, *args, **kwds:
                           ctx.Process(*args, **kwds))

    def _make_engine(self):
        # Functions and most arguments go through the reduction layer;
        # imported before the workers exist, forked workers inherit it
        # instead of each importing it while the first task waits.
        from .. import reduction    # noqa: F401
        return _Engine(self._ctx, self._pool, self._cache, self._processes,
                       self._initializer, self._initargs,
                       self._maxtasksperchild, self._wrap_exception,
                       self.Process, self._max_memory)

    # pathos and the standard library's tests look at these
    @property
    def _worker_handler(self):
        return self._engine.thread

    _task_handler = _result_handler = _worker_handler

    @property
    def _taskqueue(self):
        return self._engine.jobs

    def _repopulate_pool(self):
        return self._engine.repopulate()

    def __repr__(self):
        cls = type(self)
        return (f'<{cls.__module__}.{cls.__qualname__} '
                f'state={self._state} pool_size={len(self._pool)}>')

    def __reduce__(self):
        raise NotImplementedError(
            'pool objects cannot be passed between processes or pickled')

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if getattr(self, '_state', None) == RUN:
            # The stdlib's words: users filter this warning by its text.
            _warn(f"unclosed running multiprocessing pool {self!r}",
                  ResourceWarning, source=self)

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- submitting work ------------------------------------------------

    def apply(self, func, args=(), kwds={}, *, task_timeout=None):
        """``func(*args, **kwds)`` in a worker; blocks for the result."""
        return self.apply_async(func, args, kwds,
                                task_timeout=task_timeout).get()

    def apply_async(self, func, args=(), kwds={}, callback=None,
                    error_callback=None, *, task_timeout=None):
        """Like ``apply`` but returns an ``AsyncResult`` at once.

        ``task_timeout`` (seconds; default the pool's) limits the call: past
        it the worker running it is killed and replaced, and the result
        fails with ``TaskTimeoutError``.  The same keyword on the map and
        imap methods limits each call of the function, inside chunks too.
        """
        self._check_running()
        timeout = self._timeout_of(task_timeout)
        result = ApplyResult(self, callback, error_callback)
        self._engine.submit(_Job(result, APPLY, None,
                                 (func, tuple(args), dict(kwds)), False,
                                 timeout=timeout))
        return result

    def map(self, func, iterable, chunksize=None, *, progress=None,
            task_timeout=None):
        """``list(map(func, iterable))`` computed by the workers.

        ``progress``: True draws a progress bar (tqdm when installed, else
        a line of text on a terminal's stderr); a callable is called with
        ``(done, total)`` from the pool's thread, at most about ten times a
        second and once at the end.
        """
        return self._map_async(func, iterable, MAP, chunksize, None, None,
                               progress, task_timeout).get()

    def starmap(self, func, iterable, chunksize=None, *, progress=None,
                task_timeout=None):
        """Like ``map`` but each item is unpacked: ``func(*item)``."""
        return self._map_async(func, iterable, STARMAP, chunksize, None,
                               None, progress, task_timeout).get()

    def map_async(self, func, iterable, chunksize=None, callback=None,
                  error_callback=None, *, progress=None, task_timeout=None):
        """Like ``map`` but returns an ``AsyncResult`` at once (whose
        ``done`` and ``total`` count the calls)."""
        return self._map_async(func, iterable, MAP, chunksize, callback,
                               error_callback, progress, task_timeout)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None, *, progress=None,
                      task_timeout=None):
        """Like ``starmap`` but returns an ``AsyncResult`` at once."""
        return self._map_async(func, iterable, STARMAP, chunksize,
                               callback, error_callback, progress,
                               task_timeout)

    def _map_async(self, func, iterable, kind, chunksize=None,
                   callback=None, error_callback=None, progress=None,
                   task_timeout=None):
        self._check_running()
        timeout = self._timeout_of(task_timeout)
        if not hasattr(iterable, '__len__'):
            iterable = list(iterable)
        length = len(iterable)
        if chunksize is None:
            chunksize = _map_chunksize(length, len(self._pool))
        if length == 0:
            chunksize = 0
        reporter = None
        if progress is not None and progress is not False:
            from ._progress import reporter as make_reporter
            reporter = make_reporter(progress, length)
        result = MapResult(self, chunksize, length, callback, error_callback,
                           reporter)
        if chunksize:
            self._engine.submit(_Job(result, kind, func,
                                     util._chunks(iterable, chunksize), False,
                                     timeout=timeout))
        return result

    def imap(self, func, iterable, chunksize=1, buffersize=None, *,
             progress=None, task_timeout=None):
        """An iterator over ``func(item)`` in order, computed lazily.

        ``buffersize``: at most that many chunks are in flight or waiting
        to be taken, and the input is read only as they are (an endless
        generator works).  Without it the pool reads ahead up to 64 chunks
        per worker.  ``progress`` and ``task_timeout`` as for ``map``.
        """
        return self._imap(IMapIterator, func, iterable, chunksize,
                          buffersize, progress, task_timeout)

    def imap_unordered(self, func, iterable, chunksize=1, buffersize=None, *,
                       progress=None, task_timeout=None):
        """Like ``imap`` but results come in completion order."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize,
                          buffersize, progress, task_timeout)

    def _imap(self, cls, func, iterable, chunksize, buffersize=None,
              progress=None, task_timeout=None):
        self._check_running()
        if chunksize < 1:
            raise ValueError(
                "Chunksize must be 1+, not {0:n}".format(chunksize))
        if buffersize is not None:
            if type(buffersize) is not int:
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
            buffersize *= chunksize         # the bound is kept in items
        timeout = self._timeout_of(task_timeout)
        reporter = None
        if progress is not None and progress is not False:
            from ._progress import reporter as make_reporter
            reporter = make_reporter(progress, None)
        result = cls(self, buffersize, reporter)
        # a chunk cut short by task_timeout carries its failure among its
        # values (see _results._Failure)
        result._mixed = timeout is not None
        self._engine.submit(_Job(result, MAP, func,
                                 util._chunks(iterable, chunksize), True,
                                 chunksize, timeout))
        return result

    def _timeout_of(self, task_timeout):
        if task_timeout is None:
            return self._task_timeout
        return _check_timeout(task_timeout)

    @staticmethod
    def _get_tasks(func, it, size):
        it = iter(it)
        while True:
            chunk = tuple(itertools.islice(it, size))
            if not chunk:
                return
            yield (func, chunk)

    # -- ending ---------------------------------------------------------

    def close(self):
        """No more work will be submitted; workers exit when done."""
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self):
        """Stop the workers now; pending results fail."""
        self._state = TERMINATE
        self._terminate()

    def join(self):
        """Wait for the workers to exit; call ``close`` or ``terminate``
        first."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._engine.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


def _check_pool_args(processes, initializer, maxtasks):
    if processes is not None and processes < 1:
        raise ValueError("Number of processes must be at least 1")
    valid = maxtasks is None or (type(maxtasks) is int and maxtasks > 0)
    if not valid:
        raise ValueError("maxtasksperchild must be a positive int or None")
    if initializer is not None and not callable(initializer):
        raise TypeError('initializer must be a callable')


def _check_timeout(seconds):
    if seconds is None:
        return None
    if type(seconds) is bool or not isinstance(seconds, (int, float)):
        raise TypeError('task_timeout must be a number of seconds or None, '
                        'not %s' % type(seconds).__name__)
    if not seconds > 0:
        raise ValueError('task_timeout must be > 0, not %r' % (seconds,))
    return float(seconds)


def _check_memory(limit):
    if limit is None:
        return None
    if type(limit) is bool or not isinstance(limit, int):
        raise TypeError('max_memory_per_child must be a number of bytes or '
                        'None, not %s' % type(limit).__name__)
    if limit < 1:
        raise ValueError('max_memory_per_child must be > 0, not %r'
                         % (limit,))
    return limit


def _default_context():
    from .. import context
    return context._default_context


