"""tools/leakcheck.py, the native core's leak audit, still runs and finds
nothing on the paths it covers (a short run: the full audit takes minutes,
see docs/architecture.md, "Checking the native core with sanitizers").
The pool's cases are left to the full run: at a few hundred round trips
the engine's settling state is larger than the verdict's slack."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "leakcheck.py")

pytestmark = pytest.mark.skipif(
    not os.path.isfile(SCRIPT),
    reason="no tools/ next to the tests (installed copy)")


def _cases():
    out = subprocess.run([sys.executable, SCRIPT, "--list"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split()[0] for line in out.stdout.splitlines()]


@pytest.mark.timeout(240)
def test_native_entry_points_keep_no_memory_when_repeated():
    cases = [c for c in _cases() if not c.startswith("pool_")]
    assert "semlock_timeouts_and_errors" in cases
    out = subprocess.run([sys.executable, SCRIPT, "--scale", "0.02",
                          "--timeout", "100"] + cases,
                         capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" ok") == len(cases), out.stdout
