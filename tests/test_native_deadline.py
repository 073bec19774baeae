"""The one timeout reading of the native core (deadline.c), as seen from
every blocking entry point: SemLock.acquire, poll/wait_fds and the pool
engine's wait/read_lent."""
import math
import os
import time

import pytest

import _multiprocess


@pytest.fixture
def lock():
    name = "/mp-deadline-%d-%d" % (os.getpid(), time.monotonic_ns())
    return _multiprocess.SemLock(1, 0, 1, name, True)


@pytest.fixture
def engine(pipe_fds):
    return _multiprocess.PoolEngine(pipe_fds[0])


def test_a_nan_timeout_is_a_value_error_everywhere(pipe_fds, lock, engine):
    with pytest.raises(ValueError):
        lock.acquire(True, math.nan)
    with pytest.raises(ValueError):
        _multiprocess.poll(pipe_fds[0], math.nan)
    with pytest.raises(ValueError):
        _multiprocess.wait_fds([pipe_fds[0]], math.nan)
    with pytest.raises(ValueError):
        engine.wait(math.nan)
    with pytest.raises(ValueError):
        engine.read_lent(1, math.nan)


def test_a_timeout_that_is_not_a_number_is_a_type_error(engine):
    with pytest.raises(TypeError):
        engine.wait("1")


def test_a_negative_timeout_only_looks(pipe_fds, lock, engine):
    start = time.monotonic()
    assert lock.acquire(True, -5) is False
    assert _multiprocess.poll(pipe_fds[0], -5) is False
    assert engine.wait(-5) is None
    assert time.monotonic() - start < 1.0


def test_the_pool_engine_waits_out_a_short_timeout(engine):
    start = time.monotonic()
    assert engine.wait(0.05) is None
    assert 0.04 <= time.monotonic() - start < 2.0

