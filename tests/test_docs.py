"""The documentation builds without a single warning.

Runs ``sphinx-build -W`` (warnings are errors) over docs/ into a temporary
directory: a docstring that is not valid reStructuredText, a page left out
of every table of contents or a broken cross-reference fails here.  Skipped
when Sphinx or myst-parser is missing (``pip install -e ".[docs]"``) or when
this is an installed copy of the tests without the docs/ directory.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

pytestmark = [
    pytest.mark.skipif(not os.path.isfile(os.path.join(DOCS, "conf.py")),
                       reason="no docs/ next to the tests (installed copy)"),
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                           for m in ("sphinx", "myst_parser")),
                       reason='Sphinx and myst-parser not installed (pip install -e ".[docs]")'),
]


@pytest.mark.timeout(400)
def test_sphinx_build_has_no_warnings(tmp_path):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), DOCS, str(tmp_path / "html")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=360,
                       cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"sphinx-build failed:\n{r.stderr[-6000:]}\n{r.stdout[-2000:]}"
    assert (tmp_path / "html" / "index.html").is_file()


def test_every_example_is_shown_in_the_docs():
    with open(os.path.join(DOCS, "examples.rst"), encoding="utf-8") as f:
        page = f.read()
    scripts = sorted(n for n in os.listdir(os.path.join(ROOT, "examples"))
                     if n.endswith(".py"))
    missing = [n for n in scripts if "../examples/%s" % n not in page]
    assert not missing, "add these to docs/examples.rst: %s" % ", ".join(missing)


def test_every_public_module_has_an_api_page():
    pkg = os.path.join(ROOT, "multiprocess")
    modules = {"multiprocess.%s" % n[:-3] for n in os.listdir(pkg)
               if n.endswith(".py") and not n.startswith("_")
               and not n.startswith("popen_")}
    modules |= {"multiprocess.%s" % n for n in os.listdir(pkg)
                if os.path.exists(os.path.join(pkg, n, "__init__.py"))}
    # internal plumbing kept for the standard library's import paths
    modules -= {"multiprocess.spawn", "multiprocess.forkserver",
                "multiprocess.resource_tracker", "multiprocess.resource_sharer"}
    pages = {n[:-4] for n in os.listdir(os.path.join(DOCS, "api"))}
    assert not sorted(modules - pages)
