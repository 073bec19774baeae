"""The ``Pool`` API on a Dask cluster: ``multiprocess.cluster.Pool``.

When one machine is not enough, the same calls (``apply_async``, ``map``,
``imap``, ``starmap``, callbacks, ``close``/``join``/``terminate``, the
context manager) run their tasks on the workers of a Dask cluster::

    from multiprocess import cluster

    with cluster.Pool(client=client) as pool:          # an existing Client
        squares = pool.map(lambda x: x * x, range(1000))

    pool = cluster.Pool(address='tcp://127.0.0.1:8786')  # a scheduler
    pool = cluster.Pool(4)     # a LocalCluster of 4 processes, its own

The front -- result objects, chunking, ordering, callbacks -- is
``multiprocess.pool``'s; the tasks are moved by ``distributed`` (see
``multiprocess.pool._dask``).  Functions and arguments travel as bytes
made by multiprocess's pickler, so lambdas, closures and classes of
``__main__`` run on workers that have only multiprocess and dill installed.

``distributed`` is an optional dependency: ``pip install
"multiprocess[dask]"``.  This module imports without it; creating a
``Pool`` then raises ImportError saying so.
"""

import os
import time

from .exceptions import ProcessError
from .pool import _front
from .pool._jobs import INIT

__all__ = ['Pool']

_EXTRA = 'pip install "multiprocess[dask]"'


def _require_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            'multiprocess.cluster.Pool needs the "distributed" package '
            '(Dask); install it with the dask extra: %s' % _EXTRA,
            name='distributed') from exc
    return distributed


class Pool(_front.Pool):
    """A pool whose workers are the threads of a Dask cluster.

    ``client`` is an existing synchronous ``distributed.Client``, left open
    on ``close()``; ``address`` a scheduler address to connect to (the
    connection is ours and closed with the pool); with neither, the pool
    starts a ``LocalCluster`` of ``processes`` single-threaded worker
    processes on 127.0.0.1 (``os.cpu_count()`` by default) and stops it on
    ``close()``/``join()`` or ``terminate()``.

    ``processes`` bounds the tasks in flight on the cluster (default: the
    cluster's total threads) and, as for ``Pool``, sets the default
    chunksize of ``map``.  ``initializer(*initargs)`` runs once in each
    dask worker process, before the first task of this pool there.

    ``maxtasksperchild`` and ``max_memory_per_child`` cannot be honoured
    (dask owns its workers: see its ``memory_limit``) and must be None;
    ``context`` is accepted and unused.  ``task_timeout`` and the
    ``progress`` and ``buffersize`` arguments of the map methods work as
    for ``Pool``, except that a call past its time limit keeps running on
    its worker thread (threads cannot be killed), as in a ``ThreadPool``.
    """

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None, *, client=None,
                 address=None, task_timeout=None, max_memory_per_child=None):
        # __del__ and terminate() look at these even when we raise below
        self._state, self._pool, self._cache = INIT, [], {}
        self._owned = []
        _front._check_pool_args(processes, initializer, maxtasksperchild)
        for name, value in (('maxtasksperchild', maxtasksperchild),
                            ('max_memory_per_child', max_memory_per_child)):
            if value is not None:
                raise ValueError('%s is not supported by cluster.Pool: dask '
                                 'manages its workers' % name)
        _front._check_timeout(task_timeout)
        if client is not None and address is not None:
            raise ValueError('give client= or address=, not both')
        _require_distributed()
        self._client = self._connect(client, address, processes)
        try:
            if processes is None:
                processes = self._cluster_threads()
            super().__init__(processes, initializer, initargs, None, context,
                             task_timeout=task_timeout)
        except BaseException:
            self._close_owned()
            raise

    # -- the cluster ---------------------------------------------------------

    # how long a pool with processes=None waits for a first worker
    WORKER_WAIT = 30

    def _connect(self, client, address, processes):
        import distributed
        if client is not None:
            if not isinstance(client, distributed.Client):
                raise TypeError('client must be a distributed.Client, not %s'
                                % type(client).__name__)
            if client.asynchronous:
                raise ValueError(
                    'cluster.Pool needs a synchronous Client (its calls '
                    'block); this one is asynchronous')
            if client.status not in ('running', 'connecting', 'newly-created'):
                raise ValueError('the Client is %s' % client.status)
            return client
        if address is None:
            cluster = distributed.LocalCluster(
                n_workers=processes or os.cpu_count() or 1,
                threads_per_worker=1, processes=True, host='127.0.0.1',
                dashboard_address='127.0.0.1:0')
            self._owned.append(cluster)
            address = cluster
        client = distributed.Client(address, set_as_default=False)
        # the client before the cluster: closing goes in reverse order
        self._owned.append(client)
        return client

    def _cluster_threads(self):
        # asked of the scheduler (a LocalCluster's own view can lag)
        deadline = time.monotonic() + self.WORKER_WAIT
        while True:
            threads = sum(self._client.nthreads().values())
            if threads:
                return threads
            # a scheduler whose workers are still connecting
            if time.monotonic() > deadline:
                raise ProcessError(
                    'the dask cluster at %s has no workers (waited %d s); '
                    'start some, or pass processes='
                    % (self._client.scheduler.address, self.WORKER_WAIT))
            time.sleep(0.1)

    def _close_owned(self):
        owned, self._owned = self._owned, []
        for thing in reversed(owned):
            try:
                thing.close()
            except BaseException:
                pass

    def _make_engine(self):
        from .pool import _dask
        owned, self._owned = self._owned, []
        return _dask.DaskEngine(
            self._pool, self._cache, self._client, self._processes,
            self._initializer, self._initargs, owned=reversed(owned))

    @property
    def client(self):
        """The ``distributed.Client`` this pool submits through."""
        return self._client

    def __repr__(self):
        cls = type(self)
        return (f'<{cls.__module__}.{cls.__qualname__} state={self._state} '
                f'processes={self._processes} '
                f'scheduler={self._client.scheduler.address}>')
