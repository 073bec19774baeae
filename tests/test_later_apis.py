"""APIs the stdlib added after 3.11 that only add something: they exist
here on every Python version (docs/versions.md).  Each is checked on the
running interpreter, whatever its version."""
import collections.abc
import os
import signal
import sys
import time

import pytest

import multiprocess as mp
from multiprocess import managers

try:
    from .conftest import START_METHODS
except ImportError:
    from conftest import START_METHODS

METHODS = START_METHODS


# -- Process.interrupt() (3.14) --------------------------------------------------

def _wait_for_interrupt(ready, path):
    try:
        ready.set()
        time.sleep(60)
    finally:
        with open(path, "w") as f:
            f.write("cleaned up")


def _ignore_sigint(ready):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ready.set()
    time.sleep(2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_interrupt_raises_keyboard_interrupt_in_the_child(method, tmp_path):
    ctx = mp.get_context(method)
    ready = ctx.Event()
    path = tmp_path / "done"
    p = ctx.Process(target=_wait_for_interrupt, args=(ready, str(path)))
    p.start()
    assert ready.wait(30)
    p.interrupt()
    p.join(30)
    # the finally block ran, and the uncaught KeyboardInterrupt gives 1
    assert path.read_text() == "cleaned up"
    assert p.exitcode == 1


@pytest.mark.timeout(60)
def test_interrupt_is_only_a_signal_the_child_may_ignore():
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_ignore_sigint, args=(ready,))
    p.start()
    assert ready.wait(30)
    p.interrupt()
    p.join(30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_interrupt_after_exit_does_nothing_and_after_close_raises():
    p = mp.get_context("fork").Process(target=int)
    p.start()
    p.join()
    p.interrupt()               # already gone: nothing to signal
    assert p.exitcode == 0
    p.close()
    with pytest.raises(ValueError):
        p.interrupt()


def test_interrupt_before_start_is_an_error():
    p = mp.Process(target=int)
    with pytest.raises(AttributeError):
        p.interrupt()           # no popen yet, as terminate()


# -- locked() (3.14) ----------------------------------------------------------------

@pytest.mark.parametrize("make", ["Lock", "RLock"])
def test_lock_locked_follows_acquire_and_release(make):
    _assert_locked_follows_acquire_and_release(getattr(mp, make)())


def _assert_locked_follows_acquire_and_release(lock):
    assert lock.locked() is False
    lock.acquire()
    assert lock.locked() is True
    lock.release()
    assert lock.locked() is False


def test_semaphore_locked_means_no_token_left():
    for sem in (mp.Semaphore(2), mp.BoundedSemaphore(2)):
        assert not sem.locked()
        sem.acquire()
        assert not sem.locked()
        sem.acquire()
        assert sem.locked()
        sem.release()
        assert not sem.locked()


def _hold(lock, held, release):
    lock.acquire()
    held.set()
    release.wait(30)
    lock.release()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", ["Lock", "RLock"])
def test_locked_sees_a_lock_held_by_another_process(make):
    ctx = mp.get_context("fork")
    lock = getattr(ctx, make)()
    held, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(lock, held, release))
    p.start()
    try:
        assert held.wait(30)
        assert lock.locked()
    finally:
        release.set()
        p.join(30)
    assert not lock.locked()


# -- managers: locked(), list/dict additions, set() (3.13/3.14) ------------------------

@pytest.fixture(scope="module")
def manager():
    with mp.Manager() as m:
        yield m


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", ["Lock", "RLock"])
def test_managed_lock_locked(manager, make):
    _assert_locked_follows_acquire_and_release(getattr(manager, make)())


@pytest.mark.timeout(60)
def test_managed_rlock_held_by_another_client_is_locked(manager):
    import threading
    lock = manager.RLock()
    held, release = threading.Event(), threading.Event()

    def holder():
        # a thread has its own connection, so its own server thread
        lock.acquire()
        held.set()
        release.wait(30)
        lock.release()
    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(30)
        assert lock.locked() is True
    finally:
        release.set()
        t.join(30)
    assert lock.locked() is False


@pytest.mark.timeout(60)
def test_managed_list_clear_and_copy(manager):
    shared = manager.list([1, 2, 3])
    copied = shared.copy()
    assert type(copied) is list and copied == [1, 2, 3]
    shared.clear()
    assert len(shared) == 0 and copied == [1, 2, 3]
    assert isinstance(shared, collections.abc.MutableSequence)


@pytest.mark.timeout(60)
def test_managed_dict_operators(manager):
    d = manager.dict({"a": 1, "b": 2})
    merged = d | {"c": 3}
    assert type(merged) is dict and merged == {"a": 1, "b": 2, "c": 3}
    assert {"z": 0} | d == {"z": 0, "a": 1, "b": 2}
    alias = d
    d |= {"b": 20, "d": 4}
    assert d is alias           # still the proxy, the shared dict updated
    assert d.copy() == {"a": 1, "b": 20, "d": 4}
    d |= [("e", 5)]             # as dict |= accepts pairs
    assert d["e"] == 5
    assert list(reversed(d)) == ["e", "d", "b", "a"]
    assert d.fromkeys("xy", 0) == {"x": 0, "y": 0}
    assert isinstance(d, collections.abc.MutableMapping)
    with pytest.raises(TypeError):
        d |= 5


@pytest.mark.timeout(60)
def test_managed_set(manager):
    s = manager.set({1, 2})
    assert isinstance(s, managers.SetProxy)
    assert isinstance(s, collections.abc.MutableSet)
    s.add(3)
    s.discard(1)
    assert 2 in s and 1 not in s and len(s) == 2
    assert sorted(s) == [2, 3]
    assert s | {4} == {2, 3, 4} and {4} | s == {2, 3, 4}
    assert s & {3, 9} == {3} and s - {3} == {2} and s ^ {3, 5} == {2, 5}
    assert s <= {2, 3, 4} and s < {2, 3, 4} and s >= {2} and s > {2}
    alias = s
    s |= {7}
    s -= {2}
    s &= {3, 7, 8}
    s ^= {8}
    assert s is alias
    assert s.copy() == {3, 7, 8}
    with pytest.raises(TypeError):
        s |= [1]                # a set wants a set here, as set does
    other = manager.set({100})
    s |= other
    assert 100 in s
    s.clear()
    assert len(s) == 0
    assert manager.set().copy() == set()


@pytest.mark.timeout(60)
def test_managed_set_reaches_a_child(manager):
    s = manager.set()
    p = mp.get_context("fork").Process(target=s.add, args=("from child",))
    p.start()
    p.join(30)
    assert s.copy() == {"from child"}


def test_proxy_classes_are_generic():
    for proxy in (managers.ListProxy, managers.DictProxy, managers.SetProxy,
                  managers.ValueProxy):
        assert proxy[int].__origin__ is proxy


# -- set_forkserver_preload(on_error=) (3.15) -----------------------------------------

_PRELOAD_SCRIPT = """
    import sys, multiprocess as mp
    if __name__ == "__main__":
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["no_such_module_for_preload"],
                                   on_error=%r)
        p = ctx.Process(target=print, args=("child ran",))
        try:
            p.start()
            p.join()
            print("exit", p.exitcode)
        except Exception as e:
            print("start failed", type(e).__name__)
"""


@pytest.mark.timeout(60)
def test_preload_errors_are_ignored_by_default(run_script):
    out = run_script(_PRELOAD_SCRIPT % "ignore")
    assert out.stdout.splitlines() == ["child ran", "exit 0"]
    assert "no_such_module_for_preload" not in out.stderr


@pytest.mark.timeout(60)
def test_preload_error_warns_and_the_server_goes_on(run_script):
    out = run_script(_PRELOAD_SCRIPT % "warn")
    assert out.stdout.splitlines() == ["child ran", "exit 0"]
    assert "ImportWarning" in out.stderr
    assert "no_such_module_for_preload" in out.stderr


@pytest.mark.timeout(60)
def test_preload_error_fails_the_server_and_starting_fails(run_script):
    out = run_script(_PRELOAD_SCRIPT % "fail")
    assert out.stdout.startswith("start failed"), out
    assert "No module named 'no_such_module_for_preload'" in out.stderr
    assert "child ran" not in out.stdout


def test_preload_on_error_is_checked_and_keyword_only():
    fs = mp.get_context("forkserver")
    with pytest.raises(ValueError):
        fs.set_forkserver_preload([], on_error="explode")
    with pytest.raises(TypeError):
        fs.set_forkserver_preload([], "warn")
    with pytest.raises(TypeError):
        fs.set_forkserver_preload([1])
