"""Behaviour of multiprocess.queues: Queue, JoinableQueue, SimpleQueue."""
import queue as stdqueue
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import multiprocess as mp
from multiprocess import queues
from .conftest import START_METHODS

METHODS = START_METHODS


class Unpicklable(object):
    def __reduce__(self):
        raise TypeError('refuses to be pickled')


class RecordingQueue(queues.Queue):
    reported = []

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        RecordingQueue.reported.append((type(e), type(obj)))


# -- children ------------------------------------------------------------------

def _echo(inq, outq):
    while True:
        item = inq.get(timeout=30)
        if item is None:
            break
        outq.put(item)


def _produce(q, count):
    for i in range(count):
        q.put(i)


def _produce_and_exit(q, count, size):
    # Exits right away: the feeder must still flush everything buffered.
    for i in range(count):
        q.put(bytes([i % 256]) * size)


def _fill_and_cancel(q):
    q.put(b'x' * (1 << 20))     # more than the pipe can hold
    q.cancel_join_thread()


def _consume_tasks(q, done):
    while True:
        item = q.get(timeout=30)
        if item is None:
            q.task_done()
            break
        done.put(item * 2)
        q.task_done()


def _produce_range(q, start, count):
    for i in range(start, start + count):
        q.put(i)


def _drain_until_none(q, out):
    got = []
    while True:
        item = q.get(timeout=60)
        if item is None:
            break
        got.append(item)
    out.put(got)


def _take_slowly(q, count, delay):
    for _ in range(count):
        time.sleep(delay)
        q.get(timeout=30)


def _simple_echo(inq, outq):
    outq.put(inq.get())


# -- Queue across processes ----------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_queue_round_trip_between_processes(method):
    ctx = mp.get_context(method)
    inq, outq = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_echo, args=(inq, outq))
    p.start()
    items = [1, 'two', (3.0, [4]), {'five': 5}, None]
    for item in items[:-1]:
        inq.put(item)
    inq.put(None)
    got = [outq.get(timeout=30) for _ in items[:-1]]
    p.join(30)
    assert p.exitcode == 0
    assert got == items[:-1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_many_items_from_child_arrive_in_order(method):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_produce, args=(q, 5000))
    p.start()
    got = [q.get(timeout=30) for _ in range(5000)]
    p.join(30)
    assert got == list(range(5000))


@pytest.mark.timeout(120)
def test_buffered_data_is_flushed_when_child_exits():
    q = mp.Queue()
    p = mp.Process(target=_produce_and_exit, args=(q, 20, 100000))
    p.start()
    # The child's target returns long before the 2 MB fit in the pipe: its
    # exit handlers keep the feeder running until everything is written.
    got = [q.get(timeout=30) for _ in range(20)]
    p.join(60)
    assert p.exitcode == 0
    assert [len(b) for b in got] == [100000] * 20
    assert [b[0] for b in got] == list(range(20))


@pytest.mark.timeout(60)
def test_cancel_join_thread_lets_child_exit_with_unsent_data():
    q = mp.Queue()
    p = mp.Process(target=_fill_and_cancel, args=(q,))
    p.start()
    p.join(30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_large_objects_round_trip():
    q = mp.Queue()
    blobs = [b'a' * (1 << 20), b'b' * 70000, b'c', b'd' * (1 << 21)]
    for blob in blobs:
        q.put(blob)
    assert [q.get(timeout=30) for _ in blobs] == blobs


@pytest.mark.timeout(60)
def test_lambda_crosses_the_queue():
    q = mp.Queue()
    q.put(lambda x: x + 1)
    assert q.get(timeout=30)(41) == 42


@pytest.mark.timeout(180)
def test_many_producers_and_consumers_lose_and_duplicate_nothing():
    q, out = mp.Queue(), mp.Queue()
    producers = [mp.Process(target=_produce_range, args=(q, k * 3000, 3000))
                 for k in range(2)]
    consumers = [mp.Process(target=_drain_until_none, args=(q, out))
                 for _ in range(2)]
    for p in producers + consumers:
        p.start()
    for p in producers:
        p.join(60)
    for _ in consumers:
        q.put(None)
    got = out.get(timeout=60) + out.get(timeout=60)
    for p in consumers:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(got) == list(range(6000))


@pytest.mark.timeout(60)
def test_put_on_full_queue_blocks_until_a_consumer_takes_one():
    q = mp.Queue(maxsize=1)
    q.put('first')
    p = mp.Process(target=_take_slowly, args=(q, 1, 0.3))
    p.start()
    start = time.monotonic()
    q.put('second', timeout=30)
    assert time.monotonic() - start >= 0.2
    p.join(30)
    assert q.get(timeout=10) == 'second'


# -- Full / Empty ------------------------------------------------------------

@pytest.mark.timeout(30)
def test_get_on_empty_queue_raises_empty_after_timeout():
    q = mp.Queue()
    start = time.monotonic()
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 5
    with pytest.raises(stdqueue.Empty):
        q.get(False)
    with pytest.raises(stdqueue.Empty):
        q.get_nowait()
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=-1)


@pytest.mark.timeout(30)
def test_put_on_full_queue_raises_full_after_timeout():
    q = mp.Queue(maxsize=2)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    start = time.monotonic()
    with pytest.raises(stdqueue.Full):
        q.put(3, timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 5
    with pytest.raises(stdqueue.Full):
        q.put(3, False)
    with pytest.raises(stdqueue.Full):
        q.put_nowait(3)
    assert q.get(timeout=10) == 1
    q.put(3, timeout=1)
    assert [q.get(timeout=10), q.get(timeout=10)] == [2, 3]
    assert q.qsize() == 0 and not q.full()


@pytest.mark.timeout(30)
def test_empty_reflects_pipe_content():
    q = mp.Queue()
    assert q.empty()
    q.put('x')
    deadline = time.monotonic() + 10
    while q.empty():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert q.get(False) == 'x'
    assert q.empty()


@pytest.mark.timeout(30)
def test_blocked_get_is_woken_by_put_from_thread():
    q = mp.Queue()
    t = threading.Timer(0.1, q.put, args=('late',))
    t.start()
    assert q.get(timeout=10) == 'late'
    t.join()


# -- feeder errors -----------------------------------------------------------

@pytest.mark.timeout(30)
def test_unpicklable_item_is_reported_and_next_item_arrives(capsys):
    q = mp.Queue(maxsize=1)
    q.put(Unpicklable())
    q.put('after')          # the failed item gave its slot back
    assert q.get(timeout=10) == 'after'
    assert q.empty() and q.qsize() == 0
    assert 'refuses to be pickled' in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_feeder_error_hook_receives_exception_and_object():
    RecordingQueue.reported.clear()
    q = RecordingQueue(ctx=mp.get_context())
    q.put(1)
    q.put(Unpicklable())
    q.put(2)
    assert [q.get(timeout=10), q.get(timeout=10)] == [1, 2]
    assert RecordingQueue.reported == [(TypeError, Unpicklable)]


@pytest.mark.timeout(30)
def test_unpicklable_items_inside_a_batch_do_not_drop_neighbours():
    RecordingQueue.reported.clear()
    q = RecordingQueue(ctx=mp.get_context())
    for i in range(300):
        q.put(Unpicklable() if i % 7 == 3 else i)
    expected = [i for i in range(300) if i % 7 != 3]
    assert [q.get(timeout=10) for _ in expected] == expected
    assert len(RecordingQueue.reported) == 300 - len(expected)


# -- close ---------------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize('kind', ['Queue', 'JoinableQueue'])
def test_use_after_close_raises_value_error(kind):
    q = getattr(mp, kind)()
    q.put(1)
    q.close()
    with pytest.raises(ValueError, match='is closed'):
        q.put(2)
    with pytest.raises(ValueError, match='is closed'):
        q.get()
    q.join_thread()
    q.close()           # closing twice is harmless


@pytest.mark.timeout(30)
def test_join_thread_requires_close():
    q = mp.Queue()
    q.put(1)
    with pytest.raises(AssertionError):
        q.join_thread()
    assert q.get(timeout=10) == 1
    q.close()
    q.join_thread()
    assert not q._thread.is_alive()


@pytest.mark.timeout(30)
def test_close_flushes_buffer_before_feeder_exits():
    import os
    from multiprocess.connection import Connection
    q = mp.Queue()
    # close() also closes the queue's own reading end: read through a copy.
    reader = Connection(os.dup(q._reader.fileno()), writable=False)
    for i in range(100):
        q.put(i)
    q.close()
    q.join_thread()
    got = [queues._ForkingPickler.loads(reader.recv_bytes())
           for _ in range(100)]
    assert got == list(range(100))


@pytest.mark.timeout(30)
def test_queue_pickling_outside_spawning_raises_runtime_error():
    import pickle
    with pytest.raises(RuntimeError):
        pickle.dumps(mp.Queue())
    with pytest.raises(RuntimeError):
        pickle.dumps(mp.SimpleQueue())


@pytest.mark.timeout(60)
def test_interpreter_exit_flushes_queued_data():
    script = textwrap.dedent('''
        import multiprocess as mp
        def child(q):
            print(len(q.get(timeout=30)), flush=True)
        if __name__ == '__main__':
            q = mp.Queue()
            p = mp.Process(target=child, args=(q,))
            p.start()
            q.put(b'z' * 500000)
            # no join, no close: exit handlers must flush and then join
    ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '500000'


# -- JoinableQueue -------------------------------------------------------------

@pytest.mark.timeout(30)
def test_task_done_too_many_times_raises_value_error():
    q = mp.JoinableQueue()
    q.put(1)
    q.get(timeout=10)
    q.task_done()
    with pytest.raises(ValueError, match='too many times'):
        q.task_done()
    q.join()            # nothing unfinished: returns at once


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_join_waits_for_workers_to_finish_tasks(method):
    ctx = mp.get_context(method)
    q, done = ctx.JoinableQueue(), ctx.Queue()
    workers = [ctx.Process(target=_consume_tasks, args=(q, done))
               for _ in range(2)]
    for w in workers:
        w.start()
    for i in range(20):
        q.put(i)
    for _ in workers:
        q.put(None)
    q.join()
    assert sorted(done.get(timeout=10) for _ in range(20)) == \
        [2 * i for i in range(20)]
    for w in workers:
        w.join(30)
        assert w.exitcode == 0


# -- SimpleQueue -------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_simple_queue_between_processes(method):
    ctx = mp.get_context(method)
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    p = ctx.Process(target=_simple_echo, args=(inq, outq))
    p.start()
    inq.put({'k': [1, 2]})
    assert outq.get() == {'k': [1, 2]}
    p.join(30)
    assert outq.empty()


@pytest.mark.timeout(30)
def test_simple_queue_close_twice_and_closed_ends():
    q = mp.SimpleQueue()
    q.put(lambda: 'dill')
    assert q.get()() == 'dill'
    q.close()
    q.close()
    assert q._reader.closed and q._writer.closed


@pytest.mark.timeout(30)
def test_simple_queue_is_generic():
    assert mp.queues.SimpleQueue[int] is not None
