"""multiprocess.cluster.Pool against dask's own client.submit / client.map,
on the same LocalCluster (127.0.0.1), in one process.

    python benchmarks/bench_cluster.py [--workers 2] [--repeat 3] [--quick]

Cases (the function is a small one of __main__: both sides send it by
value, dask with cloudpickle, we with our pickler):

  submit_1000   1,000 tasks one call each: client.submit + client.gather
                against pool.apply_async + get()
  map_1000      1,000 tasks in one call: client.map + gather against
                pool.map(chunksize=1)
  map_100000    100,000 items: client.map (a task per item, dask's way)
                against pool.map with the Pool's default chunksize

The two take turns (dask, ours, dask, ours, ...) --repeat times so that a
change in the machine's load hits both; the best of each is kept.  The
ratio is our time / dask's time (below 1 means we are faster); the issue
asks at most 1.2 for single tasks and below 1 for chunked maps.
"""
import argparse
import sys
import time


def inc(x):
    return x + 1


def dask_submit(client, pool, n):
    futures = [client.submit(inc, i, pure=False) for i in range(n)]
    out = client.gather(futures)
    assert out[-1] == n


def ours_submit(client, pool, n):
    results = [pool.apply_async(inc, (i,)) for i in range(n)]
    out = [r.get() for r in results]
    assert out[-1] == n


def dask_map(client, pool, n):
    out = client.gather(client.map(inc, range(n), pure=False))
    assert out[-1] == n


def ours_map_cs1(client, pool, n):
    out = pool.map(inc, range(n), chunksize=1)
    assert out[-1] == n


def ours_map(client, pool, n):
    out = pool.map(inc, range(n))
    assert out[-1] == n


CASES = [
    # name, items, dask's way, ours, target ratio (ours / dask at most)
    ('submit_1000', 1000, dask_submit, ours_submit, 1.2),
    ('map_1000', 1000, dask_map, ours_map_cs1, 1.2),
    ('map_100000', 100_000, dask_map, ours_map, 1.0),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--quick', action='store_true',
                    help='a tenth of the items, one round')
    ap.add_argument('--only', help='run only this case')
    args = ap.parse_args()
    import distributed
    from multiprocess import cluster
    repeat = 1 if args.quick else args.repeat
    print('python %s, distributed %s, %d workers x 1 thread'
          % (sys.version.split()[0], distributed.__version__, args.workers))
    with distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True,
            host='127.0.0.1', dashboard_address='127.0.0.1:0') as lc, \
            distributed.Client(lc, set_as_default=False) as client, \
            cluster.Pool(client=client) as pool:
        # warm both paths up: imports on the workers, connections
        dask_map(client, pool, 100)
        ours_map_cs1(client, pool, 100)
        ours_submit(client, pool, 100)
        print('%-12s %8s %10s %10s %7s %7s' % (
            'case', 'items', 'dask s', 'ours s', 'ratio', 'target'))
        failed = False
        for name, n, theirs, ours, target in CASES:
            if args.only and name != args.only:
                continue
            if args.quick:
                n //= 10
            best = {theirs: float('inf'), ours: float('inf')}
            for _ in range(repeat):
                for fn in (theirs, ours):
                    t = time.perf_counter()
                    fn(client, pool, n)
                    best[fn] = min(best[fn], time.perf_counter() - t)
            ratio = best[ours] / best[theirs]
            ok = ratio <= target
            failed |= not ok
            print('%-12s %8d %10.3f %10.3f %7.2f %7.2f %s' % (
                name, n, best[theirs], best[ours], ratio, target,
                '' if ok else '  <-- above target'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
