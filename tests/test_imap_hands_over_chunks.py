"""imap and imap_unordered hand results over a chunk at a time
(pool/_results.py, IMapIterator).

The consumer takes the iterator's lock once per chunk, not once per item,
and a for loop takes the items without a Python call each.  What must hold
besides: next() and a for loop share one position, several threads
consuming one iterator get every item exactly once, and a failed chunk
raises once, at its position, with iteration going on after it.
"""
import threading
import time

import pytest

import multiprocess
from multiprocess.pool import _results


def square(x):
    return x * x


def fail_on_13(x):
    if x == 13:
        raise ValueError(x)
    return x


class _CountingLock:
    """A lock that counts how often it is taken."""

    def __init__(self):
        self._lock = threading.Lock()
        self.taken = 0

    def acquire(self, *args):
        got = self._lock.acquire(*args)
        if got:
            self.taken += 1
        return got

    __enter__ = acquire

    def release(self):
        self._lock.release()

    def __exit__(self, *exc):
        self.release()


class _Pool:
    _cache = {}


@pytest.mark.parametrize("cls", [_results.IMapIterator,
                                 _results.IMapUnorderedIterator])
@pytest.mark.parametrize("how", ["for", "next"])
def test_the_consumer_takes_the_lock_once_per_chunk(cls, how):
    it = cls(_Pool())
    lock = _CountingLock()
    it._lock = lock
    it._cond = threading.Condition(lock)
    chunks = [list(range(i * 100, i * 100 + 100)) for i in range(20)]
    for i, chunk in enumerate(chunks):
        it._set(i, (True, chunk))
    it._set_length(len(chunks))
    before = lock.taken
    if how == "for":
        got = list(it)
    else:
        got = []
        while True:
            try:
                got.append(next(it))
            except StopIteration:
                break
    assert sorted(got) == list(range(2000))
    assert lock.taken - before <= 2 * len(chunks) + 2, lock.taken - before


@pytest.mark.timeout(60)
def test_next_and_a_for_loop_share_one_position(pool):
    it = pool.imap(square, range(100), chunksize=7)
    got = [next(it)]
    for x in it:
        got.append(x)
        got.append(next(it))
        if len(got) >= 50:
            break
    got.extend(it)
    assert got == [x * x for x in range(100)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_threads_sharing_one_iterator_get_every_item_once(pool, method):
    it = getattr(pool, method)(square, range(20000), chunksize=50)
    seen = [[] for _ in range(4)]

    def consume(mine):
        for x in it:
            mine.append(x)
    threads = [threading.Thread(target=consume, args=(mine,))
               for mine in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert sorted(x for mine in seen for x in mine) == \
        [x * x for x in range(20000)]


@pytest.mark.timeout(60)
def test_a_failed_chunk_raises_once_at_its_position_and_iteration_goes_on(
        pool):
    it = pool.imap(fail_on_13, range(30), chunksize=5)
    got = []
    with pytest.raises(ValueError):
        for x in it:
            got.append(x)
    assert got == list(range(10))        # the chunk 10..14 failed whole
    assert list(it) == list(range(15, 30))


@pytest.mark.timeout(60)
def test_imap_of_a_generator_yields_everything_in_order(pool):
    items = (i for i in range(50_000))
    assert list(pool.imap(square, items, chunksize=1000)) == \
        [i * i for i in range(50_000)]
    assert sorted(pool.imap_unordered(square, range(50_000),
                                      chunksize=1000)) == \
        [i * i for i in range(50_000)]


def test_done_counts_the_chunk_being_handed_out():
    it = _results.IMapIterator(_Pool())
    it._set(0, (True, [1, 2, 3]))
    it._set(1, (True, [4, 5]))
    assert it.done == 5
    assert next(it) == 1
    assert it.done == 5
    it._set_length(2)
    assert list(it) == [2, 3, 4, 5]
    assert it.done == 5


@pytest.mark.parametrize("cls", [_results.IMapIterator,
                                 _results.IMapUnorderedIterator])
def test_one_item_chunks_ready_together_are_handed_over_in_one_take(cls):
    it = cls(_Pool())
    lock = _CountingLock()
    it._lock = lock
    it._cond = threading.Condition(lock)
    for i in range(200):
        it._set(i, (True, [i]))
    it._set_length(200)
    before = lock.taken
    got = list(it)
    assert sorted(got) == list(range(200))
    # (about one per 64 items, not one per item)
    assert lock.taken - before <= 200 // _results.IMapIterator._BATCH + 3


def test_a_failure_among_ready_one_item_chunks_stays_at_its_position():
    it = _results.IMapIterator(_Pool())
    for i in range(10):
        it._set(i, (False, ValueError(i)) if i == 4 else (True, [i]))
    it._set_length(10)
    got = []
    with pytest.raises(ValueError):
        for x in it:
            got.append(x)
    assert got == [0, 1, 2, 3]
    assert list(it) == [5, 6, 7, 8, 9]


def test_under_buffersize_chunks_are_handed_over_one_at_a_time():
    it = _results.IMapIterator(_Pool(), buffersize=4)
    for i in range(3):
        it._set(i, (True, [i]))
    assert next(it) == 0
    assert it._handed == 1


class _CountingCondition:
    """A Condition that counts notify() calls (over an RLock, so that the
    test can hold it across _set calls and keep a notified consumer from
    waking meanwhile)."""

    def __init__(self):
        self._cond = threading.Condition(threading.RLock())
        self.notified = 0

    def __enter__(self):
        return self._cond.__enter__()

    def __exit__(self, *exc):
        return self._cond.__exit__(*exc)

    def wait(self, timeout=None):
        return self._cond.wait(timeout)

    def notify(self, n=1):
        self.notified += 1
        self._cond.notify(n)

    def notify_all(self):
        self._cond.notify_all()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cls", [_results.IMapIterator,
                                 _results.IMapUnorderedIterator])
def test_results_notify_only_a_waiting_consumer_and_once_until_it_wakes(cls):
    it = cls(_Pool())
    cond = it._cond = _CountingCondition()
    it._lock = cond._cond._lock
    for i in range(5):
        it._set(i, (True, [i]))
    assert cond.notified == 0           # nobody waits
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    got = []
    consumer = threading.Thread(target=lambda: got.extend(it))
    consumer.start()
    deadline = time.monotonic() + 10
    while not it._waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    with cond:
        # several results while the consumer has not woken yet: one notify
        for i in range(5, 10):
            it._set(i, (True, [i]))
        assert cond.notified == 1
    it._set_length(10)
    consumer.join(10)
    assert not consumer.is_alive()
    assert sorted(got) == list(range(5, 10))
