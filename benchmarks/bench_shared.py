"""Shared-state cases of the benchmark suite (run by harness.py; see bench.py).

    python benchmarks/bench_shared.py [--quick] [--only value]

is `python benchmarks/bench.py --group shared`.
"""
import sys
import time
import timeit

from harness import case, main

# The per-access cases run a subprocess of a fraction of a second, and this
# VM moves their time per access by up to 2x for seconds at a time: more
# interleaved fresh processes per stream (see bench.py's CHEAP_ROUNDS).
CHEAP_ROUNDS = 6


def _per_op(stmt, names, n, slices=15):
    """Seconds for n executions of stmt, from the best of `slices` slices."""
    number = max(1, n // slices)
    t = timeit.Timer(stmt, globals=names)
    return min(t.repeat(repeat=slices, number=number)) / number * n


@case("rawarray_8mb", n=20, quick_n=5, smoke_n=1, unit="RawArray")
def b_rawarray(mp, n):
    """Create (and drop) RawArray('d', 2**20), 8 MB, touching one element."""
    mp.RawArray("d", 1 << 20)           # warm up: first arena, imports
    t = time.perf_counter()
    for _ in range(n):
        a = mp.RawArray("d", 1 << 20)
        a[0] = 1.0                      # touch it, like any real use
        del a
    return time.perf_counter() - t


@case("array_get", n=300_000, quick_n=60_000, smoke_n=15, target=3.0, rounds=CHEAP_ROUNDS,
      unit="a[7]")
def b_array_get(mp, n):
    """Element read of Array('i', 100) (lock=True)."""
    return _per_op("a[7]", {"a": mp.Array("i", 100)}, n)


@case("array_set", n=300_000, quick_n=60_000, smoke_n=15, target=3.0, rounds=CHEAP_ROUNDS,
      unit="a[7] = 3")
def b_array_set(mp, n):
    """Element write of Array('i', 100) (lock=True)."""
    return _per_op("a[7] = 3", {"a": mp.Array("i", 100)}, n)


@case("value_get", n=300_000, quick_n=60_000, smoke_n=15, target=3.0, rounds=CHEAP_ROUNDS,
      unit="v.value")
def b_value_get(mp, n):
    """Value('d').value read (lock=True)."""
    return _per_op("v.value", {"v": mp.Value("d", 1.0)}, n)


@case("value_set", n=300_000, quick_n=60_000, smoke_n=15, target=3.0, rounds=CHEAP_ROUNDS,
      unit="v.value = 2.0")
def b_value_set(mp, n):
    """Value('d').value write (lock=True)."""
    return _per_op("v.value = 2.0", {"v": mp.Value("d", 1.0)}, n)


@case("value_locked_increment", n=300_000, quick_n=60_000, smoke_n=15,
      rounds=CHEAP_ROUNDS, unit="with v.get_lock(): v.value += 1")
def b_value_locked_increment(mp, n):
    """The documented idiom for a shared counter, on Value('i'), one process."""
    return _per_op("with v.get_lock(): v.value += 1", {"v": mp.Value("i", 0)}, n)


@case("char_array_value", n=300_000, quick_n=60_000, smoke_n=15, rounds=CHEAP_ROUNDS,
      unit="a.value")
def b_char_array_value(mp, n):
    """Array('c') .value read (lock=True): a shared status string."""
    return _per_op("a.value", {"a": mp.Array("c", b"running")}, n)


def _increment(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


@case("value_inc_2procs", n=50_000, quick_n=10_000, smoke_n=10, unit="increment each")
def b_value_inc(mp, n):
    """Two processes each doing `with v.get_lock(): v.value += 1` n times; wall time."""
    ctx = mp.get_context("fork")
    v = ctx.Value("i", 0)
    procs = [ctx.Process(target=_increment, args=(v, n)) for _ in range(2)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t
    if v.value != 2 * n:
        raise RuntimeError(f"lost increments: {v.value} != {2 * n}")
    return elapsed


if __name__ == "__main__":
    sys.exit(main(group="shared"))
