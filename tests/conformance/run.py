"""Run CPython's own multiprocessing test suite against multiprocess.

The suite (test/_test_multiprocessing.py of the running Python) is read at
run time, every reference to the module name is rewritten to the target
package, and the result is written to a temporary directory outside the
repository, together with one small module per (start method, group), so
that spawned children can import the tests by name.  Nothing of CPython's is
ever stored in this repository.

Each (method, group) unit runs in its own worker process (_worker.py), two
at a time; the worker streams one event per test, so a hang or a crash costs
only the test that was running: the parent records it and restarts the
worker on the rest.

    python tests/conformance/run.py --method fork [--group misc] [-k _TestLock]
    python tests/conformance/run.py --target multiprocessing --json out.json
    python tests/conformance/run.py --check          # vs the stdlib baseline
    python tests/conformance/run.py --update-known-gaps
    python tests/conformance/run.py --update-baseline --target multiprocessing

The baseline and the known gaps are per Python minor version
(stdlib_baseline-3.11.json, known_gaps-3.11.txt, ...): every command above
reads and writes those of the interpreter that runs it.

Outcomes per test: pass, fail, error, skip, xfail, xpass, hang (watchdog
fired), crash (worker died), notrun (never reached: fixture error, deadline).
"""
import argparse
import collections
import concurrent.futures
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The suite, the stdlib's outcomes and our gaps all differ between Python
# minor versions: each version has its own baseline and known-gaps file, and
# the running interpreter picks its own.
PY_VERSION = "%d.%d" % sys.version_info[:2]


def baseline_path(version=PY_VERSION):
    return os.path.join(HERE, f"stdlib_baseline-{version}.json")


def known_gaps_path(version=PY_VERSION):
    return os.path.join(HERE, f"known_gaps-{version}.txt")


BASELINE = baseline_path()
KNOWN_GAPS = known_gaps_path()
WORKER = os.path.join(HERE, "_worker.py")


def _load_adaptations():
    spec = importlib.util.spec_from_file_location(
        "_mpconf_adaptations", os.path.join(HERE, "adaptations.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ADAPTATIONS = _load_adaptations()

METHODS = ("fork", "spawn", "forkserver")
# group name -> arguments for install_tests_in_module_dict
GROUPS = {
    "processes": "only_type='processes'",
    "threads": "only_type='threads'",
    "manager": "only_type='manager'",
    "misc": "exclude_types=True",
}
# longest first, so two parallel lanes finish close together
GROUP_ORDER = ("processes", "manager", "misc", "threads")
PASSING = ("pass", "xfail")
LONG_TIMEOUT_CAP = 60.0


# ----------------------------------------------------------------------------
# generating the suite

def suite_module(target):
    # The file keeps the stdlib's name: test_stderr_flush looks for
    # "test_multiprocessing.py" in a child's traceback.
    return "_test_multiprocessing"


# Module references only: `multiprocessing` or `_multiprocessing` as a whole
# word (imports, mock targets, code strings run in subprocesses, f-strings
# naming modules).  Names that merely contain the word stay as they are:
# test.support.skip_if_broken_multiprocessing_synchronize, test ids such as
# test_worker_finalization_via_atexit_handler_of_multiprocessing (the
# baseline is keyed by them) and test.test_multiprocessing_forkserver.
_MODULE_WORD = re.compile(r"(?<![\w-])(_?)multiprocessing(?![\w-])")


# Message texts that name the stdlib and that we emit word for word (users
# filter warnings by them): the suite matches them, so they stay as written.
_KEPT_TEXTS = ("unclosed running multiprocessing pool",)


def rename_modules(text, target):
    kept = {}
    for i, phrase in enumerate(_KEPT_TEXTS):
        kept[f"\0kept{i}\0"] = phrase
        text = text.replace(phrase, f"\0kept{i}\0")
    text = _MODULE_WORD.sub(lambda m: m.group(1) + target, text)
    for mark, phrase in kept.items():
        text = text.replace(mark, phrase)
    return text


def _locations(names):
    """Directories that hold the given top-level modules (for python -S)."""
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        origin = spec.origin
        d = os.path.dirname(origin)
        if spec.submodule_search_locations:
            d = os.path.dirname(d)
        if d not in dirs:
            dirs.append(d)
    return dirs


def suite_source(target, workdir, stubs=False):
    import test
    path = os.path.join(os.path.dirname(test.__file__), "_test_multiprocessing.py")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if target == "multiprocessing":
        return text
    text = rename_modules(text, target)
    # TestFlags starts `python -E -S -O -c "from test._test_... import ..."`:
    # without site-packages the rewritten suite, the package and dill are
    # only reachable through explicit paths.
    paths = [workdir] + _locations([target, "_" + target, "dill"])
    text = text.replace(
        "'from test._test_multiprocessing import TestFlags; '",
        f"'import sys; sys.path[:0] = {json.dumps(paths)}; "
        + (f"import _mpconf_stubs; _mpconf_stubs.install({json.dumps(target)}); " if stubs else "") +
        f"from {suite_module(target)} import TestFlags; '")
    return text + ADAPTATIONS.SUITE_PATCH


def helper_sources(target):
    """mp_preload.py and mp_fork_bomb.py, found next to the suite file."""
    import test
    out = {}
    for name in ("mp_preload.py", "mp_fork_bomb.py"):
        with open(os.path.join(os.path.dirname(test.__file__), name), encoding="utf-8") as f:
            text = f.read()
        if target != "multiprocessing":
            text = rename_modules(text, target)
            # run with -I (no script directory on sys.path): put the copy's
            # own directory there, as the stdlib's is found through `test`
            text = text.replace(
                'modname = "test.mp_preload"',
                'import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n'
                '    modname = "mp_preload"')
        out[name] = text
    return out


def unit_module(method, group):
    return f"_mpconf_{method}_{group}"


def prepare(workdir, target, methods, stubs=False):
    if stubs:
        with open(os.path.join(HERE, "_stubs.py")) as src, \
                open(os.path.join(workdir, "_mpconf_stubs.py"), "w") as dst:
            dst.write(src.read())
    with open(os.path.join(workdir, suite_module(target) + ".py"), "w") as f:
        f.write(suite_source(target, workdir, stubs))
    for name, text in helper_sources(target).items():
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)
    for method in methods:
        for group, args in GROUPS.items():
            with open(os.path.join(workdir, unit_module(method, group) + ".py"), "w") as f:
                f.write(
                    "import test.support\n"
                    "# a test that waits on LONG_TIMEOUT (5 min) must not eat the budget\n"
                    f"test.support.LONG_TIMEOUT = min(test.support.LONG_TIMEOUT, {LONG_TIMEOUT_CAP})\n"
                    + (f"import _mpconf_stubs\n_mpconf_stubs.install({target!r})\n" if stubs else "") +
                    f"import {suite_module(target)} as _suite\n"
                    + _install_tests(method, group, args))


if sys.version_info >= (3, 11):
    def _install_tests(method, group, args):
        return f"_suite.install_tests_in_module_dict(globals(), {method!r}, {args})\n"
else:
    def _install_tests(method, group, args):
        # 3.10's install_tests_in_module_dict has no only_type/exclude_types:
        # install every class, then keep the group's (named as group_of says)
        prefixes = tuple("With" + g.capitalize() for g in GROUPS if g != "misc")
        keep = (f"_n.startswith({'With' + group.capitalize()!r})" if group != "misc"
                else f"not _n.startswith({prefixes!r})")
        return (f"_suite.install_tests_in_module_dict(globals(), {method!r})\n"
                "import unittest as _unittest\n"
                "for _n, _v in list(globals().items()):\n"
                "    if (isinstance(_v, type) and issubclass(_v, _unittest.TestCase)\n"
                f"            and not ({keep})):\n"
                "        del globals()[_n]\n")


# ----------------------------------------------------------------------------
# running units

class Unit:
    def __init__(self, method, group):
        self.method, self.group = method, group
        self.plan = []
        self.results = {}   # id -> {"outcome", "detail", "secs"}
        self.notes = []
        self.wall = 0.0

    @property
    def name(self):
        return f"{self.method}/{self.group}"


def _kill_group(pgid, grace):
    """Let the unit's leftover processes (forkserver, resource tracker) end on
    their own for `grace` seconds, then SIGKILL the process group."""
    end = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() >= end:
            break
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _restore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_unit(unit, workdir, env, ns, deadline, log):
    start = time.monotonic()
    attempts = 0
    skip_hangs = ns.skip_ids.get(unit.method, set())
    while True:
        attempts += 1
        tag = f"{unit.method}_{unit.group}_{attempts}"
        events_path = os.path.join(workdir, f"events_{tag}.jsonl")
        skip_path = os.path.join(workdir, f"skip_{tag}.txt")
        err_path = os.path.join(workdir, f"stderr_{tag}.txt")
        with open(skip_path, "w") as f:
            for tid in list(unit.results) + sorted(skip_hangs):
                f.write(tid + "\n")
        cmd = [sys.executable, WORKER, "--module", unit_module(unit.method, unit.group),
               "--events", events_path, "--skip-file", skip_path,
               "--timeout", str(ns.per_test_timeout),
               "--slow", json.dumps(ADAPTATIONS.SLOW)]
        for k in ns.k:
            cmd += ["-k", k]
        remaining = deadline - time.monotonic()
        timed_out = False
        done_before = len(unit.results)
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_restore_sigint)
            try:
                rc = proc.wait(timeout=max(remaining, 1))
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGABRT)
                except ProcessLookupError:
                    pass
                try:
                    rc = proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    rc = proc.wait()
        _kill_group(proc.pid, 0 if timed_out else 5)
        with open(err_path, "rb") as f:
            stderr = f.read().decode("utf-8", "replace")

        started = None
        if os.path.exists(events_path):
            with open(events_path) as f:
                for line in f:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue  # a torn last line of a killed worker
                    if ev["ev"] == "plan":
                        if not unit.plan:
                            unit.plan = ev["ids"] + [t for t in skip_hangs if t not in ev["ids"]]
                    elif ev["ev"] == "start":
                        started = ev["id"]
                    elif ev["ev"] == "end":
                        unit.results[ev["id"]] = {"outcome": ev["outcome"],
                                                  "detail": ev.get("detail", ""),
                                                  "secs": ev.get("secs", 0.0)}
                        if ev["id"] == started:
                            started = None
        if started is not None:
            if timed_out:
                outcome = "hang"
                unit.notes.append(f"deadline reached during {started}")
            elif "Timeout (" in stderr:
                outcome = "hang"
            else:
                outcome = "crash"
            at = stderr.rfind("Timeout (") if outcome == "hang" else -1
            detail = stderr[at:at + 6000] if at >= 0 else stderr[-6000:]
            unit.results[started] = {"outcome": outcome, "detail": detail,
                                     "secs": None}
            log(f"  {unit.name}: {outcome.upper()} {started}")
        elif rc != 0 and not timed_out:
            errs = [r["detail"] for t, r in unit.results.items() if t.startswith("import (")]
            unit.notes.append(f"worker exited {rc} outside a test: "
                              f"{(stderr or ''.join(errs))[-2000:]}")
        if timed_out:
            break
        todo = [t for t in unit.plan if t not in unit.results and t not in skip_hangs]
        # restart on what is left after a hang, a crash, or an aborted run
        # that got somewhere (an import error gets nowhere and ends the unit)
        progressed = len(unit.results) > done_before
        if not todo or attempts >= 100 or (started is None and (rc == 0 or not progressed)):
            break
    if ns.target != "multiprocessing":
        for tid, why in ADAPTATIONS.DEVIATIONS.items():
            if tid in unit.results:
                unit.results[tid]["adapted"] = why
    for tid in unit.plan:
        if tid not in unit.results:
            why = "known hang, not run" if tid in skip_hangs else "not reached"
            unit.results[tid] = {"outcome": "notrun", "detail": why, "secs": None}
    unit.wall = time.monotonic() - start
    return unit


def run_all(ns):
    methods = ns.method or list(METHODS)
    groups = [g for g in GROUP_ORDER if g in (ns.group or GROUPS)]
    units = [Unit(m, g) for g in groups for m in methods]
    lock = threading.Lock()

    def log(msg):
        with lock:
            print(msg, flush=True)

    with tempfile.TemporaryDirectory(prefix="mpconf-") as workdir:
        stubs = ns.target != "multiprocessing" and not ns.no_stubs
        prepare(workdir, ns.target, methods, stubs)
        env = dict(os.environ)
        env["PYTHONPATH"] = workdir + os.pathsep + env.get("PYTHONPATH", "")
        if stubs:
            probe = subprocess.run(
                [sys.executable, "-c", "import _mpconf_stubs, sys; "
                 f"print(' '.join(_mpconf_stubs.install({ns.target!r})))"],
                env=env, cwd=workdir, capture_output=True, text=True, timeout=120)
            stubbed = probe.stdout.split()
            if stubbed:
                log(f"STUBBED (missing in {ns.target}): {', '.join(stubbed)}")
            elif probe.returncode:
                log(f"the target does not import: {probe.stderr[-1500:]}")
        env.setdefault("PYTHONFAULTHANDLER", "1")
        deadline = time.monotonic() + ns.deadline
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=ns.jobs) as ex:
            futs = [ex.submit(run_unit, u, workdir, env, ns, deadline, log) for u in units]
            for fut in concurrent.futures.as_completed(futs):
                u = fut.result()
                c = count(u.results.values())
                log(f"=== {u.name}: {fmt_counts(c)} ({u.wall:.0f}s)")
                for note in u.notes:
                    log(f"  note: {note[:120]} ... {note[-600:]}" if len(note) > 800 else f"  note: {note}")
    return {"target": ns.target, "python": sys.version.split()[0],
            "wall": round(time.monotonic() - t0, 1),
            "units": [[u.method, u.group] for u in units], "filtered": bool(ns.k),
            "methods": {m: {tid: r for u in units if u.method == m
                            for tid, r in u.results.items()} for m in methods}}


# ----------------------------------------------------------------------------
# reporting

def count(records):
    c = collections.Counter()
    for r in records:
        o = r["outcome"] if isinstance(r, dict) else r
        c[o] += 1
    return c


def fmt_counts(c):
    passed = c["pass"] + c["xfail"]
    failed = c["fail"] + c["xpass"]
    s = (f"{passed} passed, {failed} failed, {c['error']} errors, {c['skip']} skipped")
    extra = [f"{c[k]} {k}" for k in ("hang", "crash", "notrun") if c[k]]
    return s + (" (" + ", ".join(extra) + ")" if extra else "")


def test_class(tid):
    m = re.match(r"\w+ \((\w+)\)$", tid)
    return m.group(1) if m else tid.split(".")[0]


def print_report(data, per_class=True, out=sys.stdout):
    for method, results in data["methods"].items():
        if per_class:
            by_class = collections.defaultdict(list)
            for tid, r in results.items():
                by_class[test_class(tid)].append(r)
            print(f"\n{method}: {'class':44} pass fail  err skip hang",
                  file=out)
            for cls in sorted(by_class):
                c = count(by_class[cls])
                print(f"{method}: {cls:44} {c['pass'] + c['xfail']:4} "
                      f"{c['fail'] + c['xpass']:4} {c['error'] + c['crash'] + c['notrun']:4} "
                      f"{c['skip']:4} {c['hang']:4}", file=out)
    print(file=out)
    total = collections.Counter()
    for method, results in data["methods"].items():
        c = count(results.values())
        total += c
        print(f"TOTAL {method:10} {fmt_counts(c)}", file=out)
    print(f"TOTAL {'all':10} {fmt_counts(total)}  [target {data['target']}, "
          f"{data.get('wall', 0):.0f}s]", file=out)
    adapted = sorted(f"{m}/{t}" for m, res in data["methods"].items()
                     for t, r in res.items() if r.get("adapted"))
    if adapted:
        print(f"{len(adapted)} ran adapted by design (tests/conformance/adaptations.py, "
              f"docs/conformance.md): {', '.join(adapted)}", file=out)


# ----------------------------------------------------------------------------
# baseline and known gaps

def has_baseline(path=BASELINE):
    return os.path.exists(path)


def load_baseline(path=BASELINE):
    if not os.path.exists(path):
        raise SystemExit(
            f"no stdlib baseline for Python {PY_VERSION} ({path}); make it with\n"
            f"  python tests/conformance/run.py --update-baseline --target multiprocessing")
    with open(path) as f:
        return json.load(f)["methods"]


def load_known_gaps(path=KNOWN_GAPS):
    """{(method, id): comment}; a line is `method/Class.test  #N reason`."""
    gaps = {}
    if not os.path.exists(path):
        return gaps
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, comment = line.partition(" ")
            method, _, tid = key.partition("/")
            gaps[(method, tid)] = comment.strip()
    return gaps


def group_of(tid):
    cls = test_class(tid)
    for group in ("processes", "threads", "manager"):
        if cls.startswith("With" + group.capitalize()):
            return group
    return "misc"


def regressions(data, baseline, gaps=None):
    """Tests that pass with the stdlib here but not with the target, and are
    not known gaps: [(method, id, outcome, detail)].  A test of a unit that
    ran in full but never reported counts as "missing"."""
    gaps = gaps or {}
    ran = {tuple(u) for u in data.get("units", [])} if not data.get("filtered") else set()
    out = []
    for method, results in data["methods"].items():
        for tid, base in sorted(baseline.get(method, {}).items()):
            if base not in PASSING or (method, tid) in gaps:
                continue
            r = results.get(tid)
            if r is None:
                if (method, group_of(tid)) in ran:
                    out.append((method, tid, "missing", "not in the run"))
                continue
            if r["outcome"] not in PASSING:
                out.append((method, tid, r["outcome"], r.get("detail", "")))
    return out


def fixed_gaps(data, gaps):
    return sorted(f"{m}/{t}" for (m, t) in gaps
                  if data["methods"].get(m, {}).get(t, {}).get("outcome") in PASSING)


# the open issue each part of the suite waits for
_ISSUE_BY_CLASS = [
    ("#3 shared state", r"TestValue|TestArray|TestHeap|TestSharedCTypes|TestSharedMemory"),
    ("#4 pool/dummy", r"TestPool|PoolNotLeak|TestInitializers\.test_pool"),
    ("#5 managers/listeners",
     r"Manager|TestListener|TestPicklingConnections|TestSyncManagerTypes|TestContainers"
     r"|TestInitializers"),
    ("#2 foundation",
     r"TestProcess|SubclassingProcess|TestQueue|TestLock|TestSemaphore|TestCondition"
     r"|TestEvent|TestBarrier|TestConnection|TestPoll|TestFinalize|TestLogging|SimpleQueue"
     r"|TestStartMethod|TestWait|InvalidHandle|ForkAwareThreadLock|TestCloseFds|IgnoreEINTR"
     r"|TestTimeouts|NoForkBomb|StdinBadfiledescriptor|InvalidFamily|SemLockTests"
     r"|ResourceTracker|OtherTest|TestFlags"),
]


# what a failure's text says it waited for (placeholder modules, skip reasons)
_ISSUE_BY_DETAIL = [
    ("#3 shared state", r"sharedctypes|\.heap\b|shared_memory|SharedMemory"),
    ("#5 managers/listeners", r"\.managers\b"),
    ("#4 pool/dummy", r"\.pool\b|\.dummy\b"),
]


def issue_for(tid, detail=""):
    cls = test_class(tid)
    if cls.startswith("WithThreads"):
        return "#4 pool/dummy"
    if cls.startswith("WithManager"):
        return "#5 managers/listeners"
    for label, pattern in _ISSUE_BY_CLASS[:3]:
        if re.search(pattern, tid):
            return label
    for label, pattern in _ISSUE_BY_DETAIL:
        if re.search(pattern, detail or ""):
            return label
    for label, pattern in _ISSUE_BY_CLASS[3:]:
        if re.search(pattern, tid):
            return label
    return "#6 the rest"


def write_known_gaps(data, baseline, path=KNOWN_GAPS):
    old = load_known_gaps(path)
    # a run of some start methods leaves the other methods' lines alone
    lines = [f"{m}/{t}  {c}" for (m, t), c in old.items() if m not in data["methods"]]
    for method, tid, outcome, detail in regressions(data, baseline):
        label = old.get((method, tid), "").split("[")[0].strip() or issue_for(tid, detail)
        tag = f"  [{outcome}]" if outcome in ("hang", "crash") else ""
        lines.append(f"{method}/{tid}  {label}{tag}")
    with open(path, "w") as f:
        f.write(f"# Python {PY_VERSION}: tests of CPython's multiprocessing suite that pass\n"
                "# with the standard library on this machine but not yet with multiprocess,\n"
                "# each with the reason or open issue it waits for.  This list only\n"
                "# shrinks.  Regenerate (with this Python) with\n"
                "#   python tests/conformance/run.py --update-known-gaps\n"
                "# [hang] entries are not run by tests/test_conformance.py (they would\n"
                "# only burn the time budget); run.py without --skip-known-hangs runs them.\n")
        for line in lines:
            f.write(line + "\n")
    return lines


def known_hangs(gaps):
    out = collections.defaultdict(set)
    for (method, tid), comment in gaps.items():
        if "[hang]" in comment:
            out[method].add(tid)
    return out


def rerun_regressions(ns, data):
    """Run each regression once more, alone in its unit; one that passes
    then is recorded as a pass marked flaky (the suite is timing-sensitive,
    more so on 2 busy cores)."""
    regs = regressions(data, load_baseline(), load_known_gaps())
    by_method = collections.defaultdict(list)
    for method, tid, outcome, _ in regs:
        if outcome != "missing":
            by_method[method].append(tid)
    for method, tids in by_method.items():
        if len(tids) > 40:
            print(f"{method}: {len(tids)} regressions, too many to rerun")
            continue
        print(f"rerunning {len(tids)} regressions ({method})", flush=True)
        sub = argparse.Namespace(**vars(ns))
        sub.method = [method]
        sub.group = sorted({group_of(t) for t in tids})
        sub.k = ["*." + t for t in tids]
        sub.deadline = max(60.0, min(300.0, ns.deadline / 4))
        again = run_all(sub)["methods"][method]
        for tid in tids:
            r = again.get(tid)
            if r and r["outcome"] in PASSING:
                first = data["methods"][method][tid]["outcome"]
                data["methods"][method][tid] = dict(r, flaky=first)
                print(f"FLAKY {method}/{tid}: {first}, then passed on rerun")


# ----------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=METHODS, action="append")
    ap.add_argument("--group", choices=list(GROUPS), action="append")
    ap.add_argument("--target", default="multiprocess")
    ap.add_argument("-k", action="append", default=[], help="unittest -k pattern")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="units run in parallel")
    ap.add_argument("--per-test-timeout", type=float, default=120.0,
                    help="watchdog per test (and per fixture) in seconds")
    ap.add_argument("--deadline", type=float, default=1800.0,
                    help="overall seconds; unfinished tests are reported notrun")
    ap.add_argument("--timeout", dest="deadline", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--json", help="write per-test outcomes to this file")
    ap.add_argument("--no-per-class", action="store_true")
    ap.add_argument("--no-stubs", action="store_true",
                    help="do not replace missing submodules the suite imports "
                         "(connection, dummy, heap, managers, pool, queues) by placeholders")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 on tests passing with the stdlib baseline but not here "
                         "(and not listed in known_gaps-X.Y.txt of the running Python)")
    ap.add_argument("--skip-known-hangs", action="store_true",
                    help="do not run known gaps marked [hang]")
    ap.add_argument("--update-known-gaps", action="store_true",
                    help="rewrite the running Python's known_gaps-X.Y.txt from this run "
                         "(full run recommended)")
    ap.add_argument("--update-baseline", action="store_true",
                    help="write the running Python's stdlib_baseline-X.Y.json "
                         "(needs --target multiprocessing)")
    ap.add_argument("--rerun-failures", action="store_true",
                    help="rerun each regression once; count it only if it fails again")
    ap.add_argument("--from-json", metavar="FILE",
                    help="report on (and --check / --update-known-gaps from) the "
                         "outcomes of an earlier run saved with --json, without running")
    ap.add_argument("-v", action="store_true", help="print failure details")
    ns = ap.parse_args(argv)
    if ns.update_baseline and ns.target != "multiprocessing":
        ap.error("--update-baseline needs --target multiprocessing")
    if ns.update_baseline and (ns.k or ns.group):
        ap.error("--update-baseline needs whole start methods (no -k, no --group)")

    gaps = load_known_gaps()
    ns.skip_ids = known_hangs(gaps) if ns.skip_known_hangs else {}
    if ns.from_json:
        with open(ns.from_json) as f:
            data = json.load(f)
    else:
        data = run_all(ns)
        if ns.rerun_failures:
            rerun_regressions(ns, data)
    print_report(data, per_class=not ns.no_per_class)
    if ns.v:
        for method, results in data["methods"].items():
            for tid, r in sorted(results.items()):
                if r["outcome"] not in PASSING + ("skip",):
                    print(f"\n--- {method}/{tid}: {r['outcome']}\n{r.get('detail', '')}")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
    if ns.update_baseline:
        methods = {m: {t: r["outcome"] for t, r in sorted(res.items())}
                   for m, res in data["methods"].items()}
        if os.path.exists(BASELINE):
            # a run of some methods replaces only theirs
            with open(BASELINE) as f:
                methods = dict(json.load(f)["methods"], **methods)
        slim = {"target": data["target"], "python": data["python"], "methods": methods}
        with open(BASELINE, "w") as f:
            json.dump(slim, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote {BASELINE}")
        return 0
    rc = 0
    if ns.update_known_gaps or ns.check:
        baseline = load_baseline()
        if ns.update_known_gaps:
            lines = write_known_gaps(data, baseline)
            print(f"wrote {KNOWN_GAPS}: {len(lines)} known gaps")
            gaps = load_known_gaps()
        regs = regressions(data, baseline, gaps)
        for method, tid, outcome, detail in regs:
            print(f"REGRESSION {method}/{tid}: {outcome}")
            if ns.v:
                print(detail[-3000:])
        fixed = fixed_gaps(data, gaps)
        if fixed:
            print(f"{len(fixed)} known gaps pass now; "
                  f"remove them from {os.path.basename(KNOWN_GAPS)}:")
            for tid in fixed:
                print(f"  FIXED {tid}")
        print(f"conformance: {len(regs)} regressions vs the stdlib baseline, "
              f"{len(gaps)} known gaps, {len(fixed)} fixed gaps")
        rc = 1 if regs else 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
