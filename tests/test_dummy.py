"""multiprocess.dummy: the package's API backed by threads."""
import threading
import time

import pytest

import multiprocess.dummy as dummy
from multiprocess.dummy import connection


@pytest.mark.timeout(30)
def test_process_is_a_thread_with_exitcode_and_children():
    seen = []
    p = dummy.Process(target=seen.append, args=(1,))
    assert p.exitcode is None
    p.start()
    p.join()
    assert seen == [1] and p.exitcode == 0
    assert isinstance(p, threading.Thread)
    assert p not in dummy.active_children()


@pytest.mark.timeout(30)
def test_active_children_lists_running_threads():
    go = threading.Event()
    p = dummy.Process(target=go.wait)
    p.start()
    try:
        assert p in dummy.active_children()
    finally:
        go.set()
        p.join()
    assert p not in dummy.active_children()


@pytest.mark.timeout(30)
def test_start_from_another_thread_than_the_creator_is_refused():
    p = dummy.Process(target=lambda: None)
    errors = []

    def starter():
        try:
            p.start()
        except RuntimeError as e:
            errors.append(e)
    t = threading.Thread(target=starter)
    t.start()
    t.join()
    assert errors


@pytest.mark.timeout(30)
def test_pool_is_a_thread_pool_sharing_objects():
    shared = []
    with dummy.Pool(3) as p:
        assert p.map(shared.append, range(5)) == [None] * 5
        assert sorted(shared) == list(range(5))
        assert p.apply(lambda: threading.current_thread().name).startswith(
            'ThreadPoolWorker')
        with pytest.raises(ValueError):
            p.imap(abs, [1], chunksize=0)
    p.join()


@pytest.mark.timeout(30)
def test_thread_pool_reraises_without_remote_traceback():
    def boom():
        raise KeyError('k')
    with dummy.Pool(1) as p:
        with pytest.raises(KeyError) as info:
            p.apply(boom)
        assert info.value.__cause__ is None


@pytest.mark.timeout(30)
def test_containers_value_array_namespace_manager():
    v = dummy.Value('i', 3)
    v.value += 1
    assert v.value == 4 and 'Value' in repr(v)
    a = dummy.Array('i', [1, 2, 3])
    a[0] = 9
    assert list(a) == [9, 2, 3]
    ns = dummy.Namespace(x=1, _hidden=2)
    assert repr(ns) == 'Namespace(x=1)'
    m = dummy.Manager()
    assert m.list([1]) == [1] and m.dict(a=1) == {'a': 1}
    q = dummy.JoinableQueue()
    q.put(1)
    assert q.get() == 1
    q.task_done()
    q.join()


@pytest.mark.timeout(30)
def test_pipe_both_directions_and_poll():
    a, b = dummy.Pipe()
    assert not a.poll()
    a.send('ping')
    assert b.poll(1) and b.recv() == 'ping'
    b.send_bytes(b'pong')
    assert a.recv_bytes() == b'pong'
    start = time.monotonic()
    assert not a.poll(0.1)
    assert time.monotonic() - start >= 0.09


@pytest.mark.timeout(30)
def test_listener_and_client_exchange_objects():
    with connection.Listener() as listener:
        results = []

        def server():
            with listener.accept() as conn:
                results.append(conn.recv())
                conn.send('ack')
        t = threading.Thread(target=server)
        t.start()
        with connection.Client(listener.address) as client:
            client.send({'k': 1})
            assert client.recv() == 'ack'
        t.join()
    assert results == [{'k': 1}]
    assert connection.families == [None]
