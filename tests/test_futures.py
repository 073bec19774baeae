"""multiprocess.futures.ProcessPoolExecutor: the standard library's executor
API with dill's reach, where a dead worker fails only its own future."""
import concurrent.futures as cf
import multiprocessing
import os
import signal
import time

import pytest

import multiprocess
from multiprocess.futures import BrokenProcessPool, ProcessPoolExecutor

pytestmark = pytest.mark.timeout(120)


def _square(x):
    return x * x


def _write_pid_and_sleep(path):
    with open(path + '.tmp', 'w') as f:
        f.write(str(os.getpid()))
    os.rename(path + '.tmp', path)
    time.sleep(60)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _raise(message):
    raise KeyError(message)


def _fail_init():
    raise RuntimeError('no database')


_state = {}


def _remember(value):
    _state['value'] = value


def _recall():
    return _state.get('value')


@pytest.fixture
def executor():
    with ProcessPoolExecutor(2) as ex:
        yield ex


def test_runs_lambdas_and_closures(executor):
    offset = 10
    assert executor.submit(lambda x: x + offset, 5).result(timeout=30) == 15
    assert list(executor.map(lambda a, b: a * b, range(5), range(5))) == \
        [0, 1, 4, 9, 16]


def test_futures_are_concurrent_futures(executor):
    futures = [executor.submit(_square, i) for i in range(10)]
    assert all(isinstance(f, cf.Future) for f in futures)
    done, not_done = cf.wait(futures, timeout=30)
    assert not not_done
    assert sorted(f.result() for f in cf.as_completed(futures)) == \
        [i * i for i in range(10)]


def test_exception_of_a_call_comes_back_with_remote_traceback(executor):
    future = executor.submit(_raise, 'boom')
    with pytest.raises(KeyError, match='boom') as info:
        future.result(timeout=30)
    assert '_raise' in str(info.value.__cause__)


def test_dead_worker_fails_only_its_own_future_and_executor_goes_on(executor):
    others = [executor.submit(_square, i) for i in range(20)]
    victim = executor.submit(_die)
    with pytest.raises(multiprocess.WorkerLostError):
        victim.result(timeout=30)
    assert [f.result(timeout=30) for f in others] == \
        [i * i for i in range(20)]
    assert executor.submit(_square, 7).result(timeout=30) == 49


def test_sigkilled_worker_from_outside_fails_its_future(executor, tmp_path):
    marker = tmp_path / 'pid'
    victim = executor.submit(_write_pid_and_sleep, str(marker))
    others = [executor.submit(_square, i) for i in range(10)]
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    with pytest.raises(multiprocess.WorkerLostError):
        victim.result(timeout=30)
    assert [f.result(timeout=30) for f in others] == \
        [i * i for i in range(10)]
    assert executor.submit(_square, 3).result(timeout=30) == 9


def test_map_chunksize_timeout_and_order(executor):
    assert list(executor.map(_square, range(100), chunksize=7)) == \
        [i * i for i in range(100)]
    results = executor.map(time.sleep, [5], timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        next(results)


def test_map_with_buffersize_reads_an_endless_iterable_lazily(executor):
    read = []

    def numbers():
        n = 0
        while True:
            read.append(n)
            yield n
            n += 1

    results = executor.map(_square, numbers(), buffersize=4)
    assert [next(results) for _ in range(10)] == [i * i for i in range(10)]
    assert len(read) <= 14
    results.close()


def test_map_validates_its_arguments(executor):
    with pytest.raises(ValueError):
        executor.map(_square, range(3), chunksize=0)
    with pytest.raises(ValueError):
        executor.map(_square, range(3), buffersize=0)
    with pytest.raises(TypeError):
        executor.map(_square, range(3), buffersize=2.0)


def test_map_raises_the_failing_call_at_its_position(executor):
    results = executor.map(lambda x: 1 // (x - 2), range(4))
    assert next(results) == -1
    assert next(results) == -1
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_pending_futures_can_be_cancelled():
    with ProcessPoolExecutor(1) as ex:
        blocker = ex.submit(time.sleep, 0.5)
        queued = [ex.submit(_square, i) for i in range(10)]
        assert queued[-1].cancel()
        assert queued[-1].cancelled()
        assert blocker.result(timeout=30) is None
        assert [f.result(timeout=30) for f in queued[:-1]] == \
            [i * i for i in range(9)]


def test_shutdown_cancel_futures_and_submit_afterwards():
    ex = ProcessPoolExecutor(1)
    blocker = ex.submit(time.sleep, 0.5)
    queued = [ex.submit(_square, i) for i in range(10)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert blocker.done() and blocker.result() is None
    assert queued[-1].cancelled()
    with pytest.raises(RuntimeError, match='after shutdown'):
        ex.submit(_square, 1)
    ex.shutdown()           # again: nothing more


def test_shutdown_without_wait_still_completes_the_work():
    ex = ProcessPoolExecutor(2)
    futures = [ex.submit(_square, i) for i in range(30)]
    ex.shutdown(wait=False)
    assert [f.result(timeout=30) for f in futures] == \
        [i * i for i in range(30)]


def test_initializer_runs_in_every_worker():
    with ProcessPoolExecutor(2, initializer=_remember,
                             initargs=('set',)) as ex:
        assert ex.submit(_recall).result(timeout=30) == 'set'


def test_failing_initializer_breaks_the_executor():
    ex = ProcessPoolExecutor(2, initializer=_fail_init)
    try:
        future = ex.submit(_square, 2)
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            ex.submit(_square, 3)
    finally:
        ex.shutdown()


@pytest.mark.parametrize('how', ['terminate_workers', 'kill_workers'])
def test_terminate_and_kill_workers_stop_everything(how):
    ex = ProcessPoolExecutor(2)
    running = [ex.submit(time.sleep, 60) for _ in range(2)]
    queued = [ex.submit(_square, i) for i in range(6)]
    time.sleep(0.3)
    procs = list(ex._processes.values())
    started = time.monotonic()
    getattr(ex, how)()
    for f in running:
        with pytest.raises(BrokenProcessPool):
            f.result(timeout=30)
    for f in queued:
        assert f.cancelled() or isinstance(f.exception(timeout=30),
                                           BrokenProcessPool)
    assert time.monotonic() - started < 20
    for p in procs:
        p.join(10)
        assert not p.is_alive()
    with pytest.raises((RuntimeError, BrokenProcessPool)):
        ex.submit(_square, 1)
    ex.shutdown()


def test_max_tasks_per_child_replaces_workers():
    with ProcessPoolExecutor(1, max_tasks_per_child=2) as ex:
        assert ex._mp_context.get_start_method() == 'spawn'
        pids = [ex.submit(os.getpid).result(timeout=60) for _ in range(4)]
    assert len(set(pids)) == 2


def test_constructor_checks_like_the_standard_library():
    with pytest.raises(ValueError):
        ProcessPoolExecutor(0)
    with pytest.raises(TypeError):
        ProcessPoolExecutor(1, initializer=5)
    with pytest.raises(TypeError):
        ProcessPoolExecutor(1, max_tasks_per_child='3')
    with pytest.raises(ValueError):
        ProcessPoolExecutor(1, max_tasks_per_child=0)
    with pytest.raises(ValueError, match='fork'):
        ProcessPoolExecutor(1, mp_context=multiprocess.get_context('fork'),
                            max_tasks_per_child=1)


def test_accepts_a_multiprocessing_context():
    ctx = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        assert ex._mp_context.get_start_method() == 'spawn'
        assert ex.submit(lambda: 3).result(timeout=60) == 3
