"""The spins before blocking (spinwait.c, "When a spin can pay") give way
whenever the CPUs are oversubscribed.

A receive on a warm fd and a pool worker waiting for its next task poll for
a moment instead of sleeping.  That only pays while the peer has a CPU of
its own; once every CPU is busy the poll takes time from the peer.  What
must hold: with a busy loop on every usable CPU nobody spins, and spins
that keep finding nothing stop for a while.  Correctness with or without
spinning is pinned down in test_recv_spin.py.
"""
import os
import subprocess
import sys
import time

import pytest

import _multiprocess as native
import multiprocess
from multiprocess import connection


@pytest.fixture
def every_cpu_busy():
    """A busy loop per usable CPU, for the length of one test."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(len(os.sched_getaffinity(0)))]
    time.sleep(0.3)                   # let them be running, not starting
    yield
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait(timeout=30)


def _echo(conn):
    while True:
        data = conn.recv_bytes()
        if not data:
            return
        conn.send_bytes(data)


def _round_trips(count):
    """Seconds for `count` round trips to a forked echo process, which
    inherits this process's spin setting."""
    a, b = connection.Pipe()
    ctx = multiprocess.get_context("fork")
    p = ctx.Process(target=_echo, args=(b,))
    p.start()
    b.close()
    try:
        for _ in range(20):           # warm: both fds see quick messages
            a.send_bytes(b"x")
            a.recv_bytes()
        t = time.perf_counter()
        for _ in range(count):
            a.send_bytes(b"x")
            a.recv_bytes()
        return time.perf_counter() - t
    finally:
        a.send_bytes(b"")
        p.join(30)
        a.close()


def _vain_spins(fd, times, seconds):
    """Seconds taken by `times` spins of `seconds` on fd, which stays
    empty (each must find nothing)."""
    t = time.monotonic()
    for _ in range(times):
        assert native.PoolEngine.spin_wait(fd, seconds) is False
    return time.monotonic() - t


@pytest.mark.timeout(300)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="with one CPU the spin is off anyway")
def test_with_every_cpu_busy_round_trips_cost_no_more_than_without_spin(
        spin, every_cpu_busy):
    # Polling peers on busy CPUs take each other's time slices: a round
    # trip that sleeping makes in ~0.1 ms took milliseconds.  Best of
    # three, interleaved, against the same trips with the spin off.
    spun, slept = [], []
    for _ in range(3):
        spin(0.0)
        slept.append(_round_trips(200))
        spin(0.0002)
        spun.append(_round_trips(200))
    assert min(spun) < 3 * min(slept) + 0.05, (spun, slept)


@pytest.mark.timeout(120)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="with one CPU the spin is off anyway")
def test_with_every_cpu_busy_a_pool_worker_does_not_poll_for_tasks(
        every_cpu_busy, pipe_fds):
    took = _vain_spins(pipe_fds[0], 5, 0.1)
    assert took < 0.1, took


@pytest.mark.timeout(60)
def test_spins_in_a_row_that_find_nothing_stop_spinning_for_a_while(
        pipe_fds):
    # Twenty spins of 20 ms on a pipe nobody writes to would take 0.4 s;
    # after a few in vain the rest return at once.
    took = _vain_spins(pipe_fds[0], 20, 0.02)
    assert took < 0.2, took


@pytest.mark.timeout(60)
def test_a_spin_still_sees_a_message_that_is_already_there(pipe_fds):
    # Whatever the verdict on spinning, data already waiting is found.
    r, w = pipe_fds
    os.write(w, b"x")
    for _ in range(10):
        assert native.PoolEngine.spin_wait(r, 0.01) is True
