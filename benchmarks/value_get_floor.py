"""The floor under a synchronized Value read (docs/performance.md, value_get).

From 3.12 the interpreter specializes the stdlib's `value` (a Python
property) and no version specializes ours (a C getset).  This prints, in one
interleaved run, the stdlib's read, ours, and what a getset that does
nothing at all costs on a Python subclass of a C type, which is the most
any C getset read can save:

    python benchmarks/value_get_floor.py
"""
import multiprocessing
import sys
import timeit

import multiprocess


class _Subclass(Exception):
    # A Python subclass of a C type with a getset (args), as Synchronized is
    # of SyncValue.
    pass


def main(rounds=30, repeat=5, number=20_000):
    cases = [
        ("the stdlib's Value('d').value", "v.value",
         {"v": multiprocessing.Value('d', 1.0)}),
        ("ours, Value('d').value", "v.value",
         {"v": multiprocess.Value('d', 1.0)}),
        ("ours, Value('i').value (no float made)", "v.value",
         {"v": multiprocess.Value('i', 1)}),
        ("a C getset doing nothing (Exception.args)", "e.args",
         {"e": _Subclass(1)}),
        ("the empty loop", "pass", {}),
    ]
    best = dict.fromkeys((name for name, _, _ in cases), float("inf"))
    for _ in range(rounds):
        for name, stmt, names in cases:
            timer = timeit.Timer(stmt, globals=names)
            per_op = min(timer.repeat(repeat, number)) / number * 1e9
            best[name] = min(best[name], per_op)
    print(sys.version.split()[0])
    for name, ns in best.items():
        print(f"  {name:45s} {ns:6.1f} ns")
    stdlib, ours = best[cases[0][0]], best[cases[1][0]]
    print(f"  ours is {stdlib / ours:.2f}x the stdlib's speed; "
          f"3.0x needs at most {stdlib / 3:.1f} ns")


if __name__ == "__main__":
    main()
