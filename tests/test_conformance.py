"""CPython's multiprocessing test suite of the running Python, run against
multiprocess for each start method (tests/conformance/run.py does the
running): every test that passes with that Python's standard library on this
machine (tests/conformance/stdlib_baseline-X.Y.json) must pass with us too,
unless tests/conformance/known_gaps-X.Y.txt lists it with its reason.  Known
gaps marked [hang] are not run here; a regression is rerun once and counts
only if it fails again.  A Python without a baseline file skips these tests.

Environment knobs: MP_CONFORMANCE=0 skips these tests;
MP_CONFORMANCE_METHODS (comma-separated start methods to run, default
fork,spawn,forkserver); MP_CONFORMANCE_DEADLINE (seconds per start method,
default 420) and MP_CONFORMANCE_TEST_TIMEOUT (watchdog per test, default 90).
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from .conftest import START_METHODS

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "conformance", "run.py")
DEADLINE = float(os.environ.get("MP_CONFORMANCE_DEADLINE", "420"))
PER_TEST = float(os.environ.get("MP_CONFORMANCE_TEST_TIMEOUT", "90"))

ALL_METHODS = START_METHODS
METHODS = [m.strip() for m in
           os.environ.get("MP_CONFORMANCE_METHODS", ",".join(ALL_METHODS)).split(",")
           if m.strip()]
PY_VERSION = "%d.%d" % sys.version_info[:2]
BASELINE = os.path.join(HERE, "conformance", f"stdlib_baseline-{PY_VERSION}.json")

pytestmark = [
    pytest.mark.skipif(os.environ.get("MP_CONFORMANCE") == "0", reason="MP_CONFORMANCE=0"),
    pytest.mark.skipif(
        not os.path.exists(BASELINE),
        reason=f"no stdlib baseline for Python {PY_VERSION} "
               f"(tests/conformance/{os.path.basename(BASELINE)}); make it with "
               "`python tests/conformance/run.py --update-baseline --target multiprocessing`"),
]


def test_conformance_methods_setting_names_start_methods():
    unknown = sorted(set(METHODS) - set(ALL_METHODS))
    assert not unknown, (f"MP_CONFORMANCE_METHODS names unknown start methods {unknown}; "
                         f"choose from {', '.join(ALL_METHODS)}")


def _runner_module():
    spec = importlib.util.spec_from_file_location("_mpconf_run", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(DEADLINE + 180)
@pytest.mark.parametrize("method", ALL_METHODS)
def test_stdlib_suite_passes_where_the_stdlib_does(method, tmp_path, conformance_summary):
    if method not in METHODS:
        pytest.skip(f"MP_CONFORMANCE_METHODS={','.join(METHODS)} leaves out {method}")
    run = _runner_module()
    baseline = run.load_baseline()
    if method not in baseline:
        pytest.skip(f"{os.path.basename(BASELINE)} has no {method} outcomes; make them with "
                    f"`python tests/conformance/run.py --update-baseline --target "
                    f"multiprocessing --method {method}`")
    out = tmp_path / "result.json"
    cmd = [sys.executable, RUNNER, "--method", method, "--json", str(out),
           "--skip-known-hangs", "--rerun-failures", "--no-per-class", "--jobs", "2",
           "--per-test-timeout", str(PER_TEST), "--deadline", str(DEADLINE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE + 150,
                          stdin=subprocess.DEVNULL)
    assert out.exists(), f"the runner wrote no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    counts = run.count(data["methods"][method].values())
    gaps = run.load_known_gaps()
    regs = run.regressions(data, baseline, gaps)
    fixed = run.fixed_gaps(data, gaps)
    flaky = sorted(f"{t} ({r['flaky']})"
                   for t, r in data["methods"][method].items() if r.get("flaky"))
    line = (f"{method:10} {run.fmt_counts(counts)}; {len(regs)} regressions, "
            f"{sum(1 for m, _ in gaps if m == method)} known gaps, "
            f"{sum(1 for f in fixed if f.startswith(method + '/'))} fixed gaps, "
            f"{len(flaky)} passed on rerun "
            f"[{data['wall']:.0f}s]")
    conformance_summary.append(line)
    # which ones: a test that keeps needing a second run is worth a look
    conformance_summary.extend(f"  {method} passed on rerun: {t}" for t in flaky)
    print(line)
    detail = "\n".join(f"  {m}/{t}: {o}\n    " + d.strip().replace("\n", "\n    ")[-1500:]
                       for m, t, o, d in regs[:15])
    assert not regs, (f"{len(regs)} tests pass with the stdlib but not with multiprocess "
                      f"({method}); not in known_gaps-{PY_VERSION}.txt:\n{detail}\n"
                      f"runner output tail:\n{proc.stdout[-2000:]}")
