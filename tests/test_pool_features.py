"""The pool's features beyond the standard library: task_timeout,
imap(buffersize=), progress=, .done/.total, max_memory_per_child."""
import io
import itertools
import os
import signal
import sys
import threading
import time

import pytest

import multiprocess as mp
from multiprocess import TaskTimeoutError, WorkerLostError
from multiprocess.pool import Pool, ThreadPool
from multiprocess.pool import _progress

pytestmark = pytest.mark.timeout(120)


def _slow_at(x, at=3, seconds=60):
    if x == at:
        time.sleep(seconds)
    return x * x


def _sleep(seconds):
    time.sleep(seconds)
    return seconds


def _die(_=None):
    os._exit(3)


def _square(x):
    return x * x


def _fail_at_five(x):
    if x == 5:
        raise ValueError('five')
    return x


def _hold(megabytes):
    global _held
    _held = bytearray(megabytes << 20)
    for i in range(0, len(_held), 4096):
        _held[i] = 1
    return os.getpid()


@pytest.fixture
def pool():
    with Pool(2) as p:
        yield p


# -- task_timeout ---------------------------------------------------------

def test_map_call_past_task_timeout_raises_and_pool_maps_again(pool):
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError, match='task_timeout=1s') as info:
        pool.map(_slow_at, range(10), task_timeout=1)
    assert time.monotonic() - started < 15
    assert isinstance(info.value, mp.TimeoutError)
    assert info.value.timeout == 1
    assert pool.map(_square, range(10)) == [i * i for i in range(10)]


def test_apply_async_past_task_timeout_fails_on_time(pool):
    started = time.monotonic()
    result = pool.apply_async(_sleep, (60,), task_timeout=0.5)
    with pytest.raises(TaskTimeoutError):
        result.get(timeout=30)
    assert time.monotonic() - started < 15
    assert pool.apply(_square, (4,)) == 16


def test_pool_task_timeout_is_the_default_of_every_call():
    with Pool(2, task_timeout=0.5) as pool:
        with pytest.raises(TaskTimeoutError):
            pool.apply(_sleep, (60,))
        assert pool.apply(_sleep, (0.01,)) == 0.01
        # a call may give a longer limit of its own
        assert pool.apply(_sleep, (0.8,), task_timeout=5) == 0.8


def test_timeout_inside_a_chunk_keeps_the_other_calls_of_imap(pool):
    it = pool.imap(_slow_at, range(8), chunksize=4, task_timeout=1)
    out = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            break
        except TaskTimeoutError:
            out.append('timeout')
    assert out == [0, 1, 4, 'timeout', 16, 25, 36, 49]


def test_imap_unordered_chunk_timeout_runs_its_later_calls_elsewhere(pool):
    it = pool.imap_unordered(_slow_at, range(6), chunksize=6,
                             task_timeout=1)
    got, errors = [], 0
    while True:
        try:
            got.append(next(it))
        except StopIteration:
            break
        except TaskTimeoutError:
            errors += 1
    assert errors == 1
    assert sorted(got) == [0, 1, 4, 16, 25]


def test_timeout_limits_each_call_not_the_chunk(pool):
    # eight calls of 0.3 s in one chunk: 2.4 s, each well under the limit
    assert pool.map(_sleep, [0.3] * 8, chunksize=8, task_timeout=1) == \
        [0.3] * 8


def test_timeout_and_a_dead_worker_together(pool):
    slow = pool.apply_async(_sleep, (60,), task_timeout=1)
    dead = pool.apply_async(_die)
    others = pool.map_async(_square, range(20))
    with pytest.raises(WorkerLostError):
        dead.get(timeout=30)
    with pytest.raises(TaskTimeoutError):
        slow.get(timeout=30)
    assert others.get(timeout=30) == [i * i for i in range(20)]
    assert pool.map(_square, range(5), task_timeout=5) == [0, 1, 4, 9, 16]


def test_killed_worker_queued_tasks_run_elsewhere():
    with Pool(1) as pool:
        first = pool.apply_async(_sleep, (60,), task_timeout=0.5)
        queued = [pool.apply_async(_square, (i,)) for i in range(5)]
        with pytest.raises(TaskTimeoutError):
            first.get(timeout=30)
        assert [r.get(timeout=30) for r in queued] == [0, 1, 4, 9, 16]


def test_task_timeout_is_checked():
    with pytest.raises(ValueError):
        Pool(1, task_timeout=0)
    with pytest.raises(TypeError):
        Pool(1, task_timeout='1')
    with Pool(1) as pool:
        with pytest.raises(ValueError):
            pool.apply_async(_square, (1,), task_timeout=-1)


def test_threadpool_task_timeout_raises_on_time_and_carries_on():
    release = threading.Event()

    def stuck(x):
        if x == 2:
            release.wait(30)
        return x

    with ThreadPool(2) as pool:
        started = time.monotonic()
        with pytest.raises(TaskTimeoutError, match='cannot be stopped'):
            pool.map(stuck, range(6), chunksize=3, task_timeout=0.5)
        assert time.monotonic() - started < 10
        # the stuck thread was replaced: the pool still has two
        assert pool.map(abs, range(-3, 3)) == [3, 2, 1, 0, 1, 2]
        it = pool.imap(stuck, range(6), chunksize=3, task_timeout=0.5)
        out = []
        for _ in range(6):
            try:
                out.append(next(it))
            except TaskTimeoutError:
                out.append('timeout')
        assert out == [0, 1, 'timeout', 3, 4, 5]
        release.set()


# -- buffersize -------------------------------------------------------------

def test_imap_buffersize_reads_an_endless_generator_lazily(pool):
    read = []

    def numbers():
        for n in itertools.count():
            read.append(n)
            yield n

    it = pool.imap(_square, numbers(), buffersize=4)
    assert [next(it) for _ in range(10)] == [i * i for i in range(10)]
    time.sleep(0.2)
    assert len(read) <= 16


def test_imap_unordered_buffersize_bounds_chunks_in_flight(pool):
    read = []

    def numbers():
        for n in itertools.count():
            read.append(n)
            yield n

    it = pool.imap_unordered(_square, numbers(), chunksize=3, buffersize=2)
    got = sorted(next(it) for _ in range(9))
    time.sleep(0.2)
    assert len(read) <= 9 + 2 * 3 + 3
    assert len(set(got)) == 9
    assert all(round(v ** 0.5) ** 2 == v for v in got)


def test_buffersize_with_a_failing_generator(pool):
    def numbers():
        yield from range(5)
        raise KeyError('source broke')

    it = pool.imap(_square, numbers(), buffersize=2)
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    with pytest.raises(KeyError, match='source broke'):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_buffersize_is_checked(pool):
    with pytest.raises(ValueError):
        pool.imap(_square, range(3), buffersize=0)
    with pytest.raises(TypeError):
        pool.imap(_square, range(3), buffersize=1.5)


def test_threadpool_buffersize_reads_lazily():
    read = []

    def numbers():
        for n in itertools.count():
            read.append(n)
            yield n

    with ThreadPool(2) as pool:
        it = pool.imap(abs, numbers(), buffersize=3)
        assert [next(it) for _ in range(10)] == list(range(10))
        time.sleep(0.2)
        assert len(read) <= 15


# -- progress ---------------------------------------------------------------

def test_map_progress_callback_ends_with_the_total(pool):
    calls = []
    assert pool.map(_square, range(100), chunksize=3,
                    progress=lambda d, t: calls.append((d, t))) == \
        [i * i for i in range(100)]
    assert calls[-1] == (100, 100)
    assert all(t == 100 for _, t in calls)


def test_map_async_has_done_and_total(pool):
    result = pool.map_async(_square, range(50))
    result.get(timeout=30)
    assert (result.done, result.total) == (50, 50)


def test_progress_with_an_exception_midway(pool):
    calls = []
    with pytest.raises(ValueError, match='five'):
        pool.map(_fail_at_five, range(20), chunksize=1,
                 progress=lambda d, t: calls.append((d, t)))
    assert calls, 'the last report is always made'
    done, total = calls[-1]
    assert total == 20 and done < 20


def test_imap_progress_total_known_at_the_end(pool):
    calls = []
    it = pool.imap(_square, (i for i in range(30)), chunksize=4,
                   progress=lambda d, t: calls.append((d, t)))
    assert list(it) == [i * i for i in range(30)]
    assert it.done == 30 and it.total == 30
    deadline = time.monotonic() + 10
    while calls[-1] != (30, 30) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls[-1] == (30, 30)


def test_imap_total_is_none_while_unknown(pool):
    it = pool.imap(_square, itertools.count(), buffersize=2)
    next(it)
    assert it.total is None and it.done >= 1


def test_progress_callback_is_rate_limited(pool):
    calls = []
    pool.map(_square, range(2000), chunksize=1,
             progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (2000, 2000)
    assert len(calls) < 200


def test_failing_progress_callback_does_not_break_the_pool(pool, capsys):
    def bad(done, total):
        raise RuntimeError('bad callback')

    assert pool.map(_square, range(10), progress=bad) == \
        [i * i for i in range(10)]
    assert 'bad callback' in capsys.readouterr().err


def test_progress_true_without_a_terminal_draws_nothing(pool, monkeypatch):
    monkeypatch.setitem(sys.modules, 'tqdm', None)
    monkeypatch.setattr(sys, 'stderr', io.StringIO())
    assert pool.map(_square, range(10), progress=True) == \
        [i * i for i in range(10)]
    assert sys.stderr.getvalue() == ''


def test_text_bar_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setitem(sys.modules, 'tqdm', None)
    stream = Tty()
    monkeypatch.setattr(sys, 'stderr', stream)
    bar = _progress.reporter(True, 10)
    bar.update(5, 10)
    bar.finish(10, 10)
    assert '10/10 100%' in stream.getvalue()
    assert stream.getvalue().endswith('\n')


def test_progress_is_checked(pool):
    with pytest.raises(TypeError):
        pool.map(_square, range(3), progress='yes')


def test_threadpool_progress():
    calls = []
    with ThreadPool(3) as pool:
        pool.map(abs, range(40), chunksize=2,
                 progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (40, 40)


# -- max_memory_per_child -----------------------------------------------------

def test_worker_above_max_memory_is_replaced():
    with Pool(1, max_memory_per_child=100 << 20) as pool:
        first = pool.apply(_hold, (200,))
        second = pool.apply(os.getpid)
        assert first != second
        third = pool.apply(os.getpid)
        assert second == third      # small workers stay


def test_max_memory_per_child_is_checked():
    with pytest.raises(ValueError):
        Pool(1, max_memory_per_child=0)
    with pytest.raises(TypeError):
        Pool(1, max_memory_per_child=1.5)


def test_progress_true_draws_a_tqdm_bar_when_installed(pool, capsys):
    pytest.importorskip('tqdm')
    assert list(pool.imap(_square, range(40), progress=True)) == \
        [i * i for i in range(40)]
    assert '40/40' in capsys.readouterr().err


def test_the_package_and_dummy_pools_take_the_new_options():
    with mp.Pool(1, task_timeout=5, max_memory_per_child=1 << 30) as pool:
        assert pool.apply(_square, (3,)) == 9
    with mp.get_context('spawn').Pool(1, task_timeout=0.5) as pool:
        with pytest.raises(TaskTimeoutError):
            pool.apply(time.sleep, (30,))
    import multiprocess.dummy
    with multiprocess.dummy.Pool(1, task_timeout=5) as pool:
        assert pool.apply(abs, (-3,)) == 3


def test_threadpool_apply_async_times_out_while_its_thread_runs_on():
    release = threading.Event()
    with ThreadPool(1) as pool:
        result = pool.apply_async(release.wait, (30,), task_timeout=0.3)
        with pytest.raises(TaskTimeoutError):
            result.get(timeout=10)
        # the pool's one thread is stuck; a new one serves
        assert pool.apply(abs, (-2,), task_timeout=5) == 2
        release.set()


def _inherited_pool_memory_check():
    big = bytearray(150 << 20)
    big[::4096] = b'x' * len(big[::4096])      # resident in the parent
    with mp.get_context("fork").Pool(
            1, max_memory_per_child=100 << 20) as pool:
        pids = {pool.apply(os.getpid) for _ in range(3)}
    return len(pids)


def test_max_memory_counts_what_a_forked_worker_holds_alone():
    # a parent of 150 MB: its forked worker shares those pages and must not
    # count them against a 100 MB cap (it would be replaced after every task)
    assert _inherited_pool_memory_check() == 1
