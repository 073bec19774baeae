"""Pool cases of the benchmark suite (run by harness.py; see bench.py).

    python benchmarks/bench_pool.py [--quick] [--only map_chunksize_1] [--pypi DIR]

is `python benchmarks/bench.py --group pool`: the same harness, options and
output.  Pools use the fork start method unless a case says otherwise.
"""
import os
import sys
import time

from harness import case, main


def identity(x):
    return x


def nbytes(b):
    return len(b)


def plus_one(x):
    return x + 1


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _timed_map(pool, items, **kw):
    t = time.perf_counter()
    pool.map(identity, items, **kw)
    return time.perf_counter() - t


@case("map_default_chunksize", n=100_000, quick_n=25_000, smoke_n=100, unit="item")
def b_map_default(mp, n):
    """Pool(2).map(identity, range(n)), default chunksize."""
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        return _timed_map(p, range(n))


@case("map_chunksize_1", n=5_000, quick_n=1_000, smoke_n=50, target=2.0, repeat=2,
      unit="item")
def b_map_cs1(mp, n):
    """Pool(2).map(identity, range(n), chunksize=1)."""
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        return _timed_map(p, range(n), chunksize=1)


@case("imap_unordered_chunksize_1", n=5_000, quick_n=1_000, smoke_n=50, target=2.0,
      repeat=2, unit="item")
def b_imap_unordered(mp, n):
    """Consume Pool(2).imap_unordered(identity, range(n), chunksize=1)."""
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        for _ in p.imap_unordered(identity, range(n), chunksize=1):
            pass
        return time.perf_counter() - t


@case("map_small_batches", n=2_000, quick_n=400, smoke_n=5, repeat=2, unit="map of 10")
def b_map_small(mp, n):
    """Pool(2).map(identity, range(10)), one small batch after another."""
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        items = list(range(10))
        t = time.perf_counter()
        for _ in range(n):
            p.map(identity, items)
        return time.perf_counter() - t


@case("apply_async_latency", n=500, quick_n=200, smoke_n=10, target=2.0,
      busy=True, busy_n=200, busy_quick_n=100, unit="apply")
def b_apply_latency(mp, n):
    """Pool(2).apply_async(identity, (i,)).get(), one at a time."""
    with mp.get_context("fork").Pool(2) as p:
        p.apply(identity, (1,))
        t = time.perf_counter()
        for i in range(n):
            p.apply_async(identity, (i,)).get()
        return time.perf_counter() - t


@case("map_lambda", n=5_000, quick_n=1_000, smoke_n=50, pypi_target=5.0, repeat=2,
      unit="item")
def b_map_lambda(mp, n):
    """Pool(2).map of a lambda, chunksize=1 (the stdlib: the same function at module level)."""
    # The standard library cannot send a lambda: it maps the same function
    # defined at module level, so the ratio is the price of dill's reach.
    if mp.__name__ == "multiprocessing":
        warm, func = identity, plus_one
    else:
        warm, func = (lambda x: x), (lambda x: x + 1)
    with mp.get_context("fork").Pool(2) as p:
        p.map(warm, range(10))
        t = time.perf_counter()
        p.map(func, range(n), chunksize=1)
        return time.perf_counter() - t


@case("map_200_payloads_1mb", n=200, quick_n=20, smoke_n=4, repeat=2, unit="1 MB payload")
def b_map_big(mp, n):
    """Pool(2).map(len, 200 distinct 1 MB bytes objects) (--quick: 20)."""
    # distinct objects: a list repeating one object would be pickled once
    # per chunk (the pickler's memo) and measure nothing
    payloads = [bytes([i % 251]) * (1 << 20) for i in range(n)]
    with mp.get_context("fork").Pool(2) as p:
        p.map(nbytes, payloads[:4])
        t = time.perf_counter()
        p.map(nbytes, payloads)
        return time.perf_counter() - t


def _startup(mp, method, n):
    ctx = mp.get_context(method)
    if method == "forkserver":
        # the fork server itself is started once per program: exclude it
        ctx.Pool(1).terminate()
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Pool(2)
        p.map(identity, range(10))
        p.close()
        p.join()
    return time.perf_counter() - t


@case("startup_fork", n=5, quick_n=2, smoke_n=1, unit="pool")
def b_start_fork(mp, n):
    """Pool(2) created, map of 10 items, close, join; fork."""
    return _startup(mp, "fork", n)


@case("startup_spawn", n=2, quick_n=1, smoke_n=1, repeat=2, unit="pool")
def b_start_spawn(mp, n):
    """Pool(2) created, map of 10 items, close, join; spawn."""
    return _startup(mp, "spawn", n)


@case("startup_forkserver", n=5, quick_n=1, smoke_n=1, unit="pool")
def b_start_forkserver(mp, n):
    """Pool(2) created, map of 10 items, close, join; forkserver."""
    return _startup(mp, "forkserver", n)


# ----------------------------------------------------------------------------
# where we lost or could lose (issue #13)

@case("pool_oversubscribed_chunksize_1", n=5_000, quick_n=1_000, smoke_n=50, repeat=2,
      unit="item")
def b_oversub_cs1(mp, n):
    """Pool(4 per CPU).map(identity, range(n), chunksize=1)."""
    with mp.get_context("fork").Pool(4 * _cpus()) as p:
        p.map(identity, range(200), chunksize=1)
        return _timed_map(p, range(n), chunksize=1)


@case("pool_oversubscribed_default", n=100_000, quick_n=25_000, smoke_n=100, unit="item")
def b_oversub_default(mp, n):
    """Pool(4 per CPU).map(identity, range(n)), default chunksize."""
    with mp.get_context("fork").Pool(4 * _cpus()) as p:
        p.map(identity, range(200), chunksize=1)
        return _timed_map(p, range(n))


def _consume(it):
    for _ in it:
        pass


@case("imap_generator_1m", n=1_000_000, quick_n=100_000, smoke_n=2000, repeat=1,
      unit="item")
def b_imap_generator(mp, n):
    """Consume Pool(2).imap(identity, generator of n ints, chunksize=1000)."""
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        _consume(p.imap(identity, (i for i in range(n)), chunksize=1000))
        return time.perf_counter() - t


@case("imap_list_1m", n=1_000_000, quick_n=100_000, smoke_n=2000, repeat=1,
      busy=True, unit="item")
def b_imap_list(mp, n):
    """Consume Pool(2).imap(identity, list of n ints, chunksize=1000)."""
    items = list(range(n))
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        _consume(p.imap(identity, items, chunksize=1000))
        return time.perf_counter() - t


@case("imap_unordered_list_1m", n=1_000_000, quick_n=100_000, smoke_n=2000, repeat=1,
      unit="item")
def b_imap_unordered_list(mp, n):
    """Consume Pool(2).imap_unordered(identity, list of n ints, chunksize=1000)."""
    items = list(range(n))
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        _consume(p.imap_unordered(identity, items, chunksize=1000))
        return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main(group="pool"))
