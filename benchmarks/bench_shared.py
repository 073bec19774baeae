"""Shared-state benchmarks: multiprocess against the standard library.

    python benchmarks/bench_shared.py [--quick] [--repeat N] [--only CASE]

Every (case, implementation) measurement runs in a fresh subprocess of the
same interpreter and environment; the rounds alternate between the two
implementations and the best time of each is kept.  The ratio is stdlib
time / our time (above 1: we are faster); `target` is the least acceptable
ratio.

Cases:
  rawarray_8mb      create (and drop) RawArray('d', 2**20), 8 MB
  array_get         element read of Array('i', 100) (lock=True)
  array_set         element write of the same
  value_get         Value('d').value read (lock=True)
  value_set         Value('d').value write
  value_inc_2procs  two processes each doing `with v.get_lock(): v.value
                    += 1` N times on one Value('i'); wall time
"""
import argparse
import json
import os
import subprocess
import sys
import time
import timeit

CASES = {}


def case(name, target):
    def deco(fn):
        CASES[name] = (fn, target)
        return fn
    return deco


def _per_op(stmt, setup_globals, number):
    t = timeit.Timer(stmt, globals=setup_globals)
    return min(t.repeat(repeat=15, number=number)) / number


@case('rawarray_8mb', target=1.0)
def b_rawarray(mp, quick):
    n = 20 if quick else 60
    mp.RawArray('d', 1 << 20)           # warm up: first arena, imports
    t = time.perf_counter()
    for _ in range(n):
        a = mp.RawArray('d', 1 << 20)
        a[0] = 1.0                      # touch it, like any real use
        del a
    return (time.perf_counter() - t) / n


@case('array_get', target=3.0)
def b_array_get(mp, quick):
    a = mp.Array('i', 100)
    return _per_op('a[7]', {'a': a}, 50_000 if quick else 300_000)


@case('array_set', target=3.0)
def b_array_set(mp, quick):
    a = mp.Array('i', 100)
    return _per_op('a[7] = 3', {'a': a}, 50_000 if quick else 300_000)


@case('value_get', target=3.0)
def b_value_get(mp, quick):
    v = mp.Value('d', 1.0)
    return _per_op('v.value', {'v': v}, 50_000 if quick else 300_000)


@case('value_set', target=3.0)
def b_value_set(mp, quick):
    v = mp.Value('d', 1.0)
    return _per_op('v.value = 2.0', {'v': v}, 50_000 if quick else 300_000)


def _increment(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


@case('value_inc_2procs', target=1.0)
def b_value_inc(mp, quick):
    n = 20_000 if quick else 100_000
    ctx = mp.get_context('fork')
    v = ctx.Value('i', 0)
    procs = [ctx.Process(target=_increment, args=(v, n)) for _ in range(2)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t
    assert v.value == 2 * n, v.value
    return elapsed


def child(impl, name, quick):
    mp = __import__(impl)
    fn, _ = CASES[name]
    print(json.dumps(fn(mp, quick)))


def run_one(impl, name, quick):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', impl, name]
    if quick:
        cmd.append('--quick')
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f'{impl} {name} failed:\n{out.stderr}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(seconds):
    for unit, scale in (('s', 1), ('ms', 1e-3), ('us', 1e-6), ('ns', 1e-9)):
        if seconds >= scale:
            return f'{seconds / scale:7.2f} {unit}'
    return f'{seconds / 1e-9:7.2f} ns'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--repeat', type=int, default=None)
    ap.add_argument('--only', action='append')
    ap.add_argument('--json')
    ap.add_argument('--child', nargs=2, metavar=('IMPL', 'CASE'),
                    help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        child(ns.child[0], ns.child[1], ns.quick)
        return 0

    repeat = ns.repeat or (2 if ns.quick else 5)
    names = ns.only or list(CASES)
    impls = ('multiprocessing', 'multiprocess')
    best = {(i, n): float('inf') for i in impls for n in names}
    for r in range(repeat):
        for name in names:
            # alternate which implementation goes first
            for impl in (impls if r % 2 == 0 else impls[::-1]):
                t = run_one(impl, name, ns.quick)
                best[impl, name] = min(best[impl, name], t)

    print(f'python {sys.version.split()[0]}, {os.cpu_count()} cpus, '
          f'best of {repeat} alternating subprocess runs')
    print(f'{"case":<18}{"stdlib":>12}{"multiprocess":>14}{"ratio":>8}'
          f'{"target":>8}')
    results = {}
    failed = False
    for name in names:
        std, ours = best['multiprocessing', name], best['multiprocess', name]
        ratio = std / ours
        target = CASES[name][1]
        ok = ratio >= target
        failed |= not ok
        results[name] = {'stdlib': std, 'multiprocess': ours,
                         'ratio': ratio, 'target': target}
        print(f'{name:<18}{fmt(std):>12}{fmt(ours):>14}{ratio:>7.2f}x'
              f'{target:>7.1f}x{"" if ok else "  BELOW TARGET"}')
    if ns.json:
        with open(ns.json, 'w') as f:
            json.dump(results, f, indent=2)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
