"""The benchmark suite: multiprocess against the standard library's
multiprocessing (and the PyPI multiprocess installed apart, with --pypi),
interleaved in one run, with an A/A noise band per case.

    python benchmarks/bench.py                      # every case (about 10 minutes)
    python benchmarks/bench.py --quick              # under ~2 minutes
    python benchmarks/bench.py --pypi /work/pypi-mp # also the PyPI multiprocess
    python benchmarks/bench.py --only pipe --only lock
    python benchmarks/bench.py --group pool         # = python benchmarks/bench_pool.py
    python benchmarks/bench.py --list
    python benchmarks/bench.py --json out.json      # then benchmarks/report.py

This file holds the core cases (pipes, locks, queues, process start-up,
pickling); bench_pool.py, bench_shared.py and bench_managers.py hold the
others, and harness.py runs them all (see its docstring, and
docs/performance.md for the results and targets).
"""
import os
import sys
import time

from harness import best_slices, case, main

# Cases whose subprocess takes a fraction of a second, and whose time per
# operation this 2-CPU VM moves by up to 2x for seconds at a time (in one
# process the stdlib's Lock went from 41 to 78 ns): each stream gets this
# many fresh processes, interleaved, so that its best lands in a quiet spell.
CHEAP_ROUNDS = 6

# ----------------------------------------------------------------------------
# helpers run in the children of the measuring process (module level, so a
# spawned child can find them by name)


def _echo(conn):
    while True:
        try:
            obj = conn.recv()
        except EOFError:
            return
        if obj is None:
            return
        conn.send(obj)


def _bytes_sink(conn):
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        if not data:
            return
        conn.send_bytes(b"k")


def _producer(q, n, obj, go):
    go.wait()
    for _ in range(n):
        q.put(obj)


def _consumer(q, n):
    for _ in range(n):
        q.get()


def _noop():
    pass


SMALL = {"id": 7, "name": "small", "values": [1, 2, 3], "ok": True}


# ----------------------------------------------------------------------------
# pipes

def _round_trips(conn, obj, count):
    send, recv = conn.send, conn.recv
    for _ in range(count):
        send(obj)
        recv()


@case("pipe_small_roundtrip", n=5000, quick_n=1000, smoke_n=20, target=1.5,
      busy=True, busy_n=1000, busy_quick_n=300, unit="round trip")
def bench_pipe_small(mp, n):
    """Pipe send+recv round trip of a small dict through an echoing child."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b,))
    p.start()
    _round_trips(a, SMALL, 200)
    t = time.perf_counter()
    _round_trips(a, SMALL, n)
    dt = time.perf_counter() - t
    a.send(None)
    p.join()
    return dt


def _read_exact(fd, size):
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def _raw_echo(fd):
    # The same frames as a Connection, but moved by bare os.read/os.write
    # (header read, then payload read): no pickling, no package code.
    while True:
        head = os.read(fd, 4)
        if len(head) < 4:
            return
        size = int.from_bytes(head, "big", signed=True)
        os.write(fd, head + _read_exact(fd, size))


@case("pipe_raw_floor", n=5000, quick_n=1000, smoke_n=20, target=None,
      floor_of="pipe_small_roundtrip", unit="round trip")
def bench_pipe_raw_floor(mp, n):
    """REFERENCE, no target: pipe_small_roundtrip's frames echoed by os.write/os.read.

    A socketpair and a forked child; each side writes header+payload in one
    os.write and reads header, then payload: the syscalls and wake-ups of a
    Connection round trip without pickling or any package code."""
    import pickle
    import socket
    frame = len(pickle.dumps(SMALL)).to_bytes(4, "big") + pickle.dumps(SMALL)
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            mine.close()
            _raw_echo(theirs.fileno())
        finally:
            os._exit(0)
    theirs.close()
    fd = mine.fileno()

    def round_trips(count):
        for _ in range(count):
            os.write(fd, frame)
            _read_exact(fd, int.from_bytes(_read_exact(fd, 4), "big", signed=True))
    round_trips(200)
    t = time.perf_counter()
    round_trips(n)
    dt = time.perf_counter() - t
    mine.close()
    os.waitpid(pid, 0)
    return dt


@case("pipe_bytes_4mb", n=50, quick_n=10, smoke_n=2, target=1.5, unit="4 MB")
def bench_pipe_bytes(mp, n):
    """Pipe send_bytes/recv_bytes of a 4 MB buffer (child acknowledges each)."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_bytes_sink, args=(b,))
    p.start()
    buf = os.urandom(4 * 1024 * 1024)
    for _ in range(5):
        a.send_bytes(buf)
        a.recv_bytes()
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(buf)
        a.recv_bytes()
    dt = time.perf_counter() - t
    a.send_bytes(b"")
    p.join()
    return dt


# ----------------------------------------------------------------------------
# locks

def _acquire_release(sync, n):
    acquire, release = sync.acquire, sync.release

    def loop(k, acquire=acquire, release=release):
        for _ in range(k):
            acquire()
            release()
    loop(1000)
    return best_slices(loop, n)


@case("lock_uncontended", n=1_000_000, quick_n=200_000, smoke_n=100,
      unit="acquire+release", rounds=CHEAP_ROUNDS)
def bench_lock(mp, n):
    """Lock acquire()+release(), uncontended."""
    return _acquire_release(mp.Lock(), n)


@case("rlock_uncontended", n=1_000_000, quick_n=200_000, smoke_n=100,
      unit="acquire+release", rounds=CHEAP_ROUNDS)
def bench_rlock(mp, n):
    """RLock acquire()+release(), uncontended."""
    return _acquire_release(mp.RLock(), n)


@case("semaphore_uncontended", n=1_000_000, quick_n=200_000, smoke_n=100,
      unit="acquire+release", rounds=CHEAP_ROUNDS)
def bench_semaphore(mp, n):
    """Semaphore acquire()+release(), uncontended."""
    return _acquire_release(mp.Semaphore(1), n)


def _with_block(sync, n):
    def loop(k, sync=sync):
        for _ in range(k):
            with sync:
                pass
    loop(1000)
    return best_slices(loop, n)


@case("lock_with", n=1_000_000, quick_n=200_000, smoke_n=100,
      unit="with lock: pass", rounds=CHEAP_ROUNDS)
def bench_lock_with(mp, n):
    """`with lock: pass`, uncontended: how most code takes a lock."""
    return _with_block(mp.Lock(), n)


@case("rlock_with", n=1_000_000, quick_n=200_000, smoke_n=100,
      unit="with rlock: pass", rounds=CHEAP_ROUNDS)
def bench_rlock_with(mp, n):
    """`with rlock: pass`, uncontended (the lock of a Value, a Condition)."""
    return _with_block(mp.RLock(), n)


# ----------------------------------------------------------------------------
# queues

def _queue_transfer(mp, n, obj):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    go = ctx.Event()
    p = ctx.Process(target=_producer, args=(q, n, obj, go))
    p.start()
    t = time.perf_counter()
    go.set()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    return dt


@case("queue_small", n=10000, quick_n=2000, smoke_n=20, target=1.2, unit="item")
def bench_queue_small(mp, n):
    """Queue of small dicts from a child process to the parent."""
    return _queue_transfer(mp, n, SMALL)


@case("queue_1mb", n=100, quick_n=20, smoke_n=2, unit="1 MB item")
def bench_queue_big(mp, n):
    """Queue of 1 MB bytes objects from a child process to the parent."""
    return _queue_transfer(mp, n, os.urandom(1024 * 1024))


@case("queue_4_producers_4_consumers", n=20000, quick_n=4000, smoke_n=40, unit="item")
def bench_queue_4x4(mp, n):
    """One Queue, 4 producer and 4 consumer processes, small dicts; wall time per item."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    go = ctx.Event()
    each = max(1, n // 4)
    procs = [ctx.Process(target=_producer, args=(q, each, SMALL, go)) for _ in range(4)]
    procs += [ctx.Process(target=_consumer, args=(q, each)) for _ in range(4)]
    for p in procs:
        p.start()
    t = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t
    if any(p.exitcode for p in procs):
        raise RuntimeError("a producer or consumer failed")
    return dt * n / (4 * each)


# ----------------------------------------------------------------------------
# process start-up

def _start_join(mp, method, n):
    ctx = mp.get_context(method)
    p = ctx.Process(target=_noop)   # warm up: forkserver starts its server here
    p.start()
    p.join()
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=_noop)
        p.start()
        p.join()
    return time.perf_counter() - t


@case("start_join_fork", n=50, quick_n=10, smoke_n=1, unit="process")
def bench_start_fork(mp, n):
    """Process(target=noop).start() + join(), fork."""
    return _start_join(mp, "fork", n)


@case("start_join_spawn", n=6, quick_n=1, smoke_n=1, repeat=2, unit="process",
      rounds=5)
def bench_start_spawn(mp, n):
    """Process(target=noop).start() + join(), spawn."""
    return _start_join(mp, "spawn", n)


@case("start_join_forkserver", n=10, quick_n=2, smoke_n=1, unit="process")
def bench_start_forkserver(mp, n):
    """Process(target=noop).start() + join(), forkserver."""
    return _start_join(mp, "forkserver", n)


@case("process_poll", n=300_000, quick_n=60_000, smoke_n=100, rounds=CHEAP_ROUNDS,
      unit="is_alive() + exitcode")
def bench_process_poll(mp, n):
    """is_alive() and exitcode of an ended child: a supervisor's polling loop."""
    p = mp.get_context("fork").Process(target=_noop)
    p.start()
    p.join()

    def loop(k, p=p):
        for _ in range(k):
            p.is_alive()
            p.exitcode
    loop(1000)
    return best_slices(loop, n)


@case("current_process_name", n=300_000, quick_n=60_000, smoke_n=100,
      rounds=CHEAP_ROUNDS, unit="mp.current_process().name")
def bench_current_process_name(mp, n):
    """mp.current_process().name, as log lines and workers ask it."""
    def loop(k, mp=mp):
        for _ in range(k):
            mp.current_process().name
    loop(1000)
    return best_slices(loop, n)


# ----------------------------------------------------------------------------
# pickling

def _dumps_loads(mp, obj, n):
    import pickle
    from importlib import import_module
    fp = import_module(mp.__name__ + ".reduction").ForkingPickler
    loads = getattr(fp, "loads", pickle.loads)
    loads(fp.dumps(obj))
    t = time.perf_counter()
    for _ in range(n):
        loads(fp.dumps(obj))
    return time.perf_counter() - t


@case("pickle_1000_dicts", n=30, quick_n=6, smoke_n=1, pypi_target=20.0,
      unit="dumps+loads")
def bench_pickle_dicts(mp, n):
    """ForkingPickler.dumps + loads of a list of 1,000 small dicts."""
    data = [{"id": i, "name": f"item{i}", "score": i * 0.5, "tags": ["a", "b"]}
            for i in range(1000)]
    return _dumps_loads(mp, data, n)


@case("pickle_range_100k", n=10, quick_n=3, smoke_n=1, pypi_target=20.0,
      unit="dumps+loads")
def bench_pickle_range(mp, n):
    """ForkingPickler.dumps + loads of list(range(100000))."""
    return _dumps_loads(mp, list(range(100000)), n)


@case("pickle_range_loads_floor", n=10, quick_n=3, smoke_n=1, target=None,
      floor_of="pickle_range_100k", unit="loads")
def bench_pickle_range_floor(mp, n):
    """REFERENCE, no target: pickle.loads alone of pickle_range_100k's payload.

    The stdlib, the PyPI package and we all load with this C unpickler, and
    the 100,000 int objects it must create are most of its time: even a
    dumps that cost nothing leaves this much under pickle_range_100k."""
    import pickle
    data = pickle.dumps(list(range(100000)), pickle.DEFAULT_PROTOCOL)
    pickle.loads(data)
    t = time.perf_counter()
    for _ in range(n):
        pickle.loads(data)
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
