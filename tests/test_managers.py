"""Managers and proxies: behaviour pinned down beyond CPython's suite."""
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocess as mp
from multiprocess import managers
from multiprocess.managers import (BaseManager, BaseProxy, RemoteError,
                                   SyncManager, State, Token)
from .conftest import START_METHODS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope='module')
def manager():
    m = SyncManager()
    m.start()
    yield m
    m.shutdown()


def wait_for_objects(manager, expected, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        n = manager._number_of_objects()
        if n == expected or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


# ------------------------------------------------------------ basic types

@pytest.mark.timeout(60)
def test_dict_list_namespace_value_array_round_trip(manager):
    d = manager.dict(a=1)
    d['b'] = 2
    assert d.copy() == {'a': 1, 'b': 2}
    assert sorted(d.keys()) == ['a', 'b']
    lst = manager.list([1, 2])
    lst += [3]
    lst *= 2
    assert lst[:] == [1, 2, 3, 1, 2, 3]
    ns = manager.Namespace(x=1)
    ns.y = 2
    ns._local = 3
    assert (ns.x, ns.y, ns._local) == (1, 2, 3)
    assert str(ns) == 'Namespace(x=1, y=2)'
    v = manager.Value('i', 5)
    v.value += 1
    assert v.get() == 6
    a = manager.Array('d', [1.0, 2.0])
    a[1] = 5.0
    assert (len(a), a[1]) == (2, 5.0)


@pytest.mark.timeout(60)
def test_managed_dict_holds_lambda_and_closure(manager):
    d = manager.dict()
    offset = 10
    d['f'] = lambda x: x + offset
    assert d['f'](1) == 11


@pytest.mark.timeout(60)
def test_method_raising_comes_back_as_same_exception(manager):
    d = manager.dict()
    with pytest.raises(KeyError):
        d['missing']


@pytest.mark.timeout(60)
def test_unexposed_method_raises_remote_error_with_traceback(manager):
    d = manager.dict()
    with pytest.raises(RemoteError) as info:
        d._callmethod('not_a_method')
    text = str(info.value)
    assert 'Traceback' in text and 'not_a_method' in text


@pytest.mark.timeout(60)
def test_getvalue_returns_a_copy(manager):
    lst = manager.list([1, 2])
    copy = lst._getvalue()
    copy.append(3)
    assert copy == [1, 2, 3] and lst[:] == [1, 2]


@pytest.mark.timeout(60)
def test_dict_iteration_yields_keys_through_iterator_proxy(manager):
    d = manager.dict.__call__({'a': 1, 'b': 2})
    it = iter(d)
    assert isinstance(it, managers.IteratorProxy)
    assert list(it) == ['a', 'b']


# -------------------------------------------------------- nested proxies

@pytest.mark.timeout(60)
def test_proxy_inside_managed_list_refers_to_same_object(manager):
    inner = manager.dict(x=1)
    outer = manager.list([inner])
    outer[0]['y'] = 2
    assert inner.copy() == {'x': 1, 'y': 2}


@pytest.mark.timeout(60)
def test_nested_proxy_survives_dropping_the_original(manager):
    outer = manager.dict()
    outer['inner'] = manager.list([1])
    gc.collect()
    got = outer['inner']
    outer.clear()            # the server drops its copy right away
    got.append(2)
    assert got[:] == [1, 2]


# ------------------------------------------------------ reference counts

@pytest.mark.timeout(60)
def test_objects_are_released_when_proxies_go_away():
    with SyncManager() as m:
        base = m._number_of_objects()
        d = m.dict()
        lst = m.list([d])
        it = iter(d)
        assert m._number_of_objects() == base + 3
        del d, lst, it
        assert wait_for_objects(m, base) == base


def _hold_and_report(proxy, q, ready, go):
    ready.set()              # by now the child holds its own reference
    go.wait(30)
    q.put(proxy[:])


@pytest.mark.timeout(90)
@pytest.mark.parametrize('method', START_METHODS)
def test_proxy_passed_to_child_keeps_object_alive(method):
    ctx = mp.get_context(method)
    with SyncManager(ctx=ctx) as m:
        lst = m.list([1, 2, 3])
        q, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
        p = ctx.Process(target=_hold_and_report, args=(lst, q, ready, go))
        p.start()
        assert ready.wait(60)
        if method == 'fork':
            # the forked child took a reference of its own at start
            del lst
            gc.collect()
        go.set()
        assert q.get(timeout=60) == [1, 2, 3]
        p.join(30)
        assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_proxy_pickles_within_process_to_same_referent(manager):
    d = manager.dict(k=1)
    d2 = pickle.loads(pickle.dumps(d))
    d2['k'] = 2
    assert d['k'] == 2


@pytest.mark.timeout(60)
def test_proxies_share_one_connection_per_thread(manager):
    d, lst = manager.dict(), manager.list()
    d['a'] = 1
    lst.append(1)
    assert d._tls.connection is lst._tls.connection


@pytest.mark.timeout(60)
def test_proxy_usable_from_several_threads(manager):
    import threading
    lst = manager.list()

    def work(n):
        for i in range(50):
            lst.append(n)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(lst[:]) == sorted(list(range(4)) * 50)


# ----------------------------------------------------------- registration

class Counter:
    def __init__(self, start=0):
        self.n = start

    def bump(self, by=1):
        self.n += by
        return self.n

    def _secret(self):
        return 'hidden'

    def twin(self):
        return Counter(self.n)

    def lock(self):
        import threading
        return threading.Lock()          # cannot be pickled into a reply


class CounterProxy(BaseProxy):
    _exposed_ = ('bump', 'twin')
    _method_to_typeid_ = {'twin': 'CounterResult'}

    def bump(self, by=1):
        return self._callmethod('bump', (by,))

    def twin(self):
        return self._callmethod('twin')


class MyManager(BaseManager):
    pass


MyManager.register('Counter', Counter, CounterProxy)
MyManager.register('CounterResult', proxytype=CounterProxy,
                   create_method=False)
MyManager.register('AutoCounter', Counter)
MyManager.register('Hidden', Counter, exposed=('_secret',))
MyManager.register('NoMethod', Counter, create_method=False)


@pytest.mark.timeout(60)
def test_register_custom_proxy_and_method_to_typeid():
    with MyManager() as m:
        c = m.Counter(5)
        assert c.bump() == 6
        t = c.twin()
        assert isinstance(t, CounterProxy)
        assert t.bump(10) == 16 and c.bump() == 7


@pytest.mark.timeout(60)
def test_register_autoproxy_exposes_public_methods_only():
    with MyManager() as m:
        c = m.AutoCounter(1)
        assert hasattr(c, 'bump') and not hasattr(c, '_secret')
        assert c.bump(2) == 3
        h = m.Hidden()
        assert h._secret() == 'hidden'
        assert not hasattr(m, 'NoMethod')


@pytest.mark.timeout(60)
def test_manager_state_errors():
    m = SyncManager()
    with pytest.raises(TypeError):
        m.start(1)
    m.start()
    try:
        with pytest.raises(mp.ProcessError):
            m.start()
        with pytest.raises(mp.ProcessError):
            m.get_server()
    finally:
        m.shutdown()
    assert m._state.value == State.SHUTDOWN
    assert m._process.exitcode == 0


def _init(ns):
    ns.ready = True


@pytest.mark.timeout(60)
def test_start_runs_initializer_in_server(manager):
    ns = manager.Namespace(ready=False)
    m = SyncManager()
    m.start(_init, (ns,))
    m.shutdown()
    assert ns.ready is True


@pytest.mark.timeout(60)
def test_token_repr_and_pickle():
    t = Token('dict', ('127.0.0.1', 5), 'a1')
    assert repr(t) == "Token(typeid='dict', address=('127.0.0.1', 5), id='a1')"
    t2 = pickle.loads(pickle.dumps(t))
    assert (t2.typeid, t2.address, t2.id) == ('dict', ('127.0.0.1', 5), 'a1')


def test_convert_to_error_kinds():
    e = ValueError('x')
    assert managers.convert_to_error('#ERROR', e) is e
    assert isinstance(managers.convert_to_error('#TRACEBACK', 'tb\n'), RemoteError)
    assert isinstance(managers.convert_to_error('#UNSERIALIZABLE', 'tb\n'), RemoteError)
    assert isinstance(managers.convert_to_error('#WHAT', None), ValueError)


class _ServerError(Exception):
    pass


class _FakeConnection:
    def send(self, message):
        pass

    def recv(self):
        return '#ERROR', _ServerError('raised by the server')


def _weak_ref_to_raised(call, exc_type):
    import weakref
    try:
        call()
    except exc_type as e:
        return weakref.ref(e)
    raise AssertionError('nothing raised')


def _without_gc(func):
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return func()
    finally:
        if was_enabled:
            gc.enable()


def test_dispatch_error_is_freed_without_the_cycle_collector():
    ref = _without_gc(lambda: _weak_ref_to_raised(
        lambda: managers.dispatch(_FakeConnection(), None, 'x'), _ServerError))
    assert ref() is None


@pytest.mark.timeout(60)
def test_proxy_call_error_is_freed_without_the_cycle_collector(manager):
    import queue
    q = manager.Queue()
    ref = _without_gc(lambda: _weak_ref_to_raised(q.get_nowait, queue.Empty))
    assert ref() is None
    ref = _without_gc(lambda: _weak_ref_to_raised(
        lambda: q._callmethod('get_nowait'), queue.Empty))
    assert ref() is None


# ------------------------------------------------------------ pool, shm

@pytest.mark.timeout(90)
def test_pool_through_manager_maps_lambda(manager):
    with manager.Pool(2) as p:
        assert p.map(lambda x: x * 2, range(5)) == [0, 2, 4, 6, 8]
        r = p.apply_async(pow, (2, 5))
        assert r.get(timeout=30) == 32


@pytest.mark.timeout(60)
def test_shared_memory_manager_unlinks_segments_at_shutdown():
    from multiprocess import shared_memory
    with managers.SharedMemoryManager() as smm:
        shm = smm.SharedMemory(64)
        sl = smm.ShareableList([1, 'two'])
        names = (shm.name, sl.shm.name)
        assert sl[1] == 'two'
        shm.close()
        sl.shm.close()
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name)


def test_shared_memory_manager_refuses_before_start():
    smm = managers.SharedMemoryManager()
    with pytest.raises(ValueError):
        smm.SharedMemory(8)


# -------------------------------------------------------- __main__ types

@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_managed_dict_holds_main_class_instance_and_lambda(method):
    script = textwrap.dedent(f'''
        import multiprocess as mp

        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def norm1(self):
                return abs(self.x) + abs(self.y)

        def child(d):
            d['seen'] = (d['p'].norm1(), d['f'](3))

        if __name__ == '__main__':
            ctx = mp.get_context({method!r})
            with ctx.Manager() as m:
                d = m.dict()
                d['p'] = Point(2, -5)
                d['f'] = lambda v: v * 7
                p = ctx.Process(target=child, args=(d,))
                p.start(); p.join(30)
                print(p.exitcode, d['seen'], type(d['p']).__name__)
    ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '0 (7, 21) Point'


@pytest.mark.timeout(60)
def test_sync_proxies_barrier_attributes_event_condition(manager):
    b = manager.Barrier(3)
    assert (b.parties, b.n_waiting, b.broken) == (3, 0, False)
    e = manager.Event()
    assert e.wait(0.01) is False
    e.set()
    assert e.is_set() and e.wait()
    c = manager.Condition()
    with c:
        assert c.wait_for(lambda: True, timeout=0.1) is True
        assert c.wait_for(lambda: False, timeout=0.05) is False
    s = manager.Semaphore(1)
    assert s.acquire(timeout=1) is True
    assert s.acquire(False) is False
    s.release()


@pytest.mark.timeout(60)
def test_unpicklable_result_raises_remote_error_and_connection_survives():
    with MyManager() as m:
        c = m.AutoCounter(1)
        with pytest.raises(RemoteError) as info:
            c.lock()
        assert 'Unserializable' in str(info.value)
        assert c.bump() == 2


@pytest.mark.timeout(90)
def test_manager_restarted_at_same_address_serves_new_objects(tmp_path):
    address = str(tmp_path / 'mgr.sock')
    first = SyncManager(address=address)
    first.start()
    d = first.dict(a=1)
    assert d['a'] == 1
    first.shutdown()
    second = SyncManager(address=address)
    second.start()
    try:
        d2 = second.dict(b=2)
        assert d2.copy() == {'b': 2}
        with pytest.raises(Exception):
            d['a']                     # a proxy of the old server stays dead
    finally:
        second.shutdown()


class LoggingListProxy(managers.ListProxy):
    calls = []

    def _callmethod(self, methodname, args=(), kwds={}):
        LoggingListProxy.calls.append(methodname)
        return super()._callmethod(methodname, args, kwds)


class LoggingManager(BaseManager):
    pass


LoggingManager.register('list', list, LoggingListProxy)


@pytest.mark.timeout(60)
def test_generated_methods_go_through_overridden_callmethod():
    with LoggingManager() as m:
        lst = m.list()
        lst.append(1)
        assert len(lst) == 1
        assert LoggingListProxy.calls[-2:] == ['append', '__len__']


@pytest.mark.timeout(60)
def test_local_manager_calls_travel_over_pipes(manager):
    import stat
    d = manager.dict()
    d['x'] = 1
    conn = d._tls.connection
    assert isinstance(conn, managers._PipePair)
    for end in (conn.reader, conn.writer):
        assert stat.S_ISFIFO(os.fstat(end.fileno()).st_mode)


@pytest.mark.timeout(60)
def test_tcp_manager_calls_stay_on_the_socket():
    with SyncManager(address=('127.0.0.1', 0)) as m:
        d = m.dict()
        d['x'] = 1
        assert not isinstance(d._tls.connection, managers._PipePair)
        assert d['x'] == 1


@pytest.mark.timeout(60)
def test_use_pipes_refused_over_tcp_keeps_connection_usable():
    from multiprocess import connection
    with SyncManager(address=('127.0.0.1', 0)) as m:
        conn = connection.Client(m.address, authkey=m._authkey)
        with conn:
            with pytest.raises(RemoteError):
                managers.dispatch(conn, None, 'use_pipes')
            assert managers.dispatch(conn, None, 'number_of_objects') == 0


def _append_from_threads(lst, n):
    import threading
    threads = [threading.Thread(target=lst.append, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.timeout(90)
def test_calls_from_short_lived_threads_and_children_share_one_list():
    with SyncManager() as m:
        lst = m.list()
        _append_from_threads(lst, 8)
        p = mp.get_context('fork').Process(target=_append_from_threads,
                                           args=(lst, 4))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert sorted(lst[:]) == sorted(list(range(8)) + list(range(4)))


def _start_manager_and_report(method, conn):
    manager = mp.get_context(method).Manager()
    shared = manager.list([1, 2])
    conn.send((manager._process.pid, shared[1]))
    time.sleep(60)      # killed long before


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped by init) counts as gone
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.timeout(90)
@pytest.mark.parametrize('method', START_METHODS)
def test_manager_stops_when_its_parent_is_killed(method):
    # Its parent's exit handlers would shut it down; SIGKILL skips them, and
    # an orphaned server would live for ever.  It must notice and exit.
    here, there = mp.Pipe()
    middle = mp.get_context('fork').Process(
        target=_start_manager_and_report, args=(method, there))
    middle.start()
    assert here.poll(60), 'the manager did not start'
    server_pid, value = here.recv()
    assert value == 2
    time.sleep(1.5)
    assert _pid_alive(server_pid), 'the manager stopped while its parent lived'
    os.kill(middle.pid, 9)
    middle.join(10)
    deadline = time.monotonic() + 20
    while _pid_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = not _pid_alive(server_pid)
    if not gone:
        os.kill(server_pid, 9)
    assert gone, 'the manager outlived its killed parent by 20 s'


@pytest.mark.timeout(120)
def test_shutdown_logs_the_documented_lines():
    # The library documentation's logging example shows these lines; the
    # escalation to terminate() is logged in the stdlib's words too.
    script = textwrap.dedent('''
        import logging, signal, sys, time
        import multiprocess as mp
        from multiprocess import managers
        mp.log_to_stderr(logging.INFO)
        m = mp.Manager()
        m.shutdown()
        print('second manager', file=sys.stderr, flush=True)
        # a server slow to exit after the request, that ignores SIGTERM
        def stubborn():
            from multiprocess import util
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            util.Finalize(None, time.sleep, args=(30,), exitpriority=100)
        m = managers.SyncManager(shutdown_timeout=0.5)
        m.start(stubborn)
        m.shutdown()
    ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    first, _, second = out.stderr.partition('second manager')
    assert '[INFO/MainProcess] sending shutdown message to manager' in first
    assert 'manager still alive' not in first
    for line in ('sending shutdown message to manager', 'manager still alive',
                 'trying to `terminate()` manager process',
                 'manager still alive after terminate'):
        assert '[INFO/MainProcess] ' + line in second, (line, out.stderr)


def test_managers_module_keeps_its_names_after_the_split():
    # the server and the proxies live in their own modules; the public
    # module still offers every name it did, under its own name
    for name in ('BaseManager', 'SyncManager', 'BaseProxy', 'Token', 'State',
                 'Server', 'RemoteError', 'dispatch', 'convert_to_error',
                 'listener_client', 'all_methods', 'public_methods',
                 'reduce_array', 'rebuild_as_list', 'RebuildProxy',
                 'MakeProxyType', 'AutoProxy', 'Namespace', 'Value', 'Array',
                 'IteratorProxy', 'AcquirerProxy', 'ConditionProxy',
                 'EventProxy', 'BarrierProxy', 'NamespaceProxy',
                 'ValueProxy', 'BaseListProxy', 'ListProxy', 'DictProxy',
                 'ArrayProxy', 'BasePoolProxy', 'PoolProxy',
                 'SharedMemoryManager', 'HAS_SHMEM', 'format_exc',
                 'get_spawning_popen', '_PipePair'):
        assert hasattr(managers, name), name
    for name in ('Token', 'Server', 'BaseProxy', 'DictProxy', 'RemoteError',
                 'RebuildProxy'):
        assert getattr(managers, name).__module__ == 'multiprocess.managers'
