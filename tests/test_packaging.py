"""What gets packaged: the sdist can rebuild everything, the wheel carries
the test suite as ``multiprocess.tests``.

The sdist is built from the files git tracks (what a clean clone has),
copied to a temporary directory so the working tree is not touched, with
``python -m build --no-isolation`` (no download).  Skipped without the
``build`` package, git or setuptools, and in an installed copy of the tests.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from .conftest import installed_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(ROOT, "pyproject.toml")),
    reason="no pyproject.toml next to the tests (installed copy)")


def _tracked_files():
    if shutil.which("git") is None:
        pytest.skip("git is not available")
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    return [p for p in r.stdout.decode().split("\0") if p]


def _has_build_package():
    """Whether `python -m build` is the PyPA tool.  `pip install .` leaves
    setuptools' build/ folder in the checkout, and from there (the current
    directory is on sys.path) find_spec("build") finds that folder as a
    namespace package, which has no origin."""
    spec = importlib.util.find_spec("build")
    return spec is not None and spec.origin is not None


@pytest.fixture(scope="module")
def sdist_names(tmp_path_factory):
    if not _has_build_package():
        pytest.skip("the 'build' package is not installed (pip install build)")
    for name in ("setuptools", "wheel"):       # pyproject's build requirements
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (the sdist is built without isolation)")
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked_files():
        if os.path.isfile(os.path.join(ROOT, rel)):
            os.makedirs(os.path.join(src, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), os.path.join(src, rel))
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                        "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL, cwd=str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        # drop the leading "multiprocess-<version>/"
        return {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}


@pytest.mark.timeout(300)
def test_sdist_has_the_c_sources_and_header(sdist_names):
    tracked = _tracked_files()
    native = [p for p in tracked if p.startswith("_multiprocess/")
              and p.endswith((".c", ".h"))]
    assert any(p.endswith(".h") for p in native)
    assert not sorted(set(native) - sdist_names)


@pytest.mark.timeout(300)
def test_sdist_has_package_tests_docs_and_examples(sdist_names):
    tracked = _tracked_files()
    wanted = [p for p in tracked
              if p.startswith(("multiprocess/", "tests/", "examples/"))
              and p.endswith((".py", ".json", ".txt"))]
    wanted += [p for p in tracked if p.startswith("docs/")
               and p.endswith((".md", ".rst", ".py"))]
    wanted += ["pyproject.toml", "setup.py", "README.md", "LICENSE"]
    assert not sorted(set(wanted) - sdist_names)
    assert not [n for n in sdist_names if n.endswith((".so", ".o", ".pyc"))]


def test_tests_are_mapped_to_multiprocess_tests():
    # pyproject.toml installs this directory as the package multiprocess.tests
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        # the test extra installs tomli on 3.10 (tomllib arrived in 3.11)
        tomllib = pytest.importorskip("tomli", reason="tomli is not installed")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)["tool"]["setuptools"]
    assert cfg["package-dir"]["multiprocess.tests"] == "tests"
    assert {"multiprocess", "multiprocess.dummy", "multiprocess.tests"} <= set(cfg["packages"])
    data = cfg.get("package-data", {}).get("multiprocess.tests", [])
    for name in os.listdir(os.path.join(HERE, "conformance")):
        if name.endswith((".py", ".json", ".txt")):
            assert any(pat.endswith(os.path.splitext(name)[1]) for pat in data), name


def test_main_module_leaves_out_only_what_is_absent():
    spec = importlib.util.spec_from_file_location(
        "_mp_tests_main", os.path.join(HERE, "__main__.py"))
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    # in a checkout nothing is left out, and user arguments come last
    args = main.pytest_arguments(["-k", "pool"])
    assert "--ignore" not in args and args[-2:] == ["-k", "pool"]
    assert main.checkout_only_tests() == set()


@pytest.mark.timeout(120)
def test_python_m_multiprocess_tests_collects(tmp_path):
    # Ask a fresh interpreter outside the checkout: run from the repository
    # root, `multiprocess` is the source tree, which has no tests package.
    probe = subprocess.run(
        [sys.executable, "-c", "import multiprocess.tests as t; print(t.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        stdin=subprocess.DEVNULL, env=installed_env())
    if probe.returncode != 0:
        pytest.skip("multiprocess.tests not installed: pip install . (or -e .)")
    installed = probe.stdout.strip().splitlines()[-1]
    assert os.path.isfile(os.path.join(os.path.dirname(installed), "__main__.py"))
    r = subprocess.run([sys.executable, "-m", "multiprocess.tests", "--collect-only", "-q"],
                       capture_output=True, text=True, timeout=100, cwd=tmp_path,
                       stdin=subprocess.DEVNULL,
                       env=installed_env({"MP_CONFORMANCE": "0"}))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "test_dummy.py::" in r.stdout
