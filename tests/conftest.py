"""Shared test plumbing.

Fixtures: ``start_method`` (each of START_METHODS in turn), ``ctx`` (a
context of that method), ``pool`` (a two-worker Pool of that context,
terminated afterwards) and ``run_script`` (run Python code in a fresh
interpreter that imports the multiprocess under test, whether installed or
a built checkout).  The conformance tests' counts are printed in the
terminal summary, so they show up in every pytest run (CI included).
"""
import os
import subprocess
import sys
import textwrap

import pytest

# Every start method this package offers (Linux), in the order the tests
# name them.
START_METHODS = ('fork', 'spawn', 'forkserver')

_CONFORMANCE = []


def _native_core_error():
    try:
        import _multiprocess        # noqa: F401
    except ImportError as exc:
        return exc
    return None


def pytest_collection_modifyitems(config, items):
    # From a checkout whose C core was never built nothing can run: say so
    # once per test instead of failing at every import.
    error = _native_core_error()
    if error is None:
        return
    skip = pytest.mark.skip(reason=(
        'the native core _multiprocess is not built (%s): pip install . or '
        'python setup.py build_ext --inplace' % error))
    for item in items:
        item.add_marker(skip)


def subprocess_env(extra=None):
    """The environment for a child interpreter: it imports the same
    multiprocess as this one (an install, or the checkout under test)."""
    import multiprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(
        multiprocess.__file__)))
    env = dict(os.environ)
    paths = [root] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                      if p]
    env['PYTHONPATH'] = os.pathsep.join(paths)
    if extra:
        env.update(extra)
    return env


@pytest.fixture(params=START_METHODS)
def start_method(request):
    return request.param


@pytest.fixture
def ctx(start_method):
    import multiprocess
    return multiprocess.get_context(start_method)


@pytest.fixture
def pool(ctx):
    p = ctx.Pool(2)
    try:
        yield p
    finally:
        p.terminate()
        p.join()


@pytest.fixture
def run_script(tmp_path):
    """run_script(code, *args, timeout=60, input=None, cwd=None,
    as_file=False, env=None, **popen_kwds) -> subprocess.CompletedProcess
    (text output).

    ``code`` is dedented and run with ``python -c``, or written to
    tmp_path/script.py and run as a script when ``as_file`` is true (or a
    path to write it to)."""
    def run(code, *args, timeout=60, input=None, cwd=None, as_file=False,
            env=None, **popen_kwds):
        code = textwrap.dedent(code)
        if as_file:
            path = tmp_path / 'script.py' if as_file is True else as_file
            path.write_text(code)
            cmd = [sys.executable, str(path), *args]
        else:
            cmd = [sys.executable, '-c', code, *args]
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, input=input, cwd=cwd,
                              env=subprocess_env(env), **popen_kwds)
    return run


@pytest.fixture(scope="session")
def conformance_summary():
    return _CONFORMANCE


def pytest_terminal_summary(terminalreporter):
    if _CONFORMANCE:
        terminalreporter.section("CPython multiprocessing suite (tests/conformance)")
        for line in _CONFORMANCE:
            terminalreporter.write_line(line)
