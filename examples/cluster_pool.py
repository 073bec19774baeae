"""The Pool API on a Dask cluster: multiprocess.cluster.Pool.

The same calls as a local Pool -- map, imap, starmap, apply_async with a
callback -- run on the workers of a Dask cluster.  Here the pool starts a
LocalCluster of two worker processes on 127.0.0.1 and stops it at the end;
pass client= (a distributed.Client) or address= (a scheduler's address) to
use a cluster that is already running.  Needs the dask extra:

    pip install "multiprocess[dask]"
    python examples/cluster_pool.py
"""
import os

from multiprocess import cluster


class Account:
    """A class of __main__: its instances and methods travel by value."""

    def __init__(self, rate):
        self.rate = rate

    def interest(self, balance):
        return round(balance * self.rate, 2)


def main():
    try:
        import distributed  # noqa: F401
    except ImportError:
        print('distributed is not installed: pip install "multiprocess[dask]"')
        return
    with cluster.Pool(2) as pool:            # two worker processes
        offset = 10
        print("closure:", pool.map(lambda x: x * x + offset, range(8)))
        print("imap, chunks of 3:",
              list(pool.imap(lambda s: s.upper(), 'cluster', chunksize=3)))
        print("starmap:", pool.starmap(pow, [(2, 10), (3, 4)]))
        print("method of a __main__ class:",
              pool.map(Account(0.05).interest, [100, 250.5]))
        done = []
        pool.apply_async(sum, ([1, 2, 3],), callback=done.append).wait(60)
        print("callback got:", done)
        pids = set(pool.map(lambda _: os.getpid(), range(20), chunksize=1))
        print("ran in %d worker processes, none of them this one: %s"
              % (len(pids), os.getpid() not in pids))
        try:
            pool.apply(lambda: {}['missing'])
        except KeyError as exc:
            print("KeyError raised on a worker, re-raised here:", exc)


if __name__ == '__main__':
    main()
