"""Pool benchmarks: multiprocess.pool against the standard library's (and
the PyPI multiprocess with --pypi DIR).

    python benchmarks/bench_pool.py [--quick] [--only map_chunksize_1]
    python benchmarks/bench_pool.py --pypi /work/pypi-mp

Every measurement runs in a fresh subprocess, the implementations taking
turns (stdlib, ours, stdlib, ours, ...) --repeat times, so that a change in
the machine's load hits both; the best of each is kept.  The ratio printed
is stdlib time / our time (above 1 means we are faster); `target` is the
least acceptable ratio.
"""
import argparse
import os
import subprocess
import sys
import time

CASES = {}


def case(name, target, pypi_target=None, methods=None):
    def deco(fn):
        CASES[name] = (fn, target, pypi_target)
        return fn
    return deco


def identity(x):
    return x


def nbytes(b):
    return len(b)


@case('map_default_chunksize', target=1.0)
def b_map_default(mp, quick):
    with mp.Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        p.map(identity, range(100_000))
        return time.perf_counter() - t


@case('map_chunksize_1', target=2.0)
def b_map_cs1(mp, quick):
    n = 20_000 if quick else 100_000
    with mp.Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        p.map(identity, range(n), chunksize=1)
        return (time.perf_counter() - t) * 100_000 / n


@case('imap_unordered_chunksize_1', target=2.0)
def b_imap_unordered(mp, quick):
    n = 20_000 if quick else 100_000
    with mp.Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        for _ in p.imap_unordered(identity, range(n), chunksize=1):
            pass
        return (time.perf_counter() - t) * 100_000 / n


@case('apply_async_latency', target=2.0)
def b_apply_latency(mp, quick):
    n = 500 if quick else 3000
    with mp.Pool(2) as p:
        p.apply(identity, (1,))
        t = time.perf_counter()
        for i in range(n):
            p.apply_async(identity, (i,)).get()
        return (time.perf_counter() - t) / n


def plus_one(x):
    return x + 1


@case('map_lambda', target=1 / 1.5, pypi_target=5.0)
def b_map_lambda(mp, quick):
    # The standard library cannot send a lambda: it maps the same function
    # defined at module level, so the ratio is the price of dill's reach.
    if mp.__name__ == 'multiprocessing':
        warm, func = identity, plus_one
    else:
        warm, func = (lambda x: x), (lambda x: x + 1)
    n = 20_000 if quick else 100_000
    with mp.Pool(2) as p:
        p.map(warm, range(10))
        t = time.perf_counter()
        p.map(func, range(n), chunksize=1)
        return (time.perf_counter() - t) * 100_000 / n


@case('map_200_payloads_1mb', target=1.0)
def b_map_big(mp, quick):
    # distinct objects: a list repeating one object would be pickled once
    # per chunk (the pickler's memo) and measure nothing
    payloads = [bytes([i % 251]) * (1 << 20) for i in range(50 if quick else 200)]
    with mp.Pool(2) as p:
        p.map(nbytes, payloads[:4])
        t = time.perf_counter()
        p.map(nbytes, payloads)
        return time.perf_counter() - t


def _startup(mp, method):
    t = time.perf_counter()
    p = mp.get_context(method).Pool(2)
    p.map(identity, range(10))
    p.close()
    p.join()
    return time.perf_counter() - t


@case('startup_fork', target=1.0)
def b_start_fork(mp, quick):
    return _startup(mp, 'fork')


@case('startup_spawn', target=1 / 1.2)
def b_start_spawn(mp, quick):
    return _startup(mp, 'spawn')


@case('startup_forkserver', target=1 / 1.2)
def b_start_forkserver(mp, quick):
    return _startup(mp, 'forkserver')


def measure(impl, name, quick, repeat):
    if impl == 'stdlib':
        import multiprocessing as mp
    else:
        import multiprocess as mp
    if name == 'startup_forkserver':
        # the fork server itself is started once per program: exclude it
        mp.get_context('forkserver').Pool(1).terminate()
    fn = CASES[name][0]
    return min(fn(mp, quick) for _ in range(repeat))


def _run_one(here, ns, impl, name):
    """One measurement of `name` in a fresh subprocess: seconds or None."""
    env = dict(os.environ)
    if impl == 'pypi':
        env['PYTHONPATH'] = ns.pypi
    cmd = [sys.executable, os.path.join(here, 'bench_pool.py'),
           '--measure', impl, name, '--repeat', '1']
    if ns.quick:
        cmd.append('--quick')
    cwd = ns.pypi if impl == 'pypi' else here
    out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         cwd=cwd, timeout=900)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.stderr.write(out.stderr[-2000:])
        return None


def _compile_package():
    """Byte-compile the multiprocess under test, as an install would.  A
    checkout edited under PYTHONDONTWRITEBYTECODE=1 otherwise has stale
    .pyc files, and every fresh measuring process would pay for compiling
    pool.py (~20 ms) in the start-up cases; the stdlib's are compiled."""
    import compileall
    import multiprocess
    compileall.compile_dir(os.path.dirname(multiprocess.__file__), quiet=1)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--only', action='append', default=[])
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--pypi')
    ap.add_argument('--measure', nargs=2, help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.measure:
        impl, name = ns.measure
        print(repr(measure(impl, name, ns.quick, ns.repeat)))
        return 0
    here = os.path.dirname(os.path.abspath(__file__))
    _compile_package()
    names = [n for n in CASES if not ns.only or any(o in n for o in ns.only)]
    impls = ['stdlib', 'ours'] + (['pypi'] if ns.pypi else [])
    print('%-28s %12s %12s %12s %8s %8s' % ('case', 'stdlib', 'ours', 'pypi',
                                           'ratio', 'target'))
    for name in names:
        fn, target, pypi_target = CASES[name]
        times = {}
        for _ in range(ns.repeat):
            for impl in impls:
                if impl == 'stdlib' and target is None:
                    continue
                got = _run_one(here, ns, impl, name)
                best = times.get(impl)
                if got is not None and (best is None or got < best):
                    times[impl] = got
                elif impl not in times:
                    times[impl] = None
        ours = times.get('ours')
        base = times.get('stdlib') if target is not None else times.get('pypi')
        goal = target if target is not None else pypi_target
        ratio = base / ours if base and ours else float('nan')
        fmt = lambda v: '-' if v is None else '%.4g' % v
        verdict = lambda r, g: 'ok' if g and r >= g else ('LOW' if g else '')
        print('%-28s %12s %12s %12s %8.2f %8s %s' % (
            name, fmt(times.get('stdlib')), fmt(ours), fmt(times.get('pypi')),
            ratio, '%.2f' % goal if goal else '-', verdict(ratio, goal)),
            flush=True)
        if ns.pypi and target is not None and times.get('pypi') and ours:
            vs_pypi = times['pypi'] / ours
            print('%-28s vs pypi: %.2f %s' % (
                '', vs_pypi, ('(target %.2f) %s' % (
                    pypi_target, verdict(vs_pypi, pypi_target))
                    if pypi_target else '')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
