"""The resource tracker unlinks named semaphores and shared memory that a
program leaks, warns about them, survives ^C/SIGTERM, and is relaunched
(with a warning) when it dies."""

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings

import pytest

from multiprocess import resource_tracker
from .conftest import START_METHODS

pytestmark = pytest.mark.skipif(not os.path.isdir('/dev/shm'),
                                reason='needs /dev/shm (Linux)')

_libc = ctypes.CDLL(None, use_errno=True)
_libc.sem_open.restype = ctypes.c_void_p
_libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                           ctypes.c_uint]
_libc.sem_close.argtypes = [ctypes.c_void_p]


def _unique(prefix):
    return '/%s-%s' % (prefix, uuid.uuid4().hex[:12])


def _make_semaphore(name):
    """Create a named POSIX semaphore with libc; independent of SemLock."""
    handle = _libc.sem_open(name.encode(), os.O_CREAT | os.O_EXCL, 0o600, 1)
    if not handle:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    _libc.sem_close(handle)
    return '/dev/shm/sem.' + name.lstrip('/')


def _make_shared_memory(name):
    path = '/dev/shm/' + name.lstrip('/')
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    return path


def _wait_gone(path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _run_program(body, timeout=60):
    """Run ``body`` in a fresh interpreter; return (returncode, stdout, stderr)."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------
# cleanup functions

def test_cleanup_funcs_cover_noop_semaphore_and_shared_memory():
    assert {'noop', 'semaphore', 'shared_memory'} <= set(
        resource_tracker._CLEANUP_FUNCS)


@pytest.mark.parametrize('rtype, make', [('semaphore', _make_semaphore),
                                         ('shared_memory', _make_shared_memory)])
def test_cleanup_func_unlinks_and_then_reports_enoent(rtype, make):
    name = _unique('rt-unit')
    path = make(name)
    resource_tracker._CLEANUP_FUNCS[rtype](name)
    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError):
        resource_tracker._CLEANUP_FUNCS[rtype](name)


# ---------------------------------------------------------------------------
# the protocol's limits

def test_too_long_name_is_refused_before_writing():
    with pytest.raises(ValueError):
        resource_tracker.register('a' * 512, 'shared_memory')


def test_register_then_unregister_leaves_the_resource_alone():
    name = _unique('rt-kept')
    path = _make_semaphore(name)
    try:
        rc, out, err = _run_program('''
            from multiprocess import resource_tracker
            resource_tracker.register(%r, 'semaphore')
            resource_tracker.unregister(%r, 'semaphore')
        ''' % (name, name))
        assert rc == 0, err
        assert 'leaked' not in err
        # the tracker exits once the program is gone; give it the time
        time.sleep(0.5)
        assert os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


# ---------------------------------------------------------------------------
# leaks are cleaned when the program dies

@pytest.mark.timeout(60)
@pytest.mark.parametrize('rtype, make', [('semaphore', _make_semaphore),
                                         ('shared_memory', _make_shared_memory)])
def test_sigkilled_programs_leaked_resource_is_unlinked_with_a_warning(
        rtype, make):
    first, second = _unique('rt-leak1'), _unique('rt-leak2')
    paths = [make(first), make(second)]
    try:
        program = textwrap.dedent('''
            import sys, time
            from multiprocess import resource_tracker
            resource_tracker.register(%r, %r)
            resource_tracker.register(%r, %r)
            print('ready', flush=True)
            time.sleep(60)
        ''' % (first, rtype, second, rtype))
        proc = subprocess.Popen([sys.executable, '-c', program],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == 'ready'
            # one of the two is released behind the tracker's back: its
            # cleanup must fail and say so, without stopping the other one
            os.unlink(paths[0])
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert _wait_gone(paths[1]), 'the tracker did not unlink it'
            err = proc.stderr.read()   # EOF once the tracker has exited
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert ('resource_tracker: There appear to be 2 leaked %s objects '
                'to clean up at shutdown' % rtype) in err
        assert 'resource_tracker: %r: [Errno' % first in err
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)


@pytest.mark.timeout(60)
def test_sigkilled_programs_lock_is_unlinked():
    _multiprocess = pytest.importorskip('_multiprocess')
    if not hasattr(_multiprocess, 'SemLock'):
        pytest.skip('SemLock not built yet')
    program = textwrap.dedent('''
        import time
        import multiprocess as mp
        lock = mp.get_context('spawn').Lock()
        print(lock._semlock.name, flush=True)
        time.sleep(60)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', program],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name
        path = '/dev/shm/sem.' + name.lstrip('/')
        proc.kill()
        proc.wait(timeout=30)
        assert _wait_gone(path)
        assert 'leaked semaphore objects' in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.timeout(60)
def test_bad_message_is_reported_and_tracking_goes_on():
    name = _unique('rt-after-bad')
    path = _make_semaphore(name)
    try:
        rc, out, err = _run_program('''
            import os
            from multiprocess import resource_tracker
            resource_tracker.register('/x', 'no_such_type')
            fd = resource_tracker.getfd()
            os.write(fd, b'BOGUS:/y:noop\\n')
            resource_tracker.register(%r, 'semaphore')
            os.kill(os.getpid(), 9)
        ''' % name)
        assert rc == -signal.SIGKILL
        assert _wait_gone(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


# ---------------------------------------------------------------------------
# the tracker's own life

def _tracker_pid_of(program_tail):
    return _run_program('''
        from multiprocess.resource_tracker import _resource_tracker
        _resource_tracker.ensure_running()
        ''' + program_tail)


@pytest.mark.timeout(60)
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_tracker_ignores_sigint_and_sigterm(signum):
    rc, out, err = _run_program('''
        import os, signal, time, warnings
        from multiprocess.resource_tracker import _resource_tracker
        _resource_tracker.ensure_running()
        pid = _resource_tracker._pid
        os.kill(pid, %d)
        time.sleep(0.5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            _resource_tracker.ensure_running()
        assert _resource_tracker._pid == pid, 'relaunched'
        assert not caught, caught
        print('ok')
    ''' % signum)
    assert rc == 0, err
    assert out.strip() == 'ok'


@pytest.mark.timeout(60)
def test_dead_tracker_is_relaunched_with_a_warning():
    rc, out, err = _run_program('''
        import os, signal, warnings
        from multiprocess.resource_tracker import _resource_tracker
        _resource_tracker.ensure_running()
        old = _resource_tracker._pid
        os.kill(old, signal.SIGKILL)
        os.waitpid(old, 0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            _resource_tracker.ensure_running()
        assert _resource_tracker._pid not in (None, old)
        assert len(caught) == 1, caught
        assert issubclass(caught[0].category, UserWarning)
        assert 'resource_tracker: process died' in str(caught[0].message)
        assert _resource_tracker._check_alive()
        print('ok')
    ''')
    assert rc == 0, err
    assert out.strip() == 'ok'


@pytest.mark.timeout(60)
def test_stop_reaps_the_tracker_and_a_later_use_starts_a_new_one():
    rc, out, err = _run_program('''
        import os
        from multiprocess.resource_tracker import _resource_tracker
        _resource_tracker.ensure_running()
        old = _resource_tracker._pid
        _resource_tracker._stop()
        assert _resource_tracker._fd is None and _resource_tracker._pid is None
        try:
            os.kill(old, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError('tracker still running')
        fd = _resource_tracker.getfd()
        assert fd is not None and _resource_tracker._pid not in (None, old)
        print('ok')
    ''')
    assert rc == 0, err
    assert out.strip() == 'ok'


def test_reentrant_call_raises_instead_of_corrupting_state():
    tracker = resource_tracker.ResourceTracker()
    tracker._enter()
    try:
        with pytest.raises(resource_tracker.ReentrantCallError):
            tracker.ensure_running()
    finally:
        tracker._leave()
    assert tracker._depth == 0
    assert tracker._fd is None      # nothing was launched


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', START_METHODS)
def test_children_reuse_the_parents_tracker(method):
    rc, out, err = _run_program('''
        import os, sys
        import multiprocess as mp
        from multiprocess.resource_tracker import _resource_tracker

        def probe(pid):
            # imports inside: a function of `python -c` travels by value
            import sys
            from multiprocess.resource_tracker import _resource_tracker as t
            t.ensure_running()
            ok = t._pid in (None, pid) and t._check_alive()
            sys.exit(0 if ok else 3)

        if __name__ == '__main__':
            _resource_tracker.ensure_running()
            ctx = mp.get_context(%r)
            p = ctx.Process(target=probe, args=(_resource_tracker._pid,))
            p.start()
            p.join(30)
            print(p.exitcode)
    ''' % method)
    assert rc == 0, err
    assert out.strip() == '0', err


# ---------------------------------------------------------------------------
# what the tracker's exit status says (3.13+)

@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="the tracker's exit status is 3.13 behaviour")
@pytest.mark.parametrize('leak, expected', [(False, 0), (True, 1)])
def test_tracker_exit_status_tells_whether_something_leaked(leak, expected):
    tracker = resource_tracker.ResourceTracker()
    tracker.ensure_running()
    assert tracker._exitcode is None
    tracker.register('leak-probe', 'dummy')
    if not leak:
        tracker.unregister('leak-probe', 'dummy')
    tracker._stop()
    assert tracker._exitcode == expected


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="the tracker's exit status is 3.13 behaviour")
def test_tracker_exit_status_3_after_a_bad_message():
    tracker = resource_tracker.ResourceTracker()
    fd = tracker.getfd()
    os.write(fd, b'BOGUS:/y:noop\n')
    # its stderr is ours: keep the report of the bad line out of the output
    tracker._stop()
    assert tracker._exitcode == 3


def test_exit_status_and_dummy_type_follow_the_running_version():
    tracker = resource_tracker.ResourceTracker()
    assert tracker._exitcode is None
    has_dummy = 'dummy' in resource_tracker._CLEANUP_FUNCS
    # the stdlib's own suites of 3.12 and older would try to create one
    assert has_dummy == (sys.version_info >= (3, 13))


def test_noop_is_never_cleaned_up():
    with pytest.raises(RuntimeError):
        resource_tracker._CLEANUP_FUNCS['noop']('anything')


@pytest.mark.timeout(60)
def test_leak_warning_names_the_leaked_resources_from_3_13():
    name = _unique('rt-named')
    path = _make_shared_memory(name)
    try:
        rc, out, err = _run_program('''
            import os
            from multiprocess import resource_tracker
            resource_tracker.register(%r, 'shared_memory')
            os.kill(os.getpid(), 9)
        ''' % name)
        assert rc == -signal.SIGKILL
        assert _wait_gone(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    warning = [line for line in err.splitlines() if 'leaked' in line]
    assert len(warning) == 1, err
    assert warning[0].endswith(
        'There appear to be 1 leaked shared_memory objects to clean up at '
        'shutdown' + (': %s' % ({name},) if sys.version_info >= (3, 13) else ''))
