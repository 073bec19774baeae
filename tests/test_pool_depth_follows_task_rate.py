"""How many tasks the process engine keeps in flight per worker
(pool/_engine.py, _Engine._depth): at least two, so that slow tasks stay
balanced between the workers; for short tasks as many as a worker gets
through in a couple of milliseconds, decided after a few dozen results
rather than after 50 ms.
"""
import time

import pytest

import multiprocess
from multiprocess.pool import _engine


def identity(x):
    return x


def nap(x):
    time.sleep(0.02)
    return x


class _Clock:
    """Stands in for time.monotonic inside _engine."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


class _FakeEngine:
    """The attributes _Engine._depth reads."""

    DEPTH = _engine._Engine.DEPTH
    MAX_DEPTH = _engine._Engine.MAX_DEPTH
    QUEUED_SECONDS = _engine._Engine.QUEUED_SECONDS
    RATE_WINDOW = _engine._Engine.RATE_WINDOW
    RATE_SAMPLE = _engine._Engine.RATE_SAMPLE
    _depth = _engine._Engine._depth

    def __init__(self, clock, workers=2):
        self.workers = [object()] * workers
        self.rate_start = clock.now
        self.rate_count = 0
        self.depth = self.DEPTH


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(_engine, "time", c)
    return c


def test_a_few_dozen_quick_results_make_the_engine_go_deep(clock):
    engine = _FakeEngine(clock)
    # 32 results (16 per worker) within 0.4 ms: 40,000 per second per
    # worker, 80 tasks in 2 ms, more than the cap
    clock.now += 0.0004
    engine.rate_count = engine.RATE_SAMPLE * 2
    assert engine._depth() == engine.MAX_DEPTH


def test_the_rate_is_not_judged_before_enough_results_or_time(clock):
    engine = _FakeEngine(clock)
    clock.now += 0.001
    engine.rate_count = engine.RATE_SAMPLE * 2 - 1
    assert engine._depth() == engine.DEPTH
    assert engine.rate_count == engine.RATE_SAMPLE * 2 - 1    # window open


def test_slow_results_keep_two_in_flight(clock):
    engine = _FakeEngine(clock)
    engine.depth = engine.MAX_DEPTH
    # 10 results per worker over 60 ms: 6 ms each
    clock.now += 0.06
    engine.rate_count = 20
    assert engine._depth() == engine.DEPTH


def test_depth_in_between_holds_about_two_milliseconds_of_work(clock):
    engine = _FakeEngine(clock)
    # 5,000 results per second per worker: 10 tasks in 2 ms
    clock.now += 0.0032
    engine.rate_count = 32
    assert engine._depth() == int(5000 * engine.QUEUED_SECONDS)


def test_an_idle_spell_is_judged_slow_then_forgotten(clock):
    engine = _FakeEngine(clock)
    engine.depth = engine.MAX_DEPTH
    clock.now += 10.0           # nothing for ten seconds
    engine.rate_count = 3
    assert engine._depth() == engine.DEPTH
    assert engine.rate_count == 0 and engine.rate_start == clock.now
    clock.now += 0.0005         # then a burst of quick results
    engine.rate_count = 32
    assert engine._depth() == engine.MAX_DEPTH


@pytest.mark.timeout(60)
def test_a_map_of_short_tasks_goes_deep_and_one_of_slow_tasks_comes_back():
    with multiprocess.get_context("fork").Pool(2) as pool:
        engine = pool._engine
        assert pool.map(identity, range(3000), chunksize=1) == \
            list(range(3000))
        assert engine.depth > engine.DEPTH
        # tasks of 20 ms: judged within 50 ms, two in flight again
        for _ in range(2):
            assert pool.map(nap, range(12), chunksize=1) == list(range(12))
        assert engine.depth == engine.DEPTH
