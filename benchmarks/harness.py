"""The one benchmark harness: multiprocess against the standard library's
multiprocessing of the same Python and, with --pypi DIR, the PyPI
multiprocess installed apart in DIR, interleaved in one run.

The cases live in bench.py (pipes, locks, queues, start-up, pickling),
bench_pool.py, bench_shared.py and bench_managers.py; each registers its
functions with @case.  `python benchmarks/bench.py` runs them all,
`python benchmarks/bench_pool.py` (and the others) one group.

How a run goes (the reasons are in docs/performance.md, "The harness"):

- Streams.  Every case is measured in four streams: `stdlib`, `ours`,
  `pypi` (with --pypi) and `stdlib_aa`, a second, independent measurement of
  the stdlib.  stdlib/stdlib_aa is the A/A ratio: how far two measurements
  of the very same code land apart in this run on this machine.  Its
  distance from 1 is the case's noise band.
- Isolation.  Every (case, stream, round) is one fresh subprocess of this
  interpreter (`harness.py --measure`), with one environment for all
  (MALLOC_MMAP_THRESHOLD_ pinned: importing dill moves glibc's dynamic mmap
  threshold, and with it the cost of every multi-megabyte buffer).  The PyPI
  copy is found through PYTHONPATH in its own subprocesses only.
- Interleaving.  For each case, --rounds rounds (or the case's own number,
  for cheap cases whose speed moves with the machine); in each round every
  stream runs once, in an order rotated from round to round, so the
  machine's drift hits every stream alike.
- Statistics.  A subprocess runs the case `repeat` times (the case's own
  number, at most 2 in --quick, 1 in --smoke; fewer once its timed work
  passes REPEAT_BUDGET, so that a pathologically slow stream cannot eat the
  run) and reports each time; a stream's time is the best of all its
  values (the least disturbed run), the ratio is stdlib best / ours best
  (above 1: ours is faster).
- Busy variants.  A case registered with busy=True also runs as
  NAME_busy: the harness starts one process spinning in a Python loop per
  usable CPU right before each of that case's measuring subprocesses and
  stops them after it, so the measured code competes for every core.
- Verdicts.  A target is the least acceptable stdlib/ours ratio.  `ok` when
  met; `ok~` when missed by less than the case's own A/A noise band (the
  difference cannot be told from noise in this run); `MISS` otherwise.

The JSON written by --json holds every value; benchmarks/report.py turns one
or more of those files into the Markdown tables and the SVG chart of
docs/performance.md.

Writing a case: `def bench_x(mp, n): ... return seconds` -- the seconds
that n operations took, measured by the function itself around the part
that counts (setup outside).  `mp` is the package under test
(multiprocessing, our multiprocess or the PyPI one), imported in the
measuring subprocess; `None` for a reference case (floor_of=...), which
measures the machine and runs in one stream.  Functions that a child
process runs must be at module level (spawn and forkserver find them by
name).
"""
import math
import os
import sys
import time

# The measuring subprocesses import this module: what it imports at the top
# every one of them pays for (json pulls in re, for one), so the parent's
# tools are imported where they are used.

HERE = os.path.dirname(os.path.abspath(__file__))
CASE_MODULES = ("bench", "bench_pool", "bench_shared", "bench_managers",
                "bench_pool_features")
GROUPS = {"bench": "core", "bench_pool": "pool", "bench_shared": "shared",
          "bench_managers": "managers", "bench_pool_features": "features"}
# groups that run only when asked for (--group, or a matching --only)
OPTIONAL_GROUPS = {"features"}
MODES = ("full", "quick", "smoke")
# seconds of timed work after which a subprocess stops repeating its case
REPEAT_BUDGET = {"full": 6.0, "quick": 1.5, "smoke": 0.0}
BUSY_SUFFIX = "_busy"


class Case:
    def __init__(self, name, fn, group, unit, n, target, pypi_target, doc,
                 floor_of=None, repeat=3, busy=False, off_case=None, rounds=None):
        self.name, self.fn, self.group, self.unit = name, fn, group, unit
        self.n = n                      # {"full": .., "quick": .., "smoke": ..}
        self.target, self.pypi_target, self.doc = target, pypi_target, doc
        self.floor_of = floor_of
        self.repeat = repeat
        self.busy = busy                # this entry is the busy variant
        self.base = name[:-len(BUSY_SUFFIX)] if busy else name
        self.off_case = off_case        # the same call with our option off
        self.rounds = rounds            # its own rounds (full and quick), or None

    @property
    def reference(self):
        return self.floor_of is not None

    def describe(self):
        return {"group": self.group, "unit": self.unit, "doc": self.doc,
                "target": self.target, "pypi_target": self.pypi_target,
                "floor_of": self.floor_of, "busy": self.busy, "base": self.base,
                "off_case": self.off_case}


CASES = {}


def case(name, n, quick_n=None, smoke_n=1, unit="op", target=1.0,
         pypi_target=None, floor_of=None, repeat=3, busy=False,
         busy_target=1.0, busy_n=None, busy_quick_n=None, off_case=None, doc=None,
         rounds=None):
    """Register a benchmark function.

    n, quick_n, smoke_n: operations per measurement in the full, --quick and
    --smoke modes.  target: least acceptable stdlib/ours speed ratio (None:
    no target); pypi_target: the same against the PyPI multiprocess.
    floor_of: a reference measurement (no package, no target) bounding the
    named case.  repeat: measurements per subprocess.  busy: also register
    NAME_busy, measured with every CPU running a spinning process, held to
    busy_target, with busy_n and busy_quick_n operations (default: n and
    quick_n).  off_case: this case is another's call with one of our
    options on; the other is selected with it.  doc: the description
    (default: the function's docstring).  rounds: the case's interleaved
    rounds in the full and --quick modes (default: the run's), for a case
    whose subprocess takes a fraction of a second and whose per-operation
    time moves with the machine for longer than that: more fresh processes
    per stream, so that each stream's best is taken in a quiet moment."""
    def deco(fn):
        module = fn.__module__
        if module == "__main__":
            # a case file run as a script: the harness imports it again
            # under its own name, which is the copy that counts
            return fn
        group = GROUPS.get(module, module)
        doc_ = doc or (fn.__doc__ or "").strip().split("\n")[0]
        counts = {"full": n, "quick": quick_n or max(1, n // 10),
                  "smoke": smoke_n}
        CASES[name] = Case(name, fn, group, unit, counts, target, pypi_target,
                           doc_, floor_of, repeat, off_case=off_case, rounds=rounds)
        if busy:
            busy_counts = dict(counts, full=busy_n or counts["full"],
                               quick=busy_quick_n or counts["quick"])
            CASES[name + BUSY_SUFFIX] = Case(
                name + BUSY_SUFFIX, fn, group, unit, busy_counts, busy_target,
                None, doc_ + " -- every CPU busy", None, repeat, busy=True,
                rounds=rounds)
        return fn
    return deco


def load_cases():
    import importlib
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    for m in CASE_MODULES:
        importlib.import_module(m)
    return CASES


def best_slices(loop, n, slices=10):
    """Run loop(k) over n operations cut in `slices` slices and return the
    best slice's time scaled to n operations: on a shared machine a slice
    that lost the CPU says nothing about the code."""
    per = max(1, n // slices)
    best = math.inf
    for _ in range(max(1, min(slices, n))):
        t = time.perf_counter()
        loop(per)
        best = min(best, (time.perf_counter() - t) / per)
    return best * n


# ----------------------------------------------------------------------------
# the measuring subprocess

def _import_impl(impl):
    if impl == "raw":
        return None
    if impl.startswith("stdlib"):
        import multiprocessing as mp
    else:
        # for "pypi" the parent put the PyPI copy first on PYTHONPATH
        import multiprocess as mp
    return mp


def measure(impl, names, mode, repeat=None):
    """Run the named cases in this process; one JSON-able dict per case."""
    mp = _import_impl(impl)
    out = []
    for name in names:
        c = CASES[name]
        n = c.n[mode]
        reps = repeat or {"full": c.repeat, "quick": min(c.repeat, 2), "smoke": 1}[mode]
        res = {"impl": impl, "case": name, "n": n,
               "module": mp and os.path.dirname(mp.__file__)}
        try:
            res["times"] = times = []
            spent = 0.0
            for _ in range(reps):
                dt = c.fn(mp, n)
                times.append(dt / n)
                spent += dt
                if spent > REPEAT_BUDGET[mode]:
                    # a pathologically slow stream keeps its first values
                    # rather than eat the run's time
                    break
        except Exception as exc:
            # one broken case must not take the others of a batch with it
            res["error"] = f"{type(exc).__name__}: {exc}"
        out.append(res)
    return out


def _child_main(argv):
    """harness.py --measure IMPL [--mode MODE] [--repeat N] CASE...: parsed by
    hand, since every measuring process pays for what it imports."""
    opts, cases = {"--mode": "full", "--repeat": None}, []
    args = iter(argv)
    for a in args:
        if a in ("--measure", "--mode", "--repeat"):
            opts[a] = next(args)
        else:
            cases.append(a)
    if opts["--mode"] not in MODES or not cases or "--measure" not in opts:
        raise SystemExit("usage: harness.py --measure IMPL [--mode MODE] "
                         "[--repeat N] CASE...")
    load_cases()
    repeat = int(opts["--repeat"]) if opts["--repeat"] else None
    for res in measure(opts["--measure"], cases, opts["--mode"], repeat):
        print(repr(res), flush=True)
    return 0


# ----------------------------------------------------------------------------
# the parent: streams, rounds, spinners

class Spinners:
    """One process per usable CPU, each spinning in a Python loop, for the
    length of a `with` block."""

    def __init__(self, count=None):
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:
            cpus = os.cpu_count() or 1
        self.count = count or cpus
        self.procs = []

    def __enter__(self):
        import subprocess
        code = "while True: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code],
                                       stdin=subprocess.DEVNULL)
                      for _ in range(self.count)]
        time.sleep(0.02)   # let them reach the loop before anything is timed
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def compile_packages(pypi):
    """Bring the .pyc files of the packages under test up to date: a process
    importing a module whose .pyc is stale compiles its source again (in
    every process, with PYTHONDONTWRITEBYTECODE), which the start-up cases
    would measure; the stdlib's are compiled already."""
    import compileall
    import importlib.util
    dirs = []
    spec = importlib.util.find_spec("multiprocess")
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(spec.submodule_search_locations)
    if pypi:
        dirs.append(os.path.join(pypi, "multiprocess"))
    # and the case files themselves, which every measuring process imports
    dirs.append(HERE)
    for d in dirs:
        if os.path.isdir(d) and os.access(d, os.W_OK):
            compileall.compile_dir(d, quiet=2, workers=1, maxlevels=0 if d == HERE else None)


def run_child(impl, names, ns, env, busy=False):
    """Measure `names` for `impl` in one fresh subprocess: a list of result
    dicts, or one {"error": ...} per name."""
    import ast
    import subprocess
    cmd = [sys.executable, os.path.join(HERE, "harness.py"), "--measure", impl,
           "--mode", ns.mode] + (["--repeat", str(ns.repeat)] if ns.repeat else []) + names
    e = dict(env)
    if impl == "pypi":
        e["PYTHONPATH"] = ns.pypi + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    try:
        spin = Spinners() if busy else None
        if spin:
            spin.__enter__()
        try:
            # cwd: the benchmarks folder holds no package, and children
            # started with `python -c` (forkserver, spawn) put it first
            r = subprocess.run(cmd, env=e, capture_output=True, text=True,
                               timeout=ns.timeout, stdin=subprocess.DEVNULL, cwd=HERE)
        finally:
            if spin:
                spin.__exit__()
    except subprocess.TimeoutExpired:
        return [{"case": n, "impl": impl, "error": f"timeout after {ns.timeout}s"} for n in names]
    got = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            res = ast.literal_eval(line)
            got[res["case"]] = res
    if r.returncode != 0 or len(got) < len(names):
        err = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        for n in names:
            got.setdefault(n, {"case": n, "impl": impl, "error": err})
    return [got[n] for n in names]


def check_module(impl, res, ns):
    """The stream measured what it claims: ours is not the PyPI copy, the
    PyPI stream is."""
    mod = res.get("module") or ""
    if impl == "pypi" and not os.path.realpath(mod).startswith(os.path.realpath(ns.pypi)):
        res["error"] = f"pypi stream imported {mod}"
    if impl == "ours" and ns.pypi and os.path.realpath(mod).startswith(os.path.realpath(ns.pypi)):
        res["error"] = f"ours stream imported the PyPI copy {mod}"


def streams_for(c, ns):
    if c.reference:
        return ["raw"]
    s = ["stdlib", "ours"]
    if ns.pypi:
        s.append("pypi")
    if not ns.no_aa:
        s.append("stdlib_aa")
    return s


def summarize(c, values, errors):
    """Best time per stream, the ratios, the A/A band and the verdicts."""
    best = {i: min(v) for i, v in values.items() if v}
    out = {"best": best, "errors": errors}
    if c.reference:
        return out
    std, ours = best.get("stdlib"), best.get("ours")
    out["ratio"] = std / ours if std and ours else None
    out["pypi_ratio"] = best["pypi"] / ours if best.get("pypi") and ours else None
    aa = best.get("stdlib_aa")
    out["aa"] = std / aa if std and aa else None
    out["band"] = max(out["aa"], 1 / out["aa"]) if out["aa"] else None
    out["verdict"] = verdict(out["ratio"], c.target, out["band"])
    out["pypi_verdict"] = verdict(out["pypi_ratio"], c.pypi_target, out["band"])
    return out


def verdict(ratio, target, band):
    if target is None:
        return None
    if ratio is None:
        return "ERROR"
    if ratio >= target:
        return "ok"
    if band and ratio * band >= target:
        return "ok~"
    return "MISS"


def _jobs(ns, names):
    """What each subprocess measures: one case per subprocess, except in
    smoke mode, where all the cases that share their streams and busyness go
    through one subprocess per stream (the point there is that every case
    still runs, not isolation)."""
    if ns.mode != "smoke":
        return [[n] for n in names]
    batches = {}
    for n in names:
        c = CASES[n]
        batches.setdefault((c.reference, c.busy), []).append(n)
    return list(batches.values())


def package_versions(ns):
    """The versions under test, found by the parent (importlib.metadata
    would cost every measuring process a third of a second)."""
    from importlib import metadata
    out = {"stdlib": sys.version.split()[0]}
    try:
        out["ours"] = metadata.version("multiprocess")
    except metadata.PackageNotFoundError:
        pass
    if ns.pypi:
        for d in metadata.distributions(path=[ns.pypi]):
            if d.metadata["Name"] == "multiprocess":
                out["pypi"] = d.version
    return out


def case_rounds(c, ns, default):
    """Rounds for case c: --rounds if given, else the case's own outside
    smoke mode, else the run's default."""
    if ns.rounds or ns.mode == "smoke" or not c.rounds:
        return default
    return c.rounds


def run_suite(ns, names):
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = ns.mmap_threshold
    env.pop("PYTHONMALLOC", None)
    rounds = ns.rounds or {"full": 3, "quick": 2, "smoke": 1}[ns.mode]
    started = time.time()
    values = {n: {s: [] for s in streams_for(CASES[n], ns)} for n in names}
    errors = {n: {} for n in names}
    wall = {n: 0.0 for n in names}
    versions = package_versions(ns)
    for job in _jobs(ns, names):
        first = CASES[job[0]]
        streams = streams_for(first, ns)
        for r in range(case_rounds(first, ns, rounds)):
            k = r % len(streams)
            for impl in streams[k:] + streams[:k]:
                t0 = time.time()
                got = run_child(impl, job, ns, env, busy=first.busy)
                for name in job:
                    wall[name] += (time.time() - t0) / len(job)
                for res in got:
                    name = res["case"]
                    check_module(impl, res, ns)
                    if "error" in res:
                        errors[name][impl] = res["error"]
                        status = "ERROR " + res["error"]
                    else:
                        values[name][impl].extend(res["times"])
                        status = fmt_time(min(res["times"])) + f"/{CASES[name].unit}"
                    if not ns.silent:
                        print(f"  {name:34} {impl:9} {status}", file=sys.stderr, flush=True)
    results = {}
    for name in names:
        c = CASES[name]
        entry = c.describe()
        entry.update(n=c.n[ns.mode], values=values[name], seconds=round(wall[name], 2),
                     rounds=case_rounds(c, ns, rounds))
        entry.update(summarize(c, values[name], errors[name]))
        results[name] = entry
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    meta = {"python": sys.version.split()[0], "implementation": sys.implementation.name,
            "cpus": os.cpu_count(), "mode": ns.mode, "rounds": rounds,
            "repeat": ns.repeat, "pypi": bool(ns.pypi), "aa": not ns.no_aa,
            "mmap_threshold": ns.mmap_threshold, "versions": versions,
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "seconds": round(time.time() - started, 1), "loadavg_end": load}
    return {"meta": meta, "cases": results}


# ----------------------------------------------------------------------------
# output

def fmt_time(sec):
    if sec is None:
        return "-"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if sec >= scale * 0.9995:   # what rounds to 1.00 shows in this unit
            return f"{sec / scale:.3g} {unit}"
    return f"{sec * 1e9:.3g} ns"


def select(ns):
    names = list(CASES)
    if ns.group:
        names = [n for n in names if CASES[n].group in ns.group]
    elif not ns.only:
        names = [n for n in names if CASES[n].group not in OPTIONAL_GROUPS]
    if ns.only:
        names = [n for n in names if any(o in n for o in ns.only)]
    if ns.no_busy:
        names = [n for n in names if not CASES[n].busy]
    if ns.busy_only:
        names = [n for n in names if CASES[n].busy]
    # a floor runs whenever the case it bounds does, right before it, and
    # an option's case brings the same call with the option off
    for n in [n for n in CASES if CASES[n].reference]:
        if CASES[n].floor_of in names and n not in names:
            names.insert(names.index(CASES[n].floor_of), n)
    for n in list(names):
        off = CASES[n].off_case
        if off and off not in names:
            names.insert(names.index(n), off)
    return names


def parser(group=None):
    import argparse
    ap = argparse.ArgumentParser(
        description="multiprocess against multiprocessing (and the PyPI "
                    "multiprocess): one suite, interleaved, with an A/A noise band")
    ap.add_argument("--quick", dest="mode", action="store_const", const="quick",
                    default="full", help="fewer operations and rounds (under ~2 minutes)")
    ap.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                    help="one tiny measurement of each case: checks the harness, not speed")
    ap.add_argument("--only", action="append", default=[],
                    help="the cases whose name contains this (repeatable)")
    ap.add_argument("--group", action="append",
                    default=[group] if group else [],
                    choices=sorted(set(GROUPS.values())), help="one group of cases (repeatable)")
    ap.add_argument("--pypi", metavar="DIR",
                    help="directory holding the PyPI multiprocess "
                         "(pip install --target DIR multiprocess==0.70.19 dill)")
    ap.add_argument("--rounds", type=int,
                    help="interleaved rounds per case (default 3, quick 2, smoke 1)")
    ap.add_argument("--repeat", type=int,
                    help="measurements per subprocess (default: the case's own)")
    ap.add_argument("--no-aa", action="store_true", help="skip the A/A stream")
    ap.add_argument("--no-busy", action="store_true", help="skip the _busy variants")
    ap.add_argument("--busy-only", action="store_true", help="only the _busy variants")
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds per measuring subprocess")
    ap.add_argument("--mmap-threshold", default="33554432",
                    help="MALLOC_MMAP_THRESHOLD_ for every measuring process")
    ap.add_argument("--json", help="write every value, ratio and verdict here")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not byte-compile the packages under test first")
    ap.add_argument("--silent", action="store_true", help="no progress lines")
    ap.add_argument("--list", action="store_true", help="list the cases")
    return ap


def main(argv=None, group=None):
    load_cases()
    ap = parser(group)
    ns = ap.parse_args(argv)
    if ns.pypi:
        ns.pypi = os.path.abspath(ns.pypi)
        if not os.path.isdir(os.path.join(ns.pypi, "multiprocess")):
            ap.error(f"no multiprocess package in {ns.pypi}")
    names = select(ns)
    if ns.list:
        for n in names:
            c = CASES[n]
            tgt = "ref" if c.reference else (f">={c.target:.2f}x" if c.target else "-")
            print(f"{n:34} {c.group:8} {tgt:8} {c.doc}")
        return 0
    if not names:
        ap.error("no case selected")
    if not ns.no_compile:
        compile_packages(ns.pypi)
    data = run_suite(ns, names)
    import report
    print()
    print(report.heading(data))
    print()
    print(report.markdown_table(data))
    if ns.json:
        import json
        with open(ns.json, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    # re-import under the name the case files use, so that one registry is
    # filled
    sys.path.insert(0, HERE)
    import harness
    if "--measure" in sys.argv:
        sys.exit(harness._child_main(sys.argv[1:]))
    sys.exit(harness.main())
