"""``python -m multiprocess.tests``: run the test suite of this installation.

Extra arguments go to pytest unchanged, e.g. ``-k pool -x``.

What differs from ``python -m pytest tests`` in a checkout:

* tests that inspect files only a checkout has (examples/, the C sources,
  docs/, pyproject.toml) are left out when those files are absent;
* the CPython-suite conformance gate (tests/test_conformance.py, several
  minutes per start method) runs only when MP_CONFORMANCE is set to
  something other than 0, e.g. ``MP_CONFORMANCE=1 python -m multiprocess.tests``;
* every test gets a 300 s watchdog unless a ``--timeout`` is given, since
  pyproject.toml's pytest settings are not installed.

Needs pytest and pytest-timeout: ``pip install "multiprocess[test]"``.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_TREE = os.path.dirname(HERE)


def _missing_test_tools():
    return [name for name in ("pytest", "pytest_timeout")
            if importlib.util.find_spec(name) is None]


# Tests whose subject is the checkout rather than the installed package:
# (test file, test name or None for the whole file, path it reads).
CHECKOUT_ONLY = [
    ("test_examples.py", None, "examples"),
    ("test_docs.py", None, "docs"),
    ("test_packaging.py", None, "pyproject.toml"),
    ("test_c_source_lint.py", "test_c_sources_exist", "_multiprocess"),
    ("test_pool.py", "test_poolengine_c_never_returns_with_the_gil_released",
     "_multiprocess"),
]


def _absent(relpath):
    return not os.path.exists(os.path.join(SOURCE_TREE, relpath))


class _LeaveOutCheckoutTests:
    """pytest plugin: deselects single tests that read checkout files."""

    def __init__(self, names):
        self.names = names      # {(file basename, test function name)}

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            key = (os.path.basename(str(item.path)), item.originalname)
            (drop if key in self.names else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


def pytest_arguments(argv):
    """The pytest command line for this directory, user arguments last."""
    args = [HERE, "-p", "no:cacheprovider", "-o", "timeout=300"]
    for test_file, name, needed in CHECKOUT_ONLY:
        if name is None and _absent(needed):
            args += ["--ignore", os.path.join(HERE, test_file)]
    return args + list(argv)


def checkout_only_tests():
    return {(test_file, name) for test_file, name, needed in CHECKOUT_ONLY
            if name is not None and _absent(needed)}


def main(argv=None):
    missing = _missing_test_tools()
    if missing:
        print("multiprocess.tests needs %s: pip install \"multiprocess[test]\""
              % " and ".join(missing), file=sys.stderr)
        return 2
    os.environ.setdefault("MP_CONFORMANCE", "0")
    import pytest
    return pytest.main(pytest_arguments(sys.argv[1:] if argv is None else argv),
                       plugins=[_LeaveOutCheckoutTests(checkout_only_tests())])


if __name__ == "__main__":
    sys.exit(main())
