"""An ApplyResult's completion (a flag and a lock held until the outcome
is set, see ApplyResult._block): every thread waiting on it wakes, a
timed wait gives up on time, and a result already complete never blocks."""

import threading
import time

import pytest

import multiprocess
from multiprocess.context import TimeoutError


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


@pytest.mark.timeout(60)
def test_every_thread_waiting_on_one_result_wakes_with_its_value():
    with multiprocess.Pool(2) as p:
        r = p.apply_async(sleep_then, (7, 0.3))
        got = []
        threads = [threading.Thread(target=lambda: got.append(r.get(30)))
                   for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert got == [7] * 5
        assert r.ready() and r.successful()


@pytest.mark.timeout(60)
def test_timed_waits_give_up_on_time_and_a_later_wait_still_gets_the_value():
    with multiprocess.Pool(1) as p:
        r = p.apply_async(sleep_then, ('x', 0.5))
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            r.get(timeout=0.05)
        r.wait(0.05)
        assert not r.ready()
        with pytest.raises(TimeoutError):
            r.get(timeout=0)
        with pytest.raises(TimeoutError):
            r.get(timeout=-1)
        assert time.monotonic() - start < 0.45
        assert r.get(30) == 'x'
        # complete: no wait blocks, however often or short
        for timeout in (None, 0, -1, 0.001):
            r.wait(timeout)
            assert r.get(timeout) == 'x'


@pytest.mark.timeout(60)
def test_a_callback_runs_before_any_waiter_sees_the_result_complete():
    seen = []
    with multiprocess.Pool(1) as p:
        r = p.apply_async(sleep_then, (3, 0.1), callback=seen.append)
        assert r.get(30) == 3
        assert seen == [3]


@pytest.mark.timeout(60)
def test_waiters_on_a_result_of_a_terminated_pool_wake_with_its_error():
    p = multiprocess.Pool(1)
    try:
        r = p.apply_async(sleep_then, (1, 30))
        errors = []

        def waiter():
            try:
                r.get(30)
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=waiter) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)
    finally:
        p.terminate()
        p.join()
    for t in threads:
        t.join(30)
    assert len(errors) == 3 and r.ready() and not r.successful()


@pytest.mark.timeout(60)
def test_waiters_see_the_outcome_even_when_an_interrupted_waiter_kept_the_gate():
    # A waiter hit by KeyboardInterrupt between taking the gate and handing
    # it on leaves it held; the threads already waiting must still wake.
    with multiprocess.Pool(1) as p:
        r = p.apply_async(sleep_then, (5, 0.2))
        assert r.get(30) == 5
        r._done = False
        r._gate.acquire()           # as the interrupted waiter left it
        got = []
        threads = [threading.Thread(target=lambda: got.append(r.get()))
                   for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        assert got == []
        r._done = True              # the outcome, without the gate
        for t in threads:
            t.join(10)
        assert got == [5] * 3
