"""Behaviour of multiprocess.pool beyond what CPython's suite checks:
dead workers, exceptions that resist pickling, dill-only callables,
termination, laziness and memory, and the names pathos relies on."""
import functools
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import multiprocess
from multiprocess import pool as mpool
from multiprocess.exceptions import WorkerLostError, ProcessError
from .conftest import START_METHODS

METHODS = START_METHODS


# -- task functions (module level, so every start method can import them)

def square(x):
    return x * x


def identity(x):
    return x


def sleep_then(x, seconds=0.05):
    time.sleep(seconds)
    return x


def kill_self(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)
    time.sleep(10)


def kill_on(x, target):
    if x == target:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


def exit_now(code):
    os._exit(code)


def my_pid(_=None):
    return os.getpid()


class Unpicklable:
    def __reduce__(self):
        raise TypeError('this object refuses to be pickled')


def return_unpicklable():
    return Unpicklable()


class UnpicklableError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = Unpicklable()


def raise_unpicklable_error():
    raise UnpicklableError('boom')


class NeedsTwoArgs(Exception):
    """Pickles fine, but unpickling calls __init__ with one arg: fails."""

    def __init__(self, a, b):
        super().__init__('%s-%s' % (a, b))


def raise_needs_two_args():
    raise NeedsTwoArgs(1, 2)


def raise_system_exit():
    raise SystemExit(7)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


def raise_value_error(x):
    raise ValueError('bad value %r' % (x,))


def failing_initializer():
    raise RuntimeError('initializer refused')


def children_pids():
    return {p.pid for p in multiprocess.active_children()}


def _wait_dead(pids, timeout=5.0):
    end = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < end:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.02)
    return alive


# -- dead workers

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_sigkilled_worker_fails_map_and_pool_recovers(method):
    ctx = multiprocess.get_context(method)
    with ctx.Pool(2) as p:
        start = time.monotonic()
        with pytest.raises(WorkerLostError) as info:
            p.map(functools.partial(kill_on, target=5), range(20),
                  chunksize=1)
        assert time.monotonic() - start < 5
        err = info.value
        assert isinstance(err, ProcessError)
        assert err.exitcode == -signal.SIGKILL
        assert str(err.pid) in str(err) and 'SIGKILL' in str(err)
        assert p.map(square, range(50)) == [x * x for x in range(50)]
        assert len(p._pool) == 2


@pytest.mark.timeout(60)
def test_sigkilled_worker_fails_apply_async_only_for_its_task():
    with multiprocess.Pool(2) as p:
        slow = [p.apply_async(sleep_then, (i, 0.3)) for i in range(4)]
        doomed = p.apply_async(kill_self)
        start = time.monotonic()
        with pytest.raises(WorkerLostError):
            doomed.get(timeout=5)
        assert time.monotonic() - start < 5
        # tasks queued behind the dead one were re-sent, not lost
        assert [r.get(timeout=10) for r in slow] == [0, 1, 2, 3]
        assert p.apply(square, (7,)) == 49


@pytest.mark.timeout(60)
def test_sigkilled_worker_during_imap_raises_at_its_position():
    with multiprocess.Pool(2) as p:
        it = p.imap(functools.partial(kill_on, target=3), range(8))
        got = []
        start = time.monotonic()
        with pytest.raises(WorkerLostError):
            for value in it:
                got.append(value)
        assert time.monotonic() - start < 5
        assert got == [0, 1, 2]
        assert list(p.imap(square, range(10))) == [x * x for x in range(10)]


@pytest.mark.timeout(60)
def test_worker_os_exit_names_exit_code():
    with multiprocess.Pool(1) as p:
        with pytest.raises(WorkerLostError) as info:
            p.apply(exit_now, (3,))
        assert info.value.exitcode == 3
        assert 'exited with code 3' in str(info.value)
        assert p.apply(square, (3,)) == 9


@pytest.mark.timeout(60)
def test_idle_worker_killed_is_replaced_silently():
    with multiprocess.Pool(2) as p:
        victim = p._pool[0].pid
        os.kill(victim, signal.SIGKILL)
        _wait_dead([victim])
        assert p.map(square, range(20)) == [x * x for x in range(20)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and victim in {w.pid for w in p._pool}:
            time.sleep(0.05)
        assert victim not in {w.pid for w in p._pool}
        assert len(p._pool) == 2


# -- the apply latency path: a caller reads its own result from the worker's
# pipe (lent to it) when the task went to an idle worker and has no callbacks

@pytest.mark.timeout(60)
def test_apply_result_nobody_asks_for_is_delivered_by_the_engine():
    with multiprocess.Pool(2) as p:
        r = p.apply_async(square, (6,))
        assert r._lent is not None          # the latency path was taken
        deadline = time.monotonic() + 5
        # look without get()/ready(), which would read it themselves
        while not r._done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r._done
        assert r.get(timeout=0) == 36
        assert not any(w.lent for w in p._engine.workers)
        assert p.map(square, range(10)) == [x * x for x in range(10)]


@pytest.mark.timeout(60)
def test_ready_polling_sees_a_lent_result():
    with multiprocess.Pool(2) as p:
        r = p.apply_async(square, (3,))
        deadline = time.monotonic() + 5
        while not r.ready() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert r.ready() and r.successful() and r.get() == 9


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_worker_dying_while_its_caller_reads_the_result(method):
    with multiprocess.get_context(method).Pool(2) as p:
        r = p.apply_async(kill_self)
        assert r._lent is not None
        start = time.monotonic()
        with pytest.raises(WorkerLostError):
            r.get(timeout=10)
        assert time.monotonic() - start < 5
        assert [p.apply(square, (i,)) for i in range(5)] == [0, 1, 4, 9, 16]


@pytest.mark.timeout(60)
def test_worker_killed_from_outside_while_its_caller_sleeps_in_get():
    with multiprocess.Pool(1) as p:
        pid = p._pool[0].pid
        r = p.apply_async(time.sleep, (30,))
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        killer.start()
        start = time.monotonic()
        with pytest.raises(WorkerLostError):
            r.get(timeout=10)
        assert time.monotonic() - start < 5
        killer.join()
        assert p.apply(square, (4,)) == 16


@pytest.mark.timeout(60)
def test_lent_get_timing_out_leaves_the_result_to_the_engine():
    with multiprocess.Pool(2) as p:
        r = p.apply_async(sleep_then, (5, 0.5))
        start = time.monotonic()
        with pytest.raises(multiprocess.TimeoutError):
            r.get(timeout=0.1)
        assert 0.09 < time.monotonic() - start < 0.45
        r.wait(0.05)
        assert not r.ready()
        assert r.get(timeout=5) == 5
        assert p.map(square, range(10)) == [x * x for x in range(10)]


@pytest.mark.timeout(60)
def test_callbacks_run_in_the_pool_thread_not_in_the_caller():
    caller = threading.current_thread()
    with multiprocess.Pool(2) as p:
        seen, failed = [], []
        r = p.apply_async(square, (4,),
                          callback=lambda v: seen.append(
                              threading.current_thread()))
        assert r.get(timeout=10) == 16
        r = p.apply_async(raise_value_error, (1,),
                          error_callback=lambda e: failed.append(
                              threading.current_thread()))
        with pytest.raises(ValueError):
            r.get(timeout=10)
        assert seen and seen[0] is not caller
        assert failed and failed[0] is not caller


@pytest.mark.timeout(60)
def test_signal_handler_raising_in_lent_get_leaves_the_pool_working():
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    with multiprocess.Pool(1) as p:
        old = signal.signal(signal.SIGALRM, handler)
        try:
            r = p.apply_async(sleep_then, (7, 0.6))
            assert r._lent is not None
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(Interrupted):
                r.get(timeout=10)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        assert r.get(timeout=10) == 7
        assert p.apply(square, (5,)) == 25


@pytest.mark.timeout(60)
def test_terminate_while_another_thread_reads_a_lent_result():
    p = multiprocess.Pool(1)
    r = p.apply_async(time.sleep, (30,))
    assert r._lent is not None
    out = []

    def waiter():
        try:
            r.get(timeout=20)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    start = time.monotonic()
    p.terminate()
    p.join()
    t.join(10)
    assert not t.is_alive()
    assert time.monotonic() - start < 3
    assert len(out) == 1 and isinstance(out[0], ProcessError)


@pytest.mark.timeout(120)
def test_threads_applying_at_once_each_get_their_own_result():
    with multiprocess.Pool(2) as p:
        errors = []

        def run(k):
            try:
                for i in range(150):
                    x = k * 1000 + i
                    assert p.apply(square, (x,)) == x * x
                    if i % 50 == 0:
                        assert p.map(square, [x, x]) == [x * x] * 2
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors
        assert not any(t.is_alive() for t in threads)


@pytest.mark.timeout(60)
def test_lent_worker_gets_no_other_work_until_its_caller_read():
    with multiprocess.Pool(2) as p:
        r = p.apply_async(sleep_then, (1, 0.3))
        assert r._lent is not None
        lent_pid = [w.pid for w in p._engine.workers if w.lent]
        assert len(lent_pid) == 1
        # map's chunks go to the other worker meanwhile
        assert lent_pid[0] not in p.map(my_pid, range(6), chunksize=1)
        assert r.get(timeout=10) == 1


def _nested_function():
    def inner(x):
        return x + 1
    return inner


def test_apply_payload_of_a_named_function_is_the_reduction_layers():
    from multiprocess.reduction import ForkingPickler
    import pickle
    for call in [(square, (3,), {}), (time.sleep, (0,), {}),
                 (square, (), {'x': 'text'})]:
        fast = mpool._dumps_call(call)
        assert pickle.loads(fast) == pickle.loads(
            bytes(ForkingPickler.dumps(call)))
    # not found again by name: the reduction layer pickles it, by value
    inner = _nested_function()
    func, args, kwds = pickle.loads(mpool._dumps_call((inner, (1,), {})))
    assert func(*args) == 2
    assert inner in mpool._not_by_name


@pytest.mark.timeout(60)
def test_apply_of_nested_functions_and_lambdas_still_works():
    with multiprocess.Pool(2) as p:
        assert p.apply(_nested_function(), (4,)) == 5
        assert p.apply(lambda x: x * 3, (4,)) == 12
        assert p.apply(time.sleep, (0,)) is None

@pytest.mark.timeout(60)
def test_apply_latency_path_with_maxtasksperchild():
    with multiprocess.Pool(2, maxtasksperchild=1) as p:
        pids = [p.apply(my_pid) for _ in range(6)]
        assert len(set(pids)) == 6


@pytest.mark.timeout(60)
def test_apply_works_with_the_spin_turned_off(monkeypatch):
    monkeypatch.setattr(mpool._worker, '_SPIN', 0)
    with multiprocess.Pool(2) as p:
        assert [p.apply(square, (i,)) for i in range(50)] == \
            [i * i for i in range(50)]

# -- ending

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_terminate_while_tasks_run_is_quick_and_leaves_no_child(method):
    ctx = multiprocess.get_context(method)
    p = ctx.Pool(2)
    pids = [w.pid for w in p._pool]
    result = p.map_async(time.sleep, [30] * 10, chunksize=1)
    time.sleep(0.5)
    start = time.monotonic()
    p.terminate()
    p.join()
    assert time.monotonic() - start < 2
    assert not _wait_dead(pids, 1.0)
    assert not (set(pids) & children_pids())
    with pytest.raises(ProcessError):
        result.get(timeout=1)


@pytest.mark.timeout(60)
def test_keyboard_interrupt_in_parent_during_map_stops_pool_cleanly(tmp_path):
    script = tmp_path / 'kbint.py'
    script.write_text(textwrap.dedent('''
        import os, signal, sys, threading, time
        import multiprocess

        def slow(x):
            time.sleep(0.2)
            return x

        if __name__ == '__main__':
            pool = multiprocess.Pool(2)
            pids = [w.pid for w in pool._pool]
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            start = time.monotonic()
            try:
                with pool:
                    pool.map(slow, range(1000), chunksize=1)
            except KeyboardInterrupt:
                pass
            else:
                sys.exit('map was not interrupted')
            pool.join()
            took = time.monotonic() - start
            alive = [pid for pid in pids if os.path.exists('/proc/%d' % pid)]
            print('OK', round(took, 2), alive, multiprocess.active_children())
    '''))
    out = subprocess.run([sys.executable, str(script)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('OK'), out.stdout
    assert out.stdout.split()[2:] == ['[]', '[]']
    assert 'Traceback' not in out.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_engine_does_not_spin_while_workers_exit(method, monkeypatch):
    # A dying worker's sentinel hangs up before it can be reaped; an engine
    # polling it would turn ~100 times a millisecond until then.
    turns = []
    real_wait = mpool._Engine._wait

    def counting_wait(self):
        turns.append(1)
        return real_wait(self)

    monkeypatch.setattr(mpool._Engine, '_wait', counting_wait)
    p = multiprocess.get_context(method).Pool(2)
    assert p.map(square, range(10)) == [x * x for x in range(10)]
    turns.clear()
    p.close()
    p.join()
    assert len(turns) < 20

@pytest.mark.timeout(60)
def test_close_then_join_waits_for_queued_work():
    p = multiprocess.Pool(2)
    results = [p.apply_async(sleep_then, (i, 0.05)) for i in range(10)]
    p.close()
    p.join()
    assert [r.get(timeout=0) for r in results] == list(range(10))


@pytest.mark.timeout(60)
def test_pool_garbage_collected_without_close_stops_workers():
    p = multiprocess.Pool(2)
    pids = [w.pid for w in p._pool]
    assert p.map(square, [1, 2]) == [1, 4]
    p.close()
    del p
    import gc
    gc.collect()
    assert not _wait_dead(pids, 5.0)


# -- exceptions always come back

@pytest.mark.timeout(60)
def test_unpicklable_result_raises_maybe_encoding_error():
    with multiprocess.Pool(2) as p:
        for _ in range(5):
            with pytest.raises(mpool.MaybeEncodingError) as info:
                p.apply(return_unpicklable)
            assert 'refuses to be pickled' in str(info.value)
        # and the pool is intact
        assert p.map(square, range(4)) == [0, 1, 4, 9]


@pytest.mark.timeout(60)
def test_lambda_result_is_fine_with_dill():
    with multiprocess.Pool(1) as p:
        f = p.apply(functools.partial(identity, lambda: 42))
        assert f() == 42


@pytest.mark.timeout(60)
def test_unpicklable_exception_reaches_caller_with_remote_traceback():
    with multiprocess.Pool(1) as p:
        with pytest.raises(Exception) as info:
            p.apply(raise_unpicklable_error)
        err = info.value
        assert 'UnpicklableError' in str(err)
        assert isinstance(err.__cause__, mpool.RemoteTraceback)
        assert 'raise_unpicklable_error' in err.__cause__.tb
        assert p.apply(square, (2,)) == 4


@pytest.mark.timeout(60)
def test_exception_failing_to_unpickle_in_parent_reaches_caller():
    with multiprocess.Pool(1) as p:
        with pytest.raises(Exception) as info:
            p.apply(raise_needs_two_args)
        err = info.value
        assert isinstance(err.__cause__, mpool.RemoteTraceback)
        assert 'NeedsTwoArgs' in err.__cause__.tb
        assert p.apply(square, (2,)) == 4


@pytest.mark.timeout(60)
@pytest.mark.parametrize('func,exc_type', [
    (raise_system_exit, SystemExit),
    (raise_keyboard_interrupt, KeyboardInterrupt),
])
def test_base_exception_in_task_reaches_caller_and_worker_survives(func,
                                                                   exc_type):
    with multiprocess.Pool(1) as p:
        pid = p.apply(my_pid)
        with pytest.raises(exc_type) as info:
            p.apply_async(func).get(timeout=10)
        assert isinstance(info.value.__cause__, mpool.RemoteTraceback)
        assert p.apply(my_pid) == pid


@pytest.mark.timeout(60)
def test_error_callback_gets_the_exception():
    seen = []
    with multiprocess.Pool(2) as p:
        r = p.map_async(raise_value_error, [1, 2], error_callback=seen.append)
        with pytest.raises(ValueError):
            r.get(timeout=10)
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


@pytest.mark.timeout(60)
def test_failing_callback_does_not_kill_the_engine(capsys):
    def bad_callback(_):
        raise RuntimeError('callback bug')
    with multiprocess.Pool(1) as p:
        p.apply_async(square, (3,), callback=bad_callback).wait(10)
        assert p.apply(square, (4,)) == 16


@pytest.mark.timeout(60)
def test_failing_initializer_reaches_the_caller():
    with multiprocess.Pool(2, initializer=failing_initializer) as p:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match='initializer refused'):
            p.map(square, range(4))
        assert time.monotonic() - start < 10


# -- dill reach under every start method

@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_lambdas_closures_partials_cross_to_workers(method):
    offset = 10

    def closure(x):
        return x + offset
    with multiprocess.get_context(method).Pool(2) as p:
        assert p.map(lambda x: x * x, range(5)) == [0, 1, 4, 9, 16]
        assert p.map(closure, range(3)) == [10, 11, 12]
        assert p.apply(functools.partial(pow, 2), (5,)) == 32
        assert list(p.imap_unordered(lambda x: -x, [3])) == [-3]
        assert p.starmap(lambda a, b: a - b, [(5, 1), (7, 2)]) == [4, 5]


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_main_module_classes_and_methods_cross_to_workers(method, tmp_path):
    script = tmp_path / 'main_cls.py'
    script.write_text(textwrap.dedent('''
        import sys
        import multiprocess

        class Scaler:
            def __init__(self, k):
                self.k = k
            def scale(self, x):
                return self.k * x

        if __name__ == '__main__':
            ctx = multiprocess.get_context(sys.argv[1])
            with ctx.Pool(2) as p:
                s = Scaler(3)
                print(p.map(s.scale, range(4)), p.apply(Scaler, (2,)).k)
    '''))
    out = subprocess.run([sys.executable, str(script), method],
                         capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[0, 3, 6, 9] 2'


# -- laziness, memory, worker lifetime

@pytest.mark.timeout(60)
def test_imap_consumes_its_iterable_lazily():
    pulled = []

    def source():
        for i in range(10_000):
            pulled.append(i)
            yield i
    with multiprocess.Pool(2) as p:
        it = p.imap(identity, source(), chunksize=1)
        assert next(it) == 0
        time.sleep(0.3)
        assert len(pulled) < 200      # a bounded look-ahead, not everything
        assert sum(1 for _ in it) == 9_999


@pytest.mark.timeout(120)
def test_million_tiny_tasks_through_imap_unordered_with_flat_memory():
    def rss_kb():
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    with multiprocess.Pool(2) as p:
        list(p.imap_unordered(identity, range(20_000), chunksize=500))
        before = rss_kb()
        total = 0
        count = 0
        for value in p.imap_unordered(identity, range(1_000_000),
                                      chunksize=2_000):
            total += value
            count += 1
        after = rss_kb()
    assert count == 1_000_000
    assert total == sum(range(1_000_000))
    assert after - before < 30_000, (before, after)


@pytest.mark.timeout(60)
def test_maxtasksperchild_replaces_workers():
    with multiprocess.Pool(2, maxtasksperchild=2) as p:
        pids = {p.apply(my_pid) for _ in range(12)}
    assert len(pids) >= 4


@pytest.mark.timeout(60)
def test_map_sends_the_callable_once_per_worker_not_per_chunk():
    calls = []

    class Counted:
        def __reduce__(self):
            calls.append(1)
            return (identity, (0,))

        def __call__(self, x):
            return x
    # a partial whose pickling we count from the parent side
    func = functools.partial(lambda marker, x: x, Counted())
    with multiprocess.Pool(2) as p:
        assert p.map(func, range(100), chunksize=1) == list(range(100))
    assert len(calls) == 1


# -- the surface pathos relies on

# Every name the module offered as one file (pool.py), the standard
# library's module offers (CPython's suite and pathos import from it), or
# our tests reach for.
POOL_MODULE_NAMES = (
    'ApplyResult', 'AsyncResult', 'CLOSE', 'ExceptionWithTraceback',
    'IMapIterator', 'IMapUnorderedIterator', 'INIT', 'MapResult',
    'MaybeEncodingError', 'Pool', 'ProcessError', 'RUN', 'RemoteTraceback',
    'TERMINATE', 'ThreadPool', 'TimeoutError', 'WorkerLostError',
    '_helper_reraises_exception', 'job_counter', 'mapstar', 'rebuild_exc',
    'starmapstar', 'util', 'worker',
    '_Engine', '_dumps_call', '_dumps_chunk', '_loads_chunk', '_not_by_name',
)


def test_pool_package_keeps_every_name_of_the_pool_module():
    missing = [name for name in POOL_MODULE_NAMES if not hasattr(mpool, name)]
    assert not missing
    assert mpool.__all__ == ['Pool', 'ThreadPool']
    assert mpool.TimeoutError is multiprocess.TimeoutError
    for name in ('Pool', 'ThreadPool', 'ApplyResult', 'MapResult',
                 'IMapIterator', 'IMapUnorderedIterator', 'RemoteTraceback',
                 'MaybeEncodingError', 'worker'):
        assert getattr(mpool, name).__module__ == 'multiprocess.pool', name


def test_pool_exceptions_pickle_by_the_public_module():
    err = pickle.loads(pickle.dumps(mpool.MaybeEncodingError('why', 'v')))
    assert type(err) is mpool.MaybeEncodingError and err.value == 'v'
    data = pickle.dumps(mpool.RemoteTraceback('t'))
    assert b'multiprocess.pool' in data and b'_errors' not in data


def test_pool_frame_format_comes_from_the_native_core():
    import _multiprocess
    from multiprocess.pool import _wire
    assert _wire._HEADER.size == _multiprocess.POOL_HEADER
    assert _wire._BIG_FRAME == _multiprocess.POOL_BIG
    kinds = {name[len('POOL_'):]: value
             for name, value in vars(_multiprocess).items()
             if name.startswith('POOL_K_')}
    assert kinds and all(getattr(_wire, '_' + kind) == value
                         for kind, value in kinds.items())
    assert len(set(kinds.values())) == len(kinds)

def test_names_pathos_imports_exist():
    for name in ('Pool', 'ApplyResult', 'MapResult', 'IMapIterator',
                 'IMapUnorderedIterator', 'AsyncResult', 'ThreadPool',
                 'RUN', 'CLOSE', 'TERMINATE', 'MaybeEncodingError',
                 'worker', 'mapstar', 'starmapstar', 'RemoteTraceback'):
        assert hasattr(mpool, name), name
    assert (mpool.RUN, mpool.CLOSE, mpool.TERMINATE) == (
        'RUN', 'CLOSE', 'TERMINATE')
    assert mpool.mapstar((square, [1, 2])) == [1, 4]
    assert mpool.starmapstar((pow, [(2, 3)])) == [8]


@pytest.mark.timeout(60)
@pytest.mark.parametrize('cls', [mpool.Pool, mpool.ThreadPool])
def test_state_repr_and_misuse_errors(cls):
    p = cls(2)
    try:
        assert p._state == 'RUN'
        assert repr(p) == '<multiprocess.pool.%s state=RUN pool_size=2>' % (
            cls.__name__)
        p.ncpus = 2                 # pathos stores its own attributes
        p._kwds = {}
        assert not hasattr(cls, 'ncpus') and not hasattr(cls, '_kwds')
        with pytest.raises(ValueError):
            p.join()
        for bad in (0, -1):
            with pytest.raises(ValueError):
                p.imap(square, [1], chunksize=bad)
            with pytest.raises(ValueError):
                p.imap_unordered(square, [1], chunksize=bad)
        p.close()
        assert p._state == 'CLOSE'
        for call in (lambda: p.apply(square, (1,)),
                     lambda: p.map(square, [1]),
                     lambda: p.imap(square, [1]),
                     lambda: p.apply_async(square, (1,))):
            with pytest.raises(ValueError):
                call()
        p.join()
    finally:
        p.terminate()
    assert p._state == 'TERMINATE'


@pytest.mark.timeout(60)
def test_async_result_api():
    with multiprocess.Pool(1) as p:
        r = p.apply_async(sleep_then, (5, 0.5))
        assert not r.ready()
        with pytest.raises(ValueError):
            r.successful()
        with pytest.raises(multiprocess.TimeoutError):
            r.get(timeout=0.05)
        r.wait()
        assert r.ready() and r.successful() and r.get() == 5
        it = p.imap(sleep_then, [1, 2])
        assert it.next(timeout=5) == 1
        assert next(it) == 2
        with pytest.raises(StopIteration):
            it.next(timeout=1)


# -- the native engine

def test_poolengine_c_never_returns_with_the_gil_released():
    """A return (or goto) between Py_BEGIN_ALLOW_THREADS and
    Py_END_ALLOW_THREADS would leave the thread state dangling."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, '..', '_multiprocess', 'poolengine.c')
    if not os.path.exists(path):
        # installed as multiprocess.tests from a wheel: no C sources
        pytest.skip('poolengine.c is not shipped next to the tests')
    inside = False
    with open(path) as f:
        for number, line in enumerate(f, 1):
            code = line.split('//')[0]
            if 'Py_BEGIN_ALLOW_THREADS' in code:
                assert not inside, 'nested at line %d' % number
                inside = True
            elif 'Py_END_ALLOW_THREADS' in code:
                assert inside, 'unpaired at line %d' % number
                inside = False
            elif inside:
                assert 'return' not in code and 'goto' not in code, \
                    'leaves the GIL released at line %d' % number
                assert 'Py' not in code, \
                    'Python API without the GIL at line %d' % number
    assert not inside


@pytest.mark.timeout(60)
def test_thread_pool_terminate_fails_pending_results():
    release = threading.Event()
    p = mpool.ThreadPool(1)
    running = p.apply_async(release.wait, (30,))
    queued = p.apply_async(square, (3,))
    time.sleep(0.1)
    p.terminate()
    with pytest.raises(ProcessError):
        queued.get(timeout=5)
    release.set()
    p.join()
    with pytest.raises(ProcessError):
        running.get(timeout=5)


def digest(b):
    import zlib
    return len(b), zlib.crc32(b)


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_big_bytes_arguments_arrive_whole_and_in_order(method):
    # big bytes travel out of band, written from the caller's objects;
    # mixed with small frames (JOBDEF, small chunks) the stream must keep
    # its order, and a repeated object stays one object in the worker
    big = [bytes([i]) * (70_000 + 300_000 * (i % 3)) for i in range(12)]
    same = big[0]
    args = big + [b'small', same, same, 7, 'text'] + big[::-1]
    with multiprocess.get_context(method).Pool(2) as p:
        want = [digest(a) if isinstance(a, bytes) else None for a in args]
        got = p.map(digest_or_none, args, chunksize=3)
        assert got == want
        assert p.map(identity, [same, same], chunksize=2) == [same, same]
        assert p.apply(digest, (big[5],)) == digest(big[5])
        assert p.starmap(pair_len, [(big[1], big[2])] * 3) == \
            [len(big[1]) + len(big[2])] * 3


def digest_or_none(x):
    return digest(x) if isinstance(x, bytes) else None


def pair_len(a, b):
    return len(a) + len(b)


def test_big_chunk_round_trip_without_a_pool():
    b = b'x' * 100_000
    parts = mpool._dumps_chunk([b, 1, b, b'y' * 70_000, 'z'])
    assert isinstance(parts, tuple) and len(parts) == 4
    back = mpool._loads_chunk(bytearray(b''.join(parts)))
    assert back == [b, 1, b, b'y' * 70_000, 'z'] and back[0] is back[2]
    assert isinstance(mpool._dumps_chunk([b'small', 2]), bytes)


# -- messages users match on -------------------------------------------------

@pytest.mark.timeout(60)
def test_unclosed_running_pool_warns_with_the_stdlib_text():
    # Warning filters written for multiprocessing must catch ours too.
    import gc
    import warnings
    p = multiprocess.Pool(1)
    p.terminate()
    p.join()
    p._state = mpool.RUN            # as if it had been left running
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        del p
        gc.collect()
    texts = [str(w.message) for w in caught
             if issubclass(w.category, ResourceWarning)]
    assert len(texts) == 1
    assert texts[0].startswith('unclosed running multiprocessing pool <')
