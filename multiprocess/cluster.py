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
``multiprocess._daskengine``).  Functions and arguments travel as bytes
made by multiprocess's pickler, so lambdas, closures and classes of
``__main__`` run on workers that have only multiprocess and dill installed.

``distributed`` is an optional dependency: ``pip install
"multiprocess[dask]"``.  This module imports without it; creating a
``Pool`` then raises ImportError saying so.
"""

import os

from . import pool as _pool
from .exceptions import ProcessError

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


class Pool(_pool.Pool):
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

    ``maxtasksperchild`` cannot be honoured (dask owns its workers) and
    must be None; ``context`` is accepted and unused.
    """

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None, *, client=None,
                 address=None):
        # __del__ and terminate() look at these even when we raise below
        self._state, self._pool, self._cache = _pool.INIT, [], {}
        self._owned = []
        _pool._check_pool_args(processes, initializer, maxtasksperchild)
        if maxtasksperchild is not None:
            raise ValueError('maxtasksperchild is not supported by '
                             'cluster.Pool: dask manages its workers')
        if client is not None and address is not None:
            raise ValueError('give client= or address=, not both')
        _require_distributed()
        self._client = self._connect(client, address, processes)
        try:
            if processes is None:
                processes = self._cluster_threads()
            super().__init__(processes, initializer, initargs, None, context)
        except BaseException:
            self._close_owned()
            raise

    # -- the cluster ---------------------------------------------------------

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
        threads = sum(self._client.nthreads().values())
        if not threads:
            # a scheduler whose workers are still connecting
            try:
                self._client.wait_for_workers(1, timeout=30)
            except Exception as exc:
                raise ProcessError(
                    'the dask cluster at %s has no workers (waited 30 s); '
                    'start some, or pass processes='
                    % self._client.scheduler.address) from exc
            threads = sum(self._client.nthreads().values())
        return max(threads, 1)

    def _close_owned(self):
        owned, self._owned = self._owned, []
        for thing in reversed(owned):
            try:
                thing.close()
            except BaseException:
                pass

    def _make_engine(self):
        from . import _daskengine
        owned, self._owned = self._owned, []
        return _daskengine.DaskEngine(
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
