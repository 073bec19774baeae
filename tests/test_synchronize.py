"""Behaviour of multiprocess.synchronize: locks, semaphores, conditions,
events and barriers, within one process and across processes."""
import gc
import os
import pickle
import sys
import threading
import time

import pytest

import multiprocess as mp
from multiprocess import synchronize
from .conftest import START_METHODS

METHODS = START_METHODS


def _sem_files():
    try:
        return {n for n in os.listdir('/dev/shm') if n.startswith('sem.')}
    except FileNotFoundError:
        return set()


# -- children (module level so spawned children can import them) ----------

def _hold_both_with_with(lock, cond):
    with lock, cond:
        with cond:
            pass



def _hold_lock(lock, held, release):
    with lock:
        held.set()
        release.wait(30)


def _wait_on_condition(cond, sleeping, result, timeout):
    with cond:
        sleeping.release()
        result.put(cond.wait(timeout))


def _wait_on_event(event, result):
    result.put(event.wait(30))


def _set_event_later(event, delay):
    time.sleep(delay)
    event.set()


def _pass_barrier(barrier, result):
    try:
        result.put(barrier.wait())
    except threading.BrokenBarrierError:
        result.put('broken')


def _abort_barrier_when_waited(barrier, result):
    try:
        barrier.wait()
        result.put('passed')
    except threading.BrokenBarrierError:
        result.put('broken')


def _bump_under_lock(lock, counter_sem, rounds):
    for _ in range(rounds):
        with lock:
            counter_sem.release()


# -- Lock / RLock ------------------------------------------------------------

@pytest.mark.timeout(30)
def test_acquire_with_timeout_on_held_lock_returns_false_after_about_timeout():
    lock = mp.Lock()
    assert lock.acquire()
    start = time.monotonic()
    assert lock.acquire(timeout=0.3) is False
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 5.0
    start = time.monotonic()
    assert lock.acquire(False) is False
    assert time.monotonic() - start < 1.0
    lock.release()


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_lock_held_by_child_times_out_in_parent(method):
    ctx = mp.get_context(method)
    lock, held, release = ctx.Lock(), ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(lock, held, release))
    p.start()
    try:
        assert held.wait(30)
        start = time.monotonic()
        assert lock.acquire(True, 0.2) is False
        assert time.monotonic() - start >= 0.15
        assert 'SomeOtherProcess' in repr(lock)
    finally:
        release.set()
        p.join(30)
    assert p.exitcode == 0
    assert lock.acquire(timeout=5)
    lock.release()


@pytest.mark.timeout(30)
def test_releasing_an_unlocked_lock_raises_value_error():
    lock = mp.Lock()
    with pytest.raises(ValueError):
        lock.release()


@pytest.mark.timeout(30)
def test_lock_repr_shows_owner():
    lock = mp.Lock()
    assert repr(lock) == '<Lock(owner=None)>'
    with lock:
        assert repr(lock) == '<Lock(owner=MainProcess)>'


@pytest.mark.timeout(30)
def test_rlock_is_recursive_and_owned_by_one_thread():
    rlock = mp.RLock()
    assert rlock.acquire() and rlock.acquire()
    assert repr(rlock) == '<RLock(MainProcess, 2)>'
    other = []
    t = threading.Thread(target=lambda: other.append(rlock.acquire(False)))
    t.start()
    t.join()
    assert other == [False]
    rlock.release()
    rlock.release()
    assert repr(rlock) == '<RLock(None, 0)>'
    with pytest.raises(AssertionError):
        rlock.release()


@pytest.mark.timeout(30)
def test_uncontended_acquire_release_are_c_methods():
    # Bound straight to the C SemLock: no Python frame per call.
    lock = mp.Lock()
    assert type(lock.acquire).__name__ == 'builtin_function_or_method'
    assert type(lock.release).__name__ == 'builtin_function_or_method'


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_lock_gives_mutual_exclusion_across_processes(method):
    ctx = mp.get_context(method)
    lock, counter = ctx.Lock(), ctx.Semaphore(0)
    procs = [ctx.Process(target=_bump_under_lock, args=(lock, counter, 200))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert counter.get_value() == 600


# -- Semaphore / BoundedSemaphore ---------------------------------------------

@pytest.mark.timeout(30)
def test_semaphore_counts_and_reprs():
    sem = mp.Semaphore(2)
    assert repr(sem) == '<Semaphore(value=2)>'
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(False) is False
    assert sem.get_value() == 0
    sem.release()
    sem.release()
    sem.release()
    assert sem.get_value() == 3


@pytest.mark.timeout(30)
def test_bounded_semaphore_refuses_release_past_initial_value():
    sem = mp.BoundedSemaphore(2)
    assert repr(sem) == '<BoundedSemaphore(value=2, maxvalue=2)>'
    with pytest.raises(ValueError):
        sem.release()
    sem.acquire()
    sem.release()


@pytest.mark.timeout(30)
def test_semaphore_acquire_timeout_returns_false():
    sem = mp.Semaphore(0)
    start = time.monotonic()
    assert sem.acquire(timeout=0.2) is False
    assert time.monotonic() - start >= 0.15


# -- Condition ---------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_condition_notify_wakes_waiter_in_other_process(method):
    ctx = mp.get_context(method)
    cond, sleeping, result = ctx.Condition(), ctx.Semaphore(0), ctx.Queue()
    p = ctx.Process(target=_wait_on_condition,
                    args=(cond, sleeping, result, 30))
    p.start()
    try:
        assert sleeping.acquire(timeout=30)
        with cond:       # the child holds the lock until it waits
            cond.notify()
        assert result.get(timeout=30) is True
    finally:
        p.join(30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_condition_notify_all_wakes_every_waiter():
    cond, sleeping, result = mp.Condition(), mp.Semaphore(0), mp.Queue()
    procs = [mp.Process(target=_wait_on_condition,
                        args=(cond, sleeping, result, 30)) for _ in range(3)]
    for p in procs:
        p.start()
    for _ in procs:
        assert sleeping.acquire(timeout=30)
    # all three are inside wait() once they could take the lock
    deadline = time.monotonic() + 30
    while True:
        with cond:
            waiting = (cond._sleeping_count.get_value()
                       - cond._woken_count.get_value())
            if waiting == 3:
                cond.notify_all()
                break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sorted(result.get(timeout=30) for _ in procs) == [True] * 3
    for p in procs:
        p.join(30)
    assert cond._wait_semaphore.get_value() == 0


@pytest.mark.timeout(30)
def test_condition_wait_times_out_and_keeps_books_straight():
    cond = mp.Condition()
    with cond:
        start = time.monotonic()
        assert cond.wait(0.2) is False
        assert time.monotonic() - start >= 0.15
        cond.notify()            # must not block on the timed-out waiter
    assert repr(cond) == '<Condition(<RLock(None, 0)>, 0)>'


@pytest.mark.timeout(30)
def test_condition_wait_without_lock_is_an_error():
    cond = mp.Condition()
    with pytest.raises(AssertionError):
        cond.wait(0.01)
    with pytest.raises(AssertionError):
        cond.notify()


@pytest.mark.timeout(30)
def test_condition_wait_restores_rlock_depth():
    cond = mp.Condition(mp.RLock())
    cond.acquire()
    cond.acquire()
    cond.wait(0.01)
    assert cond._lock._semlock._count() == 2
    cond.release()
    cond.release()


@pytest.mark.timeout(30)
def test_condition_wait_for_returns_predicate_result_or_times_out():
    cond = mp.Condition()
    state = []
    with cond:
        assert cond.wait_for(lambda: 'ready') == 'ready'
        start = time.monotonic()
        assert cond.wait_for(lambda: state, timeout=0.2) == []
        assert time.monotonic() - start >= 0.15

    def later():
        time.sleep(0.1)
        with cond:
            state.append(1)
            cond.notify()
    t = threading.Thread(target=later)
    t.start()
    with cond:
        assert cond.wait_for(lambda: state, timeout=10) == [1]
    t.join()


# -- Event -------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_event_set_in_parent_releases_child(method):
    ctx = mp.get_context(method)
    event, result = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_wait_on_event, args=(event, result))
    p.start()
    time.sleep(0.1)
    event.set()
    assert result.get(timeout=30) is True
    p.join(30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_event_set_in_child_wakes_parent():
    event = mp.Event()
    p = mp.Process(target=_set_event_later, args=(event, 0.1))
    p.start()
    assert event.wait(30) is True
    p.join(30)


@pytest.mark.timeout(30)
def test_event_clear_wait_timeout_and_repr():
    event = mp.Event()
    assert not event.is_set()
    assert 'unset' in repr(event)
    start = time.monotonic()
    assert event.wait(0.2) is False
    assert time.monotonic() - start >= 0.15
    event.set()
    event.set()                  # idempotent
    assert event.is_set() and event.wait(0) is True
    assert repr(event).endswith(' set>')
    event.clear()
    event.clear()
    assert not event.is_set()


# -- Barrier -----------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_barrier_releases_three_processes_with_distinct_indices(method):
    ctx = mp.get_context(method)
    barrier, result = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_pass_barrier, args=(barrier, result))
             for _ in range(3)]
    for p in procs:
        p.start()
    indices = sorted(result.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(30)
    assert indices == [0, 1, 2]
    assert barrier.n_waiting == 0 and not barrier.broken


@pytest.mark.timeout(60)
def test_barrier_abort_breaks_waiting_processes():
    barrier, result = mp.Barrier(3), mp.Queue()
    procs = [mp.Process(target=_abort_barrier_when_waited,
                        args=(barrier, result)) for _ in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 30
    while barrier.n_waiting < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    barrier.abort()
    assert [result.get(timeout=30) for _ in procs] == ['broken', 'broken']
    for p in procs:
        p.join(30)
    assert barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    barrier.reset()
    assert not barrier.broken and barrier.n_waiting == 0


@pytest.mark.timeout(30)
def test_barrier_wait_times_out_and_breaks():
    barrier = mp.Barrier(2, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    assert time.monotonic() - start >= 0.15
    assert barrier.broken
    if sys.version_info >= (3, 11):     # threading.Barrier's repr (3.11+)
        assert 'broken' in repr(barrier)


@pytest.mark.timeout(30)
def test_barrier_runs_action_once():
    calls = []
    barrier = mp.Barrier(2, action=lambda: calls.append(1))
    t = threading.Thread(target=barrier.wait)
    t.start()
    barrier.wait(10)
    t.join()
    assert calls == [1]
    assert barrier.parties == 2


# -- pickling and naming -------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize('factory', ['Lock', 'RLock', 'Semaphore',
                                     'BoundedSemaphore', 'Condition',
                                     'Event'])
def test_pickling_outside_spawning_raises_runtime_error(factory):
    obj = getattr(mp, factory)()
    with pytest.raises(RuntimeError):
        pickle.dumps(obj)


@pytest.mark.timeout(60)
def test_fork_context_lock_refused_by_spawned_child():
    lock = mp.get_context('fork').Lock()
    p = mp.get_context('spawn').Process(target=_hold_lock,
                                        args=(lock, None, None))
    with pytest.raises(RuntimeError, match='A SemLock created in a fork'):
        p.start()


@pytest.mark.timeout(30)
def test_fork_context_semaphore_is_unlinked_at_once():
    before = _sem_files()
    lock = mp.get_context('fork').Lock()
    assert lock._semlock.name is None
    assert _sem_files() == before


@pytest.mark.timeout(30)
def test_spawn_context_semaphore_is_named_and_unlinked_when_collected():
    lock = mp.get_context('spawn').Lock()
    name = lock._semlock.name
    assert name and name.startswith('/mp-')
    assert 'sem.' + name[1:] in _sem_files()
    del lock
    gc.collect()
    assert 'sem.' + name[1:] not in _sem_files()


@pytest.mark.timeout(30)
def test_make_name_is_random_and_prefixed():
    names = {synchronize.SemLock._make_name() for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith('/mp-') for n in names)


@pytest.mark.timeout(30)
def test_locks_work_with_exit_stack():
    # ExitStack fetches __enter__/__exit__ from the type and calls them.
    import contextlib
    lock, cond = mp.Lock(), mp.Condition()
    with contextlib.ExitStack() as stack:
        assert stack.enter_context(lock) is True
        assert stack.enter_context(cond) is True
        assert 'MainProcess' in repr(lock)
    assert repr(lock) == '<Lock(owner=None)>'
    assert cond.acquire(False)
    cond.release()


@pytest.mark.timeout(30)
@pytest.mark.parametrize('kind', ['Lock', 'RLock', 'Semaphore',
                                  'BoundedSemaphore', 'Condition'])
def test_with_uses_enter_and_exit_bound_once_per_object(kind):
    # `with` resolves __enter__/__exit__ to methods the object bound when it
    # was made, not to new bound methods each time (half the block's cost).
    obj = getattr(mp, kind)()
    assert obj.__enter__ is obj.__enter__
    assert obj.__exit__ is obj.__exit__
    with obj:
        with obj if kind in ('RLock', 'Condition') else _nothing():
            pass
    # released by the block: a non-blocking acquire succeeds
    assert obj.acquire(False)
    obj.release()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', START_METHODS)
def test_with_works_on_a_lock_and_condition_sent_to_a_child(method):
    ctx = mp.get_context(method)
    lock = ctx.Lock()
    cond = ctx.Condition(ctx.RLock())
    p = ctx.Process(target=_hold_both_with_with, args=(lock, cond))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert lock.acquire(False) and cond.acquire(False)
    lock.release()
    cond.release()


@pytest.mark.timeout(60)
def test_resource_tracker_unlinks_semaphore_of_killed_creator():
    import signal
    import subprocess
    import sys
    script = (
        "import os, signal, sys\n"
        "import multiprocess as mp\n"
        "lock = mp.get_context('spawn').Lock()\n"
        "print(lock._semlock.name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, '-c', script],
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == -signal.SIGKILL
    name = proc.stdout.strip()
    assert name.startswith('/mp-')
    deadline = time.monotonic() + 30
    while 'sem.' + name[1:] in _sem_files():
        assert time.monotonic() < deadline, 'tracker did not unlink ' + name
        time.sleep(0.05)
