"""Manager benchmarks: multiprocess.managers against the standard library's
(and the PyPI multiprocess with --pypi DIR).

    python benchmarks/bench_managers.py [--quick] [--only dict_set_get]
    python benchmarks/bench_managers.py --pypi /work/pypi-mp

Every (case, implementation) runs in a fresh subprocess with the same
environment; implementations alternate run by run (this machine's load
drifts) and the best of --repeat runs is kept.  Times are per operation;
the ratio is stdlib time / our time (above 1: ours is faster).
"""
import argparse
import os
import subprocess
import sys
import time

CASES = {}


def case(name, target, unit):
    def deco(fn):
        CASES[name] = (fn, target, unit)
        return fn
    return deco


def _timed(fn, n, rounds=10):
    """Best per-operation time over ``rounds`` slices of ``n`` operations:
    the machine is shared, and a slice that lost the CPU says nothing about
    the code."""
    per_round = max(1, n // rounds)
    best = float('inf')
    for _ in range(rounds):
        t = time.perf_counter()
        fn(per_round)
        best = min(best, (time.perf_counter() - t) / per_round)
    return best


@case('dict_set_get', target=1.5, unit='set + get')
def b_dict(mp, quick):
    """d[k] = i then d[k] through a DictProxy: two round trips."""
    n = 2_000 if quick else 10_000
    with mp.Manager() as m:
        d = m.dict()

        def loop(n):
            for i in range(n):
                d['key'] = i
                d['key']
        loop(200)
        return _timed(loop, n)


@case('list_append', target=1.5, unit='append')
def b_list_append(mp, quick):
    """ListProxy.append: one round trip."""
    n = 4_000 if quick else 20_000
    with mp.Manager() as m:
        lst = m.list()
        append = lst.append

        def loop(n):
            for i in range(n):
                append(i)
        loop(200)
        return _timed(loop, n)


@case('create_proxy', target=1.0, unit='m.dict() + release')
def b_create(mp, quick):
    """Make a managed dict and drop its proxy (create, then decref)."""
    n = 300 if quick else 1_500
    with mp.Manager() as m:
        make = m.dict

        def loop(n):
            for _ in range(n):
                make()
        loop(20)
        return _timed(loop, n)


def _accept_forever(listener):
    while True:
        try:
            listener.accept().close()
        except Exception:
            pass


@case('connect_authenticate', target=1.0, unit='connect')
def b_connect(mp, quick):
    """connection.Client to a Listener in another process, with authkey."""
    import importlib
    conn_mod = importlib.import_module(mp.__name__ + '.connection')
    n = 300 if quick else 1_500
    key = b'benchmark-key'
    listener = conn_mod.Listener(family='AF_UNIX', authkey=key, backlog=64)
    server = mp.get_context('fork').Process(target=_accept_forever,
                                            args=(listener,), daemon=True)
    server.start()
    try:
        def loop(n):
            for _ in range(n):
                conn_mod.Client(listener.address, authkey=key).close()
        loop(20)
        return _timed(loop, n)
    finally:
        server.terminate()
        server.join()
        listener.close()


def child_main(impl, name, quick):
    mp = __import__(impl)
    fn = CASES[name][0]
    print(repr(fn(mp, quick)))


def run_one(impl, name, quick, pypi=None):
    env = dict(os.environ)
    env.setdefault('MALLOC_MMAP_THRESHOLD_', str(32 * 1024 * 1024))
    env.pop('PYTHONPATH', None)
    if pypi:
        env['PYTHONPATH'] = pypi
    here = os.path.abspath(__file__)
    out = subprocess.run(
        [sys.executable, here, '--child', impl, name] + (['--quick'] if quick else []),
        capture_output=True, text=True, env=env, timeout=600,
        cwd=os.path.dirname(here) if pypi else None)
    if out.returncode != 0:
        raise RuntimeError(f'{impl} {name} failed:\n{out.stderr}')
    return float(out.stdout.strip().splitlines()[-1])


def fmt(seconds):
    for unit, scale in (('s', 1), ('ms', 1e-3), ('us', 1e-6), ('ns', 1e-9)):
        if seconds >= scale:
            return f'{seconds / scale:.3g} {unit}'
    return f'{seconds / 1e-9:.3g} ns'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--only', action='append')
    ap.add_argument('--repeat', type=int, default=5)
    ap.add_argument('--pypi', help='directory with the PyPI multiprocess')
    ap.add_argument('--child', nargs=2, metavar=('IMPL', 'CASE'))
    args = ap.parse_args()
    if args.child:
        return child_main(args.child[0], args.child[1], args.quick)
    impls = [('stdlib', 'multiprocessing', None), ('ours', 'multiprocess', None)]
    if args.pypi:
        impls.append(('pypi', 'multiprocess', args.pypi))
    print(f'Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of '
          f'{args.repeat}; ratio = stdlib/ours (>1: ours faster)')
    head = '| case | ' + ' | '.join(i[0] for i in impls) + ' | stdlib/ours | target |'
    if args.pypi:
        head += ' pypi/ours |'
    print(head)
    print('|' + '---|' * (head.count('|') - 1))
    for name, (fn, target, unit) in CASES.items():
        if args.only and name not in args.only:
            continue
        best = {label: float('inf') for label, _, _ in impls}
        for _ in range(args.repeat):
            for label, impl, path in impls:
                best[label] = min(best[label], run_one(impl, name, args.quick, path))
        ratio = best['stdlib'] / best['ours']
        verdict = 'ok' if ratio >= target else 'MISS'
        row = (f'| {name} ({unit}) | ' + ' | '.join(fmt(best[l]) for l, _, _ in impls)
               + f' | {ratio:.2f}x | >={target:.2f}x {verdict} |')
        if args.pypi:
            row += f' {best["pypi"] / best["ours"]:.2f}x |'
        print(row, flush=True)


if __name__ == '__main__':
    main()
