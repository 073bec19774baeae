"""Shared test plumbing.

Fixtures: ``start_method`` (each of START_METHODS in turn), ``ctx`` (a
context of that method), ``pool`` (a two-worker Pool of that context,
terminated afterwards) and ``run_script`` (run Python code in a fresh
interpreter that imports the multiprocess under test, whether installed or
a built checkout).  The conformance tests' counts are printed in the
terminal summary, so they show up in every pytest run (CI included).
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

# Several tests send SIGINT (to this process or to children) and expect
# KeyboardInterrupt.  A shell that starts pytest as a background job without
# job control hands it SIGINT ignored, which Python keeps; put Python's own
# handler back (children then start with the default disposition).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Every start method this package offers (Linux), in the order the tests
# name them.
START_METHODS = ('fork', 'spawn', 'forkserver')

_CONFORMANCE = []


def _native_core_error():
    try:
        import _multiprocess
    except ImportError as exc:
        return exc
    if getattr(_multiprocess, '__file__', None) is None:
        # the checkout's C sources directory, imported as a namespace
        return ImportError('only the C sources directory _multiprocess/ '
                           'was found')
    return None


_MISSING_CORE = _native_core_error()
if _MISSING_CORE is not None:
    # From a checkout whose C core was never built nothing can run (every
    # test module imports the package): collect nothing, and say why.
    collect_ignore_glob = ['test_*.py']


def pytest_report_header(config):
    if _MISSING_CORE is not None:
        return ('every test skipped: the native core _multiprocess is not '
                'built (%s); pip install ".[test]", or python setup.py '
                'build_ext --inplace to test the checkout' % _MISSING_CORE)
    return None


def _checkout_root():
    """The directory holding the multiprocess under test when that is a
    checkout (not an installed copy), else None."""
    import multiprocess
    package = os.path.dirname(os.path.abspath(multiprocess.__file__))
    root = os.path.dirname(package)
    if os.path.basename(root) in ('site-packages', 'dist-packages'):
        return None
    return root


def _with_checkout_on_path(env):
    root = _checkout_root()
    if root is not None:
        paths = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
        if root not in paths:
            env['PYTHONPATH'] = os.pathsep.join([root] + paths)
    return env


_ORIGINAL_PYTHONPATH = os.environ.get('PYTHONPATH')
if _MISSING_CORE is None:
    # Every child interpreter a test starts (scripts, peers, servers)
    # imports the multiprocess under test, also from a plain checkout.
    _with_checkout_on_path(os.environ)


def installed_env(extra=None):
    """The environment without the checkout added to PYTHONPATH: for a
    child that must find the installed copy."""
    env = dict(os.environ)
    if _ORIGINAL_PYTHONPATH is None:
        env.pop('PYTHONPATH', None)
    else:
        env['PYTHONPATH'] = _ORIGINAL_PYTHONPATH
    if extra:
        env.update(extra)
    return env


def subprocess_env(extra=None):
    """The environment for a child interpreter: it imports the same
    multiprocess as this one (an install, or the checkout under test)."""
    env = _with_checkout_on_path(dict(os.environ))
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
def pipe_fds():
    """(read fd, write fd) of a fresh pipe, closed after the test unless
    the test closed them itself."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def spin():
    """spin(seconds) sets the receive spin (_multiprocess.set_recv_spin)
    for one test and returns the previous setting; the package's own
    setting is back afterwards."""
    import _multiprocess
    saved = []

    def set_to(seconds):
        previous = _multiprocess.set_recv_spin(seconds)
        if not saved:
            saved.append(previous)
        return previous
    yield set_to
    if saved:
        _multiprocess.set_recv_spin(saved[0])


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
