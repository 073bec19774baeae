"""Benchmarks: multiprocess against the standard library's multiprocessing
(and the PyPI multiprocess, when installed somewhere with --pypi) in one run.

    python benchmarks/bench.py                     # every case
    python benchmarks/bench.py --quick             # fewer iterations
    python benchmarks/bench.py --only pipe --only lock
    python benchmarks/bench.py --pypi /work/pypi-mp
    python benchmarks/bench.py --list
    python benchmarks/bench.py --only lock --rounds 5   # best of 5 fresh processes each

Every (case, implementation) pair runs in a subprocess of its own, started
with the same environment; glibc's mmap threshold is pinned for all of them
(MALLOC_MMAP_THRESHOLD_), because importing dill moves the dynamic threshold
and with it the cost of every multi-megabyte buffer.

Bytecode: before measuring, the packages under test are byte-compiled
(compileall, into their __pycache__), because a process imports a module
whose .pyc is missing or stale by compiling its source again -- and with
PYTHONDONTWRITEBYTECODE set (or a read-only tree) it does so in every new
process.  An installed package has current .pyc files (pip writes them, the
standard library ships them), so that is what is compared; a spawned child
would otherwise pay milliseconds for every module edited since the last
compile.  --no-compile measures the tree as it is.

Adding a case: write `def bench_x(mp, n): ...` returning the seconds that n
operations took, and decorate it with @case(...).  `mp` is the package under
test (multiprocess, multiprocessing or the PyPI multiprocess), imported in
the measuring subprocess.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IMPLS = ("stdlib", "ours", "pypi")


class Case:
    def __init__(self, name, fn, n, quick_n, unit, target, pypi_target, doc,
                 floor_of=None):
        self.name, self.fn, self.n, self.quick_n = name, fn, n, quick_n
        self.unit, self.target, self.pypi_target, self.doc = unit, target, pypi_target, doc
        # A reference case measures the machine, not an implementation: it
        # runs once per table and `floor_of` names the case it bounds.
        self.floor_of = floor_of

    @property
    def reference(self):
        return self.floor_of is not None


CASES = {}


def case(name, n, quick_n=None, unit="op", target=0.9, pypi_target=None,
         floor_of=None):
    """Register a benchmark.  target: the least acceptable speed ratio of
    ours over the stdlib (stdlib time / our time); pypi_target likewise over
    the PyPI multiprocess.  floor_of: this is a reference measurement (no
    package involved, no target), the floor under the named case."""
    def deco(fn):
        CASES[name] = Case(name, fn, n, quick_n or max(1, n // 10), unit, target,
                           pypi_target, (fn.__doc__ or "").strip().split("\n")[0],
                           floor_of)
        return fn
    return deco


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


def _noop():
    pass


SMALL = {"id": 7, "name": "small", "values": [1, 2, 3], "ok": True}


# ----------------------------------------------------------------------------
# cases

@case("pipe_small_roundtrip", n=20000, quick_n=2000, target=1.5)
def bench_pipe_small(mp, n):
    """Pipe send+recv round trip of a small dict through an echoing child."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b,))
    p.start()
    for _ in range(200):
        a.send(SMALL)
        a.recv()
    t = time.perf_counter()
    for _ in range(n):
        a.send(SMALL)
        a.recv()
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


@case("pipe_raw_floor", n=20000, quick_n=2000, target=None,
      floor_of="pipe_small_roundtrip")
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


@case("pipe_bytes_4mb", n=300, quick_n=40, target=1.5)
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


def _acquire_release(sync, n):
    acquire, release = sync.acquire, sync.release
    for _ in range(1000):
        acquire()
        release()
    t = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return time.perf_counter() - t


@case("lock_uncontended", n=1_000_000, quick_n=100_000, target=1.0)
def bench_lock(mp, n):
    """Lock acquire()+release(), uncontended."""
    return _acquire_release(mp.Lock(), n)


@case("rlock_uncontended", n=1_000_000, quick_n=100_000, target=1.0)
def bench_rlock(mp, n):
    """RLock acquire()+release(), uncontended."""
    return _acquire_release(mp.RLock(), n)


@case("semaphore_uncontended", n=1_000_000, quick_n=100_000, target=1.0)
def bench_semaphore(mp, n):
    """Semaphore acquire()+release(), uncontended."""
    return _acquire_release(mp.Semaphore(1), n)


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


@case("queue_small", n=50000, quick_n=5000, target=1.2)
def bench_queue_small(mp, n):
    """Queue of small dicts from a child process to the parent."""
    return _queue_transfer(mp, n, SMALL)


@case("queue_1mb", n=400, quick_n=50, target=0.9)
def bench_queue_big(mp, n):
    """Queue of 1 MB bytes objects from a child process to the parent."""
    return _queue_transfer(mp, n, os.urandom(1024 * 1024))


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


@case("start_join_fork", n=200, quick_n=30, target=0.9)
def bench_start_fork(mp, n):
    """Process(target=noop).start() + join(), fork."""
    return _start_join(mp, "fork", n)


@case("start_join_spawn", n=20, quick_n=4, target=1.0)
def bench_start_spawn(mp, n):
    """Process(target=noop).start() + join(), spawn."""
    return _start_join(mp, "spawn", n)


@case("start_join_forkserver", n=100, quick_n=15, target=0.9)
def bench_start_forkserver(mp, n):
    """Process(target=noop).start() + join(), forkserver."""
    return _start_join(mp, "forkserver", n)


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


@case("pickle_1000_dicts", n=300, quick_n=30, target=1 / 1.3, pypi_target=20.0)
def bench_pickle_dicts(mp, n):
    """ForkingPickler.dumps + loads of a list of 1,000 small dicts."""
    data = [{"id": i, "name": f"item{i}", "score": i * 0.5, "tags": ["a", "b"]}
            for i in range(1000)]
    return _dumps_loads(mp, data, n)


@case("pickle_range_100k", n=100, quick_n=10, target=1 / 1.3, pypi_target=20.0)
def bench_pickle_range(mp, n):
    """ForkingPickler.dumps + loads of list(range(100000))."""
    return _dumps_loads(mp, list(range(100000)), n)


@case("pickle_range_loads_floor", n=100, quick_n=10, target=None,
      floor_of="pickle_range_100k")
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


# ----------------------------------------------------------------------------
# measuring (in a subprocess per case and implementation)

def _import_impl(impl):
    if impl == "raw":
        return None
    if impl == "stdlib":
        import multiprocessing as mp
    else:
        # PYTHONPATH (set by run_one for the PyPI copy) precedes site-packages
        import multiprocess as mp
    return mp


def measure(impl, name, quick, repeat):
    mp = _import_impl(impl)
    c = CASES[name]
    n = c.quick_n if quick else c.n
    times = [c.fn(mp, n) / n for _ in range(repeat)]
    return {"impl": impl, "case": name, "n": n, "best": min(times),
            "times": times, "module": mp and os.path.dirname(mp.__file__)}


def compile_packages(ns):
    """Bring the .pyc files of multiprocess (and the PyPI copy) up to date."""
    import compileall
    import importlib.util
    dirs = []
    spec = importlib.util.find_spec("multiprocess")
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(spec.submodule_search_locations)
    if ns.pypi:
        dirs.append(os.path.join(ns.pypi, "multiprocess"))
    for d in dirs:
        if os.path.isdir(d):
            compileall.compile_dir(d, quiet=2, workers=1)


def run_one(impl, name, ns, env):
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", impl, name,
           "--repeat", str(ns.repeat)]
    if ns.quick:
        cmd.append("--quick")
    e = dict(env)
    if impl == "pypi":
        e["PYTHONPATH"] = ns.pypi + os.pathsep + e.get("PYTHONPATH", "")
    try:
        # cwd: a directory holding no package, since children started with
        # `python -c` (forkserver, spawn) put the cwd first on sys.path
        r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=ns.timeout,
                           stdin=subprocess.DEVNULL, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {ns.timeout}s"}
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt_time(sec):
    if sec is None:
        return "-"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if sec >= scale * 0.9995:   # what rounds to 1.00 shows in this unit
            return f"{sec / scale:.3g} {unit}"
    return f"{sec * 1e9:.3g} ns"


def table(results, impls, cases):
    rows = []
    head = ["case", "stdlib", "ours"] + (["pypi"] if "pypi" in impls else []) + \
        ["stdlib/ours", "target"] + (["pypi/ours", "target"] if "pypi" in impls else [])
    notes = []
    for name in cases:
        c = CASES[name]
        res = results[name]
        if c.reference:
            t = res["raw"].get("best")
            shown = fmt_time(t) if t else "ERR"
            rows.append([name, shown, shown] + (["-"] if "pypi" in impls else []) +
                        ["ref", "reference, no target"] +
                        (["", ""] if "pypi" in impls else []))
            above = results.get(c.floor_of)
            if t and above:
                def gap(sec):
                    return ("+" if sec >= 0 else "-") + fmt_time(abs(sec))
                gaps = ", ".join(
                    f"{i} {gap(above[i]['best'] - t)}" for i in impls
                    if above[i].get("best"))
                notes.append(f"{c.floor_of} above {name}: {gaps}")
                bounded = CASES[c.floor_of]
                if bounded.pypi_target and above.get("pypi", {}).get("best"):
                    notes.append(
                        f"{c.floor_of}: pypi/ours could reach at most "
                        f"{above['pypi']['best'] / t:.2f}x (ours taking no "
                        f"more than {name})")
            continue
        best = {i: res[i].get("best") for i in impls}
        row = [name] + [fmt_time(best[i]) if best[i] else "ERR" for i in ("stdlib", "ours")]
        if "pypi" in impls:
            row.append(fmt_time(best["pypi"]) if best["pypi"] else "ERR")

        def ratio(other, target):
            if not best.get(other) or not best.get("ours"):
                return ["-", "-"]
            r = best[other] / best["ours"]
            if target is None:
                return [f"{r:.2f}x", ""]
            return [f"{r:.2f}x", f">={target:.2f}x " + ("ok" if r >= target else "MISS")]
        row += ratio("stdlib", c.target)
        if "pypi" in impls:
            row += ratio("pypi", c.pypi_target)
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="multiprocess vs multiprocessing benchmarks")
    ap.add_argument("--only", action="append", default=[],
                    help="run the cases whose name contains this (repeatable)")
    ap.add_argument("--quick", action="store_true", help="about a tenth of the iterations")
    ap.add_argument("--pypi", help="directory where the PyPI multiprocess is installed "
                                   "(pip install --target DIR multiprocess dill)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each case this many times in fresh processes, "
                         "interleaved across implementations, and keep the best: "
                         "nanosecond cases move by tens of percent from one "
                         "process to the next")
    ap.add_argument("--timeout", type=float, default=600, help="per case and implementation")
    ap.add_argument("--mmap-threshold", default="33554432",
                    help="MALLOC_MMAP_THRESHOLD_ for every measuring process")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not byte-compile the packages under test first")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--measure", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)

    if ns.measure:
        print(json.dumps(measure(ns.measure[0], ns.measure[1], ns.quick, ns.repeat)))
        return 0
    if ns.list:
        for c in CASES.values():
            print(f"{c.name:24} {c.doc}")
        return 0
    cases = [n for n in CASES if not ns.only or any(o in n for o in ns.only)]
    if not cases:
        ap.error("no case matches --only")
    # A floor runs whenever the case it bounds does, right before it.
    for name in [n for n in CASES if CASES[n].reference]:
        if CASES[name].floor_of in cases and name not in cases:
            cases.insert(cases.index(CASES[name].floor_of), name)
    impls = ["stdlib", "ours"] + (["pypi"] if ns.pypi else [])
    if not ns.no_compile:
        compile_packages(ns)
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = ns.mmap_threshold
    env.pop("PYTHONMALLOC", None)
    results = {}
    for name in cases:
        results[name] = {}
        # interleaved, so drift hits every implementation alike
        for _ in range(max(1, ns.rounds)):
            for impl in (["raw"] if CASES[name].reference else impls):
                got = run_one(impl, name, ns, env)
                kept = results[name].get(impl)
                if kept is None or "error" in kept:
                    results[name][impl] = got
                elif "error" not in got:
                    kept["times"] += got["times"]
                    kept["best"] = min(kept["best"], got["best"])
                err = got.get("error")
                status = f"ERROR {err}" if err else fmt_time(got["best"]) + f"/{CASES[name].unit}"
                print(f"  {name:24} {impl:7} {status}", file=sys.stderr, flush=True)
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"MALLOC_MMAP_THRESHOLD_={ns.mmap_threshold}, best of {ns.repeat}"
          f"{f' x {ns.rounds} processes' if ns.rounds > 1 else ''}"
          f"{', quick' if ns.quick else ''}; times per operation; "
          "ratios are speed-ups of ours (>1: ours faster)\n")
    print(table(results, impls, cases))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
