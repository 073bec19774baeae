"""What the pool's options cost when they are on: progress= and task_timeout=
against the same call without them.

    python benchmarks/bench_pool_features.py [--quick] [--repeat N]

Each measurement runs in a fresh subprocess, the variants taking turns
(off, progress, task_timeout, off, ...) so that a change in the machine's
load hits all of them; the best of each is kept.  Printed: seconds, and
each variant's time over the time with the options off (1.00: free).
(The cost with the options off is what benchmarks/bench_pool.py measures:
its ratios must not move.)
"""
import argparse
import os
import subprocess
import sys
import time


def identity(x):
    return x


def _progress(done, total):
    pass


VARIANTS = {
    'off': {},
    'progress': {'progress': _progress},
    'task_timeout': {'task_timeout': 60},
}


def _map(mp, n, chunksize, options):
    with mp.Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        p.map(identity, range(n), chunksize=chunksize, **options)
        return time.perf_counter() - t


def _imap(mp, n, chunksize, options):
    with mp.Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        for _ in p.imap_unordered(identity, range(n), chunksize=chunksize,
                                  **options):
            pass
        return time.perf_counter() - t


def _apply(mp, n, options):
    options = {k: v for k, v in options.items() if k != 'progress'}
    with mp.Pool(2) as p:
        p.apply(identity, (1,))
        t = time.perf_counter()
        for i in range(n):
            p.apply_async(identity, (i,), **options).get()
        return (time.perf_counter() - t) / n


CASES = {
    'map_100k_default_chunks': lambda mp, q, o: _map(mp, 20_000 if q else 100_000,
                                                    None, o),
    'map_20k_chunksize_1': lambda mp, q, o: _map(mp, 5_000 if q else 20_000, 1, o),
    'imap_unordered_20k_cs_1': lambda mp, q, o: _imap(mp, 5_000 if q else 20_000,
                                                      1, o),
    'imap_unordered_20k_cs_10': lambda mp, q, o: _imap(mp, 5_000 if q else 20_000,
                                                       10, o),
    'apply_async_latency': lambda mp, q, o: _apply(mp, 300 if q else 2000, o),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--only', action='append', default=[])
    ap.add_argument('--measure', nargs=2, help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.measure:
        import multiprocess as mp
        name, variant = ns.measure
        print(repr(CASES[name](mp, ns.quick, VARIANTS[variant])))
        return 0
    here = os.path.abspath(__file__)
    print('%-26s %10s %10s %10s   %s' % ('case', 'off', 'progress',
                                        'timeout', 'progress/off timeout/off'))
    for name in CASES:
        if ns.only and not any(o in name for o in ns.only):
            continue
        best = {}
        for _ in range(ns.repeat):
            for variant in VARIANTS:
                if name == 'apply_async_latency' and variant == 'progress':
                    continue
                cmd = [sys.executable, here, '--measure', name, variant]
                if ns.quick:
                    cmd.append('--quick')
                out = subprocess.run(cmd, capture_output=True, text=True,
                                     timeout=900, cwd=os.path.dirname(here))
                try:
                    got = float(out.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    sys.stderr.write(out.stderr[-2000:])
                    continue
                best[variant] = min(best.get(variant, got), got)
        off = best.get('off')
        ratio = lambda v: ('%.2f' % (best[v] / off)) if off and v in best \
            else '-'
        fmt = lambda v: ('%.4g' % best[v]) if v in best else '-'
        print('%-26s %10s %10s %10s   %12s %11s' % (
            name, fmt('off'), fmt('progress'), fmt('task_timeout'),
            ratio('progress'), ratio('task_timeout')), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
