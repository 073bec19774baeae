"""Every script in examples/ runs to completion as a program of its own."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))


def test_there_are_examples():
    assert SCRIPTS, "examples/ has no scripts"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_example_runs(script):
    r = subprocess.run([sys.executable, script], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.stdout.strip(), "the example printed nothing"
