"""CPython's multiprocessing test suite, run against multiprocess for each
start method (tests/conformance/run.py does the running): every test that
passes with the standard library on this machine (stdlib_baseline.json) must
pass with us too, unless tests/conformance/known_gaps.txt lists it with the
open issue it waits for.  Known gaps marked [hang] are not run here; a
regression is rerun once and counts only if it fails again.

Environment knobs: MP_CONFORMANCE=0 skips these tests;
MP_CONFORMANCE_DEADLINE (seconds per start method, default 420) and
MP_CONFORMANCE_TEST_TIMEOUT (watchdog per test, default 90).
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "conformance", "run.py")
DEADLINE = float(os.environ.get("MP_CONFORMANCE_DEADLINE", "420"))
PER_TEST = float(os.environ.get("MP_CONFORMANCE_TEST_TIMEOUT", "90"))

pytestmark = pytest.mark.skipif(os.environ.get("MP_CONFORMANCE") == "0",
                                reason="MP_CONFORMANCE=0")


def _runner_module():
    spec = importlib.util.spec_from_file_location("_mpconf_run", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(DEADLINE + 180)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_stdlib_suite_passes_where_the_stdlib_does(method, tmp_path, conformance_summary):
    run = _runner_module()
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
    regs = run.regressions(data, run.load_baseline(), gaps)
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
                      f"({method}); not in known_gaps.txt:\n{detail}\n"
                      f"runner output tail:\n{proc.stdout[-2000:]}")
