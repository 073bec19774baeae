"""_multiprocess.SemLock: the native lock/semaphore under synchronize.py.

Pins down the behaviour the Python layer relies on (the stdlib's
_multiprocessing.SemLock contract) and every failure mode: timeouts,
recursion counts, over-release, ownership, rebuilding in a child, and
signals arriving while a thread is blocked in acquire().
"""
import os
import signal
import threading
import time
import uuid

import pytest

import _multiprocess as native
from _multiprocess import RECURSIVE_MUTEX, SEMAPHORE, SemLock


def fresh_name():
    return "/mp-test-" + uuid.uuid4().hex[:16]


def make(kind=SEMAPHORE, value=1, maxvalue=1, unlink=True, name=None):
    return SemLock(kind, value, maxvalue, name or fresh_name(), unlink)


def sem_mappings():
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if "/dev/shm/sem." in line)


# --- module surface -------------------------------------------------------

def test_module_constants_and_flags():
    assert RECURSIVE_MUTEX == 0
    assert SEMAPHORE == 1
    assert native.SEM_VALUE_MAX == SemLock.SEM_VALUE_MAX >= 32767
    assert native.flags["HAVE_SEM_OPEN"] == 1
    assert native.flags["HAVE_SEM_TIMEDWAIT"] == 1


def test_members_are_read_only():
    lock = make(kind=RECURSIVE_MUTEX)
    assert lock.kind == RECURSIVE_MUTEX
    assert lock.maxvalue == 1
    assert isinstance(lock.handle, int) and lock.handle != 0
    for attr in ("kind", "maxvalue", "name", "handle"):
        with pytest.raises(AttributeError):
            setattr(lock, attr, 1)


def test_unlinked_semlock_has_no_name():
    assert make(unlink=True).name is None


def test_kept_name_and_sem_unlink():
    name = fresh_name()
    sem = make(name=name, unlink=False)
    try:
        assert sem.name == name
        with pytest.raises(FileExistsError):
            make(name=name, unlink=False)
    finally:
        native.sem_unlink(name)
    with pytest.raises(FileNotFoundError):
        native.sem_unlink(name)
    # the handle outlives the name
    assert sem.acquire(False)


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unrecognized kind"):
        make(kind=5)
    with pytest.raises(OSError):
        make(value=-1)
    with pytest.raises(TypeError):
        SemLock(SEMAPHORE, 1, 1, None, True)
    with pytest.raises(ValueError):
        SemLock(SEMAPHORE, 1, 1, "/mp-bad\0name", True)
    with pytest.raises(TypeError):
        SemLock(SEMAPHORE, 1, 1)


def test_constructor_accepts_keywords():
    sem = SemLock(kind=SEMAPHORE, value=3, maxvalue=5, name=fresh_name(),
                  unlink=True)
    assert sem._get_value() == 3


def test_sem_unlink_rejects_non_str():
    with pytest.raises(TypeError):
        native.sem_unlink(b"/x")


# --- acquire --------------------------------------------------------------

def test_nonblocking_acquire_fails_when_taken():
    lock = make()
    assert lock.acquire(False) is True
    assert lock.acquire(False) is False
    assert lock.acquire(block=False) is False
    assert lock.acquire(False, 10) is False  # non-blocking ignores timeout


@pytest.mark.timeout(20)
def test_acquire_timeout_expires():
    lock = make(value=0)
    start = time.monotonic()
    assert lock.acquire(True, 0.2) is False
    elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 5


@pytest.mark.timeout(20)
def test_negative_timeout_behaves_as_zero():
    lock = make(value=0)
    start = time.monotonic()
    assert lock.acquire(timeout=-5) is False
    assert time.monotonic() - start < 1
    assert make(value=1).acquire(timeout=-1) is True


def test_timeout_type_errors():
    lock = make(value=0)
    with pytest.raises(TypeError):
        lock.acquire(True, "soon")
    with pytest.raises(ValueError):
        lock.acquire(True, float("nan"))
    with pytest.raises(TypeError):
        lock.acquire(True, 1, 2)
    with pytest.raises(TypeError):
        lock.acquire(bogus=1)
    with pytest.raises(TypeError):
        lock.acquire(True, block=True)


@pytest.mark.timeout(20)
def test_huge_timeout_waits_until_released():
    lock = make(value=0)
    threading.Timer(0.1, lock.release).start()
    assert lock.acquire(True, 1e300) is True


@pytest.mark.timeout(20)
def test_blocked_acquire_lets_other_threads_run():
    sem = make(value=0, maxvalue=SemLock.SEM_VALUE_MAX)
    ticks = []

    def worker():
        for _ in range(5):
            ticks.append(1)
            time.sleep(0.01)
        sem.release()

    t = threading.Thread(target=worker)
    t.start()
    assert sem.acquire(True, 10) is True
    t.join()
    assert len(ticks) == 5


def test_enter_exit():
    lock = make()
    with lock as got:
        assert got is True
        assert lock._is_zero()
    assert not lock._is_zero()


# --- recursion and ownership ---------------------------------------------

def test_recursive_mutex_counts_reentry():
    rlock = make(kind=RECURSIVE_MUTEX)
    assert rlock.acquire() and rlock.acquire() and rlock.acquire(False)
    assert rlock._count() == 3
    assert rlock._is_mine()
    assert rlock._is_zero()           # the semaphore itself is taken once
    rlock.release()
    rlock.release()
    assert rlock._count() == 1 and rlock._is_zero()
    rlock.release()
    assert rlock._count() == 0 and not rlock._is_mine()
    assert rlock._get_value() == 1


def test_recursive_mutex_release_by_non_owner_raises():
    rlock = make(kind=RECURSIVE_MUTEX)
    with pytest.raises(AssertionError, match="not owned by thread"):
        rlock.release()
    rlock.acquire()
    errors = []

    def other():
        try:
            rlock.release()
        except AssertionError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1
    assert rlock._is_mine()
    rlock.release()


@pytest.mark.timeout(20)
def test_recursive_mutex_blocks_other_threads():
    rlock = make(kind=RECURSIVE_MUTEX)
    rlock.acquire()
    result = []
    t = threading.Thread(target=lambda: result.append(rlock.acquire(True, 0.1)))
    t.start()
    t.join()
    assert result == [False]


def test_semaphore_counts_and_ownership():
    sem = make(value=2, maxvalue=2)
    assert sem._count() == 0 and not sem._is_mine()
    sem.acquire()
    assert sem._count() == 1 and sem._is_mine()
    sem.acquire()
    assert sem._count() == 2 and sem._is_zero()
    sem.release()
    sem.release()
    assert sem._count() == 0 and sem._get_value() == 2


def test_lock_released_by_another_thread_is_allowed():
    lock = make()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert lock._get_value() == 1


# --- over-release ------------------------------------------------------------

def test_lock_released_too_many_times():
    lock = make()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    assert lock._get_value() == 1


def test_bounded_semaphore_released_over_maxvalue():
    sem = make(value=2, maxvalue=5)
    for _ in range(3):
        sem.release()
    assert sem._get_value() == 5
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    assert sem._get_value() == 5


def test_unbounded_semaphore_release_has_no_limit_below_max():
    sem = make(value=0, maxvalue=SemLock.SEM_VALUE_MAX)
    for _ in range(100):
        sem.release()
    assert sem._get_value() == 100


# --- children ---------------------------------------------------------------

def test_after_fork_forgets_ownership():
    rlock = make(kind=RECURSIVE_MUTEX)
    rlock.acquire()
    rlock.acquire()
    rlock._after_fork()
    assert rlock._count() == 0 and not rlock._is_mine()


def test_rebuild_by_name_shares_the_semaphore():
    name = fresh_name()
    sem = make(value=0, maxvalue=3, name=name, unlink=False)
    try:
        twin = SemLock._rebuild(sem.handle, sem.kind, sem.maxvalue, name)
    finally:
        native.sem_unlink(name)
    assert type(twin) is SemLock
    assert twin.name == name and twin.maxvalue == 3
    assert twin.handle != 0
    twin.release()
    assert sem._get_value() == 1
    del twin
    assert sem.acquire(False)


def test_rebuild_of_unlinked_name_fails():
    name = fresh_name()
    sem = make(name=name, unlink=False)
    native.sem_unlink(name)
    with pytest.raises(FileNotFoundError):
        SemLock._rebuild(sem.handle, sem.kind, sem.maxvalue, name)


def test_rebuild_argument_errors():
    with pytest.raises(ValueError, match="unrecognized kind"):
        SemLock._rebuild(0, 7, 1, None)
    with pytest.raises(TypeError):
        SemLock._rebuild(0, 1, 1)
    with pytest.raises(TypeError):
        SemLock._rebuild(0, 1, 1, 5)


def test_rebuild_from_handle_borrows_without_closing():
    sem = make(value=0, maxvalue=4)
    for _ in range(20):
        borrowed = SemLock._rebuild(sem.handle, SEMAPHORE, 4, None)
        assert borrowed.name is None and borrowed.handle == sem.handle
        borrowed.release()
        borrowed.acquire()
        del borrowed
    sem.release()
    assert sem._get_value() == 1


def test_dealloc_closes_the_semaphore():
    before = sem_mappings()
    locks = [make(unlink=True) for _ in range(50)]
    assert sem_mappings() >= before + 50
    del locks
    assert sem_mappings() == before


@pytest.mark.timeout(30)
def test_rebuild_in_forked_child_via_handle():
    sem = make(value=0, maxvalue=SemLock.SEM_VALUE_MAX)
    done = make(value=0, maxvalue=1)
    pid = os.fork()
    if pid == 0:   # child
        code = 1
        try:
            child_sem = SemLock._rebuild(sem.handle, SEMAPHORE,
                                         SemLock.SEM_VALUE_MAX, None)
            child_done = SemLock._rebuild(done.handle, SEMAPHORE, 1, None)
            child_sem.release()
            child_sem.release()
            # wait for the parent's go-ahead, proving both directions work
            code = 0 if child_done.acquire(True, 10) else 2
        finally:
            os._exit(code)
    assert sem.acquire(True, 10)
    assert sem.acquire(True, 10)
    done.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.timeout(30)
def test_rebuild_in_forked_child_via_name():
    name = fresh_name()
    lock = make(kind=RECURSIVE_MUTEX, name=name, unlink=False)
    try:
        lock.acquire()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                twin = SemLock._rebuild(0, RECURSIVE_MUTEX, 1, name)
                # the parent holds it: our twin cannot take it
                code = 0 if twin.acquire(True, 0.1) is False else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        lock.release()
    finally:
        native.sem_unlink(name)


# --- signals ----------------------------------------------------------------

def _interrupt_main_after(delay):
    main = threading.main_thread().ident
    timer = threading.Timer(delay, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", [None, 10.0])
def test_sigint_interrupts_blocked_acquire(timeout):
    assert threading.current_thread() is threading.main_thread()
    lock = make(value=0)
    timer = _interrupt_main_after(0.2)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        lock.acquire(True, timeout)
    timer.join()
    assert time.monotonic() - start < 5
    assert lock._count() == 0


@pytest.mark.timeout(20)
def test_signal_with_quiet_handler_resumes_wait_with_remaining_time():
    lock = make(value=0)
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *a: seen.append(1))
    try:
        main = threading.main_thread().ident
        timers = [threading.Timer(d, signal.pthread_kill,
                                  (main, signal.SIGUSR1))
                  for d in (0.1, 0.2, 0.3)]
        for t in timers:
            t.start()
        start = time.monotonic()
        assert lock.acquire(True, 0.6) is False
        elapsed = time.monotonic() - start
        for t in timers:
            t.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert len(seen) == 3
    # retries wait for what is left, not the full timeout again
    assert 0.59 <= elapsed < 1.5


@pytest.mark.timeout(20)
def test_signal_handler_runs_then_acquire_succeeds():
    lock = make(value=0)
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *a: seen.append(1))
    try:
        main = threading.main_thread().ident
        threading.Timer(0.1, signal.pthread_kill,
                        (main, signal.SIGUSR1)).start()
        threading.Timer(0.3, lock.release).start()
        assert lock.acquire() is True
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert seen == [1]
