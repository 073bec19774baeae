"""Leak audit of the native core: run each C entry point many times in a
fresh interpreter and watch what stays behind.

Each case is one operation (a hot path or an error path of _multiprocess:
SemLock, framed pipe I/O, the plain pickler and reader, the arena, the
synchronized wrappers, the pool engine).  It runs a warm-up, then N more
times; between the two marks the interpreter's allocated blocks
(sys.getallocatedblocks(), Python objects) and the resident set (VmRSS,
anything malloc'd) are compared.  A leak grows with N; caches and free
lists do not.  A case is flagged when it keeps more than one block per
hundred iterations, or grows the RSS by more than 2 MiB, in each half
of the run (a leak grows in both; a cache or a thread's state settles).

    python tools/leakcheck.py                 # every case, default counts
    python tools/leakcheck.py -n 1000000 semlock_acquire_release
    python tools/leakcheck.py --list

Exit status 1 when a case is flagged.  Every case runs in its own
subprocess (timeout per case), so a leak in one does not hide behind
another's warm-up.  Under an ASan build (docs/architecture.md, "Checking
the native core with sanitizers") run it with the same environment and the
subprocesses inherit it.
"""
import argparse
import gc
import json
import os
import subprocess
import sys

CASES = {}


def case(iterations=200_000):
    """Register fn(n) -> a function that runs the op once (setup outside)."""
    def register(make):
        CASES[make.__name__] = (make, iterations)
        return make
    return register


def _raises(fn, *exc):
    try:
        fn()
    except exc:
        return
    raise AssertionError('%r did not raise %r' % (fn, exc))


# -- SemLock ---------------------------------------------------------------

@case(500_000)
def semlock_acquire_release():
    import multiprocess as mp
    lock = mp.Lock()

    def op():
        lock.acquire()
        lock.release()
    return op


@case(300_000)
def semlock_timeouts_and_errors():
    import multiprocess as mp
    held = mp.Lock()
    held.acquire()
    rlock = mp.RLock()
    bounded = mp.BoundedSemaphore(1)
    free = mp.Lock()

    def op():
        assert not held.acquire(timeout=0)
        assert not held.acquire(False)
        assert not held.acquire(True, 0.0)
        _raises(free.release, ValueError)
        _raises(rlock.release, AssertionError)
        _raises(bounded.release, ValueError)
        _raises(lambda: held.acquire(timeout='x'), TypeError)
        with rlock:
            with rlock:
                rlock._semlock._count()
    return op


# -- framed pipe I/O -------------------------------------------------------

@case(300_000)
def connection_bytes_and_objects():
    import multiprocess as mp
    a, b = mp.Pipe()
    plain = {'k': [1, 2.5, 'x', b'y', None, (True,)]}
    buf = bytearray(64)

    def op():
        a.send_bytes(b'abc' * 10)
        b.recv_bytes()
        a.send(plain)
        b.recv()
        a.send(op)            # no plain data: the dill/pickle fallback
        b.recv()
        a.send_bytes(b'xyz')
        b.recv_bytes_into(buf, 4)
        b.poll(0)
    return op


@case(50_000)
def connection_errors():
    import multiprocess as mp
    import _multiprocess as native
    small = bytearray(4)

    def op():
        a, b = mp.Pipe()
        a.send_bytes(b'too long for it')
        _raises(lambda: b.recv_bytes_into(small), mp.BufferTooShort)
        a.send_bytes(b'x' * 100)
        _raises(lambda: b.recv_bytes(10), OSError)   # b turns write-only
        _raises(lambda: b.recv_bytes(), OSError)
        b.close()
        _raises(lambda: b.send_bytes(b'x'), OSError)
        _raises(lambda: a.recv_bytes(), EOFError, ConnectionResetError)
        a.close()
        r, w = os.pipe()
        native.send_bytes(w, b'abcdef')
        assert native.recv_bytes(r, 3) is None
        os.write(w, b'\xff\xff\xff\xfe')             # bad header
        os.close(w)
        _raises(lambda: native.recv_bytes(r), OSError)
        _raises(lambda: native.recv_bytes(r), EOFError)
        _raises(lambda: native.recv_bytes_into(r, bytearray(8), 0), EOFError)
        os.close(r)
        r, w = os.pipe()
        os.write(w, b'\x00\x00\x00\x10abc')           # EOF mid-frame
        os.close(w)
        _raises(lambda: native.recv_bytes(r), OSError)
        os.close(r)
        r, w = os.pipe()
        os.close(r)
        _raises(lambda: native.send_bytes(w, b'x'), BrokenPipeError)
        os.close(w)
        _raises(lambda: native.poll(-1, 0), OSError, ValueError)
        _raises(lambda: native.send_bytes(w, 'str'), TypeError)
    return op


@case(200_000)
def endpoint_roundtrip():
    import multiprocess as mp
    a, b = mp.Pipe()

    def op():
        a.send([1, 'two', 3.0])
        b.recv()
        a.send(None)
        b.recv()
        mp.connection.wait([b], 0)
    return op


@case(100_000)
def queue_put_get():
    import multiprocess as mp
    q = mp.Queue()
    sq = mp.SimpleQueue()

    def op():
        q.put([1, 'x'])
        q.get(timeout=10)
        sq.put((b'y', 2.0))
        sq.get()
    return op


# -- plain pickler and reader ----------------------------------------------

@case(300_000)
def plain_pickle_roundtrip_and_malformed():
    import pickle
    import _multiprocess as native
    obj = {'a': [1, 2, 3], 'b': ('x', b'y', 1.5, None, True, 2 ** 70),
           'c': {1, 2}, 'd': frozenset({3}), 'e': bytearray(b'z')}
    plain = {'a': [1, 2, 3], 'b': ('x', b'y', 1.5, None, True, 2 ** 40)}
    good = pickle.dumps(plain, protocol=5)
    mangled = [good[:n] for n in (1, 5, len(good) // 2, len(good) - 1)]
    mangled += [b'', b'\x80\x05garbage', b'\x80\x05\x95' + b'\xff' * 8,
                good.replace(b'\x94', b'\xff', 1)]

    def op():
        data = native.dumps_plain(plain, 5)
        native.loads(data)
        native._test_loads_plain(good, None)
        native.loads(good)
        for bad in mangled:
            native._test_loads_plain(bad, None)
            try:
                native.loads(bad)
            except Exception:
                pass
        assert native.dumps_plain(obj, 5) is None
        assert native.dumps_plain([1, 2, object()], 5) is None
        assert native.dumps_plain([1, 2, {'x': 2 ** 100}], 4) is None
        _raises(lambda: native.dumps_plain(1, 'x'), TypeError)
    return op


@case(200_000)
def reduction_dumps_loads():
    from multiprocess.reduction import ForkingPickler

    class Unpicklable:
        def __reduce__(self):
            raise TypeError('refused')
    objs = [[1, 2, 3], {'x': (1.0, 'y')}, Unpicklable]

    def op():
        for o in objs:
            ForkingPickler.loads(ForkingPickler.dumps(o))
        _raises(lambda: ForkingPickler.dumps([1, Unpicklable()]), TypeError)
    return op


@case(100_000)
def codec_with_failing_callables():
    import pickle
    import threading
    import _multiprocess as native
    from multiprocess import reduction

    def boom(*args):
        raise RuntimeError('refused')

    def good(**over):
        fields = dict(new_pickler=reduction._new_pickler,
                      dump=pickle.Pickler.dump,
                      clear_memo=pickle.Pickler.clear_memo,
                      fallback=boom, loads=pickle.loads,
                      protocol=lambda: 5)
        fields.update(over)
        return native.Codec(**fields)
    codecs = [good(protocol=boom), good(new_pickler=boom),
              good(clear_memo=boom), good(loads=boom),
              good(new_pickler=lambda p: 'not a pair'),
              good(dump=boom)]
    ok = good()
    a, b = (os.pipe())
    ep_in, ep_out = native.Endpoint(), native.Endpoint()
    ep_in._rfd, ep_out._wfd = a, b
    ep_in._codec = ep_out._codec = good(loads=boom)

    class Odd:
        pass
    odd = Odd()
    unpicklable = [1, threading.Lock()]

    def op():
        for c in codecs:
            try:
                c.loads(c.dumps(odd))
            except (RuntimeError, TypeError):
                pass
        ok.loads(ok.dumps([odd, 1]))
        _raises(lambda: ok.dumps(unpicklable), RuntimeError)
        _raises(lambda: native.Codec(loads=1), TypeError)
        ep_out.send(odd)
        _raises(ep_in.recv, RuntimeError)
        _raises(lambda: setattr(ep_in, '_codec', 1), TypeError)
    return op


@case(50_000)
def constructors_and_bad_arguments():
    import _multiprocess as native

    def op():
        _raises(lambda: native.SemLock(7, 1, 1, '/mp-leak-kind', True),
                ValueError, OSError)
        _raises(lambda: native.SemLock(1, -1, 1, '/mp-leak-value', True),
                ValueError, OSError)
        _raises(lambda: native.SemLock._rebuild(0, 1, 1, '/mp-no-such-leak'),
                OSError)
        _raises(lambda: native.sem_unlink('/mp-no-such-leak'), OSError)
        _raises(lambda: native.shm_open('/mp-no-such-leak', os.O_RDWR),
                OSError)
        _raises(lambda: native.Arena(-1), ValueError, OSError)
        arena = native.Arena(4096)
        _raises(lambda: arena.alloc(-1), ValueError)
        assert arena.alloc(1 << 20) is None
        block = arena.alloc(100)
        memoryview(block).release()
        arena.spans()
        _raises(lambda: native.wait_fds([-5, 'x'], 0), TypeError, ValueError,
                OSError)
        native.wait_fds([], 0)
        _raises(lambda: native.set_recv_spin('x'), TypeError)
        _raises(lambda: native.loads(), TypeError)
        _raises(lambda: native.recv_bytes_into(0, b'ro', 0),
                TypeError, BufferError)
    return op


# -- arena and synchronized wrappers ---------------------------------------

@case(200_000)
def arena_alloc_free():
    from multiprocess import heap

    def op():
        a = heap.BufferWrapper(64)
        b = heap.BufferWrapper(5000)
        a.create_memoryview()
        del a, b
    return op


@case(100_000)
def sharedctypes_create():
    import multiprocess as mp
    from multiprocess import sharedctypes

    def op():
        mp.Value('i', 3)
        mp.Array('d', 100, lock=False)
        sharedctypes.RawArray('b', b'abc')
        sharedctypes.copy(mp.RawValue('h', 2))
    return op


@case(300_000)
def sync_value_array_get_set_and_errors():
    import multiprocess as mp
    v = mp.Value('d', 1.0)
    i = mp.Value('i', 1)
    arr = mp.Array('i', 10)
    chars = mp.Array('c', 10)

    def op():
        v.value = v.value + 1
        i.value = 3
        arr[2] = arr[3] + 1
        arr[1:4] = [1, 2, 3]
        arr[:]
        chars.value = b'abc'
        chars.raw
        _raises(lambda: setattr(v, 'value', 'x'), TypeError)
        _raises(lambda: setattr(i, 'value', 1.5), TypeError)
        _raises(lambda: arr.__setitem__(20, 1), IndexError)
        _raises(lambda: arr.__getitem__(20), IndexError)
        _raises(lambda: arr.__setitem__(1, 'x'), TypeError)
        _raises(lambda: arr.__setitem__(slice(0, 3), [1]), ValueError)
        with v.get_lock():
            pass
    return op


# -- pool engine (fewer iterations: each one is a round trip) ---------------

def _pool(n=2):
    import multiprocess as mp
    return mp.get_context('fork').Pool(n)


def _square(x):
    return x * x


def _boom(x):
    raise ValueError(x)


def _unpicklable(x):
    return lambda: x      # dill may pickle it; a lock never pickles


def _lock_result(x):
    import threading
    return threading.Lock()


@case(10_000)
def pool_map_imap_apply():
    pool = _pool()

    def op():
        pool.map(_square, range(20), chunksize=3)
        list(pool.imap(_square, range(10)))
        list(pool.imap_unordered(_square, range(10), chunksize=2))
        pool.apply_async(_square, (3,)).get(10)
        pool.starmap(pow, [(2, 3), (3, 2)])
    return op


@case(10_000)
def pool_worker_errors():
    pool = _pool()

    def op():
        _raises(lambda: pool.apply_async(_boom, (1,)).get(10), ValueError)
        _raises(lambda: pool.map(_boom, range(4)), ValueError)
        try:
            pool.apply_async(_lock_result, (1,)).get(10)
        except Exception:
            pass
        try:
            pool.map(_square, [1, _lock_result(0)])  # argument won't pickle
        except Exception:
            pass
    return op


# -- driver ---------------------------------------------------------------

def _rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def measure(name, n):
    make, _ = CASES[name]
    op = make()
    for _ in range(max(n // 10, 100)):
        op()
    marks = []
    for half in (n // 2, n - n // 2):
        gc.collect()
        marks.append((sys.getallocatedblocks(), _rss_kb()))
        for _ in range(half):
            op()
    gc.collect()
    marks.append((sys.getallocatedblocks(), _rss_kb()))
    return {'case': name, 'n': n,
            'blocks': [b - a for (a, _), (b, _) in zip(marks, marks[1:])],
            'rss_kb': [b - a for (_, a), (_, b) in zip(marks, marks[1:])]}


def verdict(r):
    """A leak grows in both halves of the run; a cache, a free list or a
    thread's state settles in one."""
    slack = max(r["n"] // 100, 100)
    return (min(r['blocks']) > slack or min(r['rss_kb']) > 2048)


def _run_case(name, n, timeout):
    """Measure one case in a fresh interpreter: (result, None) or (None,
    what went wrong)."""
    try:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), '--one', name,
             '-n', str(n)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, '%-40s TIMEOUT after %ss' % (name, timeout)
    if out.returncode != 0:
        return None, '%-40s FAILED (exit %d)\n%s' % (
            name, out.returncode, out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def _report(r, word):
    print('%-38s n=%-7d blocks %+6d %+6d  rss %+6d %+6d KiB  %s' % (
        r['case'], r['n'], *r['blocks'], *r['rss_kb'], word), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('cases', nargs='*', help='cases to run (default: all)')
    p.add_argument('-n', type=int, help='iterations (default: per case)')
    p.add_argument('--scale', type=float, default=1.0,
                   help='multiply every default count (e.g. 0.1 for a quick run)')
    p.add_argument('--list', action='store_true')
    p.add_argument('--timeout', type=float, default=900)
    p.add_argument('--one', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        for name, (_, n) in CASES.items():
            print('%-40s %d' % (name, n))
        return 0
    if args.one:
        print(json.dumps(measure(args.one, args.n)))
        return 0
    names = args.cases or list(CASES)
    bad = 0
    for name in names:
        if name not in CASES:
            p.error('no case %r (see --list)' % name)
        n = args.n or max(int(CASES[name][1] * args.scale), 10)
        r, problem = _run_case(name, n, args.timeout)
        if r is not None and verdict(r):
            # A one-off allocation (a type cache filled, a free list grown)
            # can land in the second half of a short run.  A leak grows with
            # the count: run four times as long and judge that run.
            _report(r, 'grew; again with n=%d' % (4 * n))
            r, problem = _run_case(name, 4 * n, args.timeout)
        if problem is not None:
            print(problem, flush=True)
            bad += 1
            continue
        flag = verdict(r)
        bad += flag
        _report(r, 'LEAK?' if flag else 'ok')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
