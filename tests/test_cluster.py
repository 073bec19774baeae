"""multiprocess.cluster.Pool: the Pool API on a Dask cluster.

Two clusters, each started once per module (starting one takes seconds):
a LocalCluster of two worker processes, reached through ``client=``, and a
scheduler plus two workers started as separate processes with the ``dask
scheduler`` / ``dask worker`` commands on 127.0.0.1, reached through
``address=``.  Everything listens on 127.0.0.1 only.  Skipped (with the
reason) when ``distributed`` is not installed; the import-without-it test
always runs.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import multiprocess
from multiprocess import cluster

HAVE_DISTRIBUTED = importlib.util.find_spec('distributed') is not None
needs_dask = pytest.mark.skipif(
    not HAVE_DISTRIBUTED,
    reason='distributed is not installed (pip install "multiprocess[dask]")')

pytestmark = pytest.mark.timeout(240)

# The worker processes must import this module to run the helpers below
# that are not sent by value: the directory holding its top package.
_TOP = __name__.split('.')[0]
_TOP_DIR = os.path.dirname(os.path.abspath(sys.modules[_TOP].__file__)) \
    if _TOP != __name__ else os.path.dirname(os.path.abspath(__file__))
_IMPORT_ROOT = os.path.dirname(_TOP_DIR)


def _env_with_us():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [_IMPORT_ROOT] + [p for p in env.get('PYTHONPATH', '').split(
            os.pathsep) if p])
    return env


# ----------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def local_client():
    """A LocalCluster of two single-threaded worker processes."""
    import distributed
    lc = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True,
        host='127.0.0.1', dashboard_address='127.0.0.1:0')
    client = distributed.Client(lc, set_as_default=False)
    try:
        _wait_for_workers(client, 2)
        yield client
    finally:
        client.close(timeout=30)
        try:
            lc.close(timeout=30)
        except KeyError:
            # distributed 2026.8.0: the cluster's worker watcher may have
            # died on a worker removed during a restart; close re-raises it
            pass


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@pytest.fixture(scope='module')
def cli_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1,
    on ports the system picks; yields the scheduler's address."""
    import distributed
    tmp = tmp_path_factory.mktemp('dask-cli')
    sched_file = str(tmp / 'scheduler.json')
    env = _env_with_us()
    procs = []
    logs = []

    def start(*args):
        log = open(tmp / ('log-%d.txt' % len(procs)), 'wb')
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, '-m', 'dask'] + list(args), cwd=str(tmp),
            env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL))

    try:
        start('scheduler', '--host', '127.0.0.1', '--port', '0',
              '--no-dashboard', '--dashboard-address', '127.0.0.1:0',
              '--scheduler-file', sched_file)
        deadline = time.monotonic() + 90
        while not os.path.exists(sched_file):
            if procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail('dask scheduler did not start:\n'
                            + (tmp / 'log-0.txt').read_text())
            time.sleep(0.1)
        time.sleep(0.2)     # the file may be half written
        with open(sched_file) as f:
            address = json.load(f)['address']
        assert address.startswith('tcp://127.0.0.1:')
        for _ in range(2):
            start('worker', address, '--host', '127.0.0.1', '--nthreads',
                  '1', '--no-dashboard', '--dashboard-address',
                  '127.0.0.1:0', '--death-timeout', '60')
        with distributed.Client(address, set_as_default=False,
                                timeout=60) as c:
            _wait_for_workers(c, 2)
        yield address
    finally:
        _stop(procs[1:])
        _stop(procs[:1])
        for log in logs:
            log.close()


@pytest.fixture(scope='module')
def pool(local_client):
    with cluster.Pool(client=local_client) as p:
        yield p


def _wait_for_workers(client, n, timeout=180):
    # Asked of the scheduler: Client.wait_for_workers on a LocalCluster
    # trusts the cluster's own view, whose watcher distributed 2026.8.0
    # can lose (KeyError) while a worker restarts.
    deadline = time.monotonic() + timeout
    while len(client.nthreads()) < n:
        assert time.monotonic() < deadline, 'workers did not come back'
        time.sleep(0.2)


def _worker_pids(client):
    return set(client.run(os.getpid).values())


# --------------------------------------------------- helpers sent by value
# Made inside functions: lambdas and closures travel by value, their
# module is imported on the worker to find their globals.

def _closure(k):
    return lambda x: (x * k, os.getpid())


def _main_class():
    """A class of __main__, as a script would define it: sent by value."""
    space = {'__name__': '__main__'}
    exec(textwrap.dedent('''
        import os
        class Scaler:
            def __init__(self, k):
                self.k = k
            def scale(self, x):
                return x * self.k, os.getpid()
    '''), space)
    return space['Scaler']


def _raise_key_error(key):
    return {}[key]


# ------------------------------------------------ without distributed

def test_import_works_and_pool_names_the_extra_without_distributed():
    code = textwrap.dedent('''
        import sys
        sys.modules['distributed'] = None      # as if not installed
        import multiprocess.cluster as c
        try:
            c.Pool(client=object())
        except ImportError as exc:
            print('ImportError:', exc)
        else:
            print('no error')
    ''')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert 'ImportError:' in r.stdout
    assert 'multiprocess[dask]' in r.stdout


def test_main_functions_pickled_for_a_cluster_carry_their_own_globals():
    # A long-lived cluster worker serves one script after another: the
    # globals a __main__ function brings must not land in the worker's
    # __main__, where an earlier script's value would win over ours.
    code = textwrap.dedent('''
        import pickle, sys
        from multiprocess import _pickling, reduction
        K = 1
        f = lambda: K
        _pickling._pickle_for_remote(True)
        try:
            blob1 = bytes(reduction.ForkingPickler.dumps(f))
            K = 3
            blob3 = bytes(reduction.ForkingPickler.dumps(f))
        finally:
            _pickling._pickle_for_remote(False)
        del K
        g1, g3 = pickle.loads(blob1), pickle.loads(blob3)
        main = sys.modules['__main__'].__dict__
        print(g1(), g3(), 'K' in main, g1.__globals__ is main)
    ''')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['1', '3', 'False', 'False']


# ------------------------------------------------------- argument checks

@needs_dask
def test_client_and_address_together_are_refused(local_client):
    with pytest.raises(ValueError, match='not both'):
        cluster.Pool(client=local_client, address='tcp://127.0.0.1:1')


@needs_dask
@pytest.mark.parametrize('kwargs, exc', [
    ({'processes': 0}, ValueError),
    ({'maxtasksperchild': 3}, ValueError),
    ({'max_memory_per_child': 1 << 30}, ValueError),
    ({'task_timeout': -1}, ValueError),
    ({'initializer': 3}, TypeError),
])
def test_bad_arguments_get_the_pools_exceptions(local_client, kwargs, exc):
    with pytest.raises(exc):
        cluster.Pool(client=local_client, **kwargs)


@needs_dask
def test_client_must_be_a_distributed_client():
    with pytest.raises(TypeError, match='distributed.Client'):
        cluster.Pool(client=object())


# ------------------------------------------------ the Pool API via client=

@needs_dask
def test_processes_defaults_to_the_clusters_threads(pool, local_client):
    assert pool._processes == sum(local_client.nthreads().values()) == 2
    assert pool.client is local_client


@needs_dask
def test_closure_runs_in_worker_processes(pool, local_client):
    out = pool.map(_closure(3), range(10))
    assert [v for v, _ in out] == [x * 3 for x in range(10)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids
    assert pids <= _worker_pids(local_client)


@needs_dask
def test_lambda_apply(pool):
    assert pool.apply(lambda a, b=2: a ** b, (5,), {'b': 3}) == 125


@needs_dask
def test_imap_with_chunksize_keeps_order(pool, local_client):
    it = pool.imap(_closure(2), range(23), chunksize=4)
    out = list(it)
    assert [v for v, _ in out] == [x * 2 for x in range(23)]
    assert {pid for _, pid in out} <= _worker_pids(local_client)


@needs_dask
def test_imap_next_with_timeout(pool):
    it = pool.imap(lambda x: x + 1, range(3))
    assert [it.next(timeout=60) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(StopIteration):
        it.next(timeout=60)


@needs_dask
def test_imap_unordered_gives_every_result(pool):
    out = list(pool.imap_unordered(lambda x: x * x, range(30), chunksize=3))
    assert sorted(out) == [x * x for x in range(30)]


@needs_dask
def test_imap_of_a_generator_is_lazy_and_complete(pool):
    def gen():
        for i in range(200):
            yield i
    assert sum(pool.imap(abs, gen(), chunksize=7)) == sum(range(200))


@needs_dask
def test_starmap(pool):
    assert pool.starmap(pow, [(2, 3), (3, 2), (10, 0)]) == [8, 9, 1]
    r = pool.starmap_async(lambda a, b: a - b, [(5, 1), (1, 5)])
    assert r.get(timeout=60) == [4, -4]


@needs_dask
def test_map_default_chunksize_is_the_pools(pool):
    # four chunks per slot, as Pool.map: 100 items, 2 slots -> 13 per chunk
    seen = pool.map(lambda x: os.getpid(), range(100))
    assert len(seen) == 100
    r = pool.map_async(abs, range(100))
    assert r.get(timeout=60) == list(range(100))
    assert r._chunksize == 13


@needs_dask
def test_empty_map_and_imap(pool):
    assert pool.map(abs, []) == []
    assert list(pool.imap(abs, [])) == []
    assert pool.starmap(pow, []) == []


@needs_dask
def test_main_class_method(pool, local_client):
    Scaler = _main_class()
    assert Scaler.__module__ == '__main__'
    out = pool.map(Scaler(7).scale, range(5))
    assert [v for v, _ in out] == [0, 7, 14, 21, 28]
    assert {pid for _, pid in out} <= _worker_pids(local_client)
    # instances come back too
    back = pool.apply(lambda s: s, (Scaler(2),))
    assert back.k == 2 and type(back).__name__ == 'Scaler'


@needs_dask
def test_apply_async_callback_gets_the_value(pool):
    got = []
    done = threading.Event()

    def callback(value):
        got.append(value)
        done.set()

    r = pool.apply_async(lambda: os.getpid(), callback=callback)
    pid = r.get(timeout=60)
    assert done.wait(10)
    assert got == [pid] and pid != os.getpid()
    assert r.ready() and r.successful()


@needs_dask
def test_map_async_callback_gets_the_list(pool):
    got = []
    r = pool.map_async(lambda x: -x, range(6), callback=got.append)
    r.wait(60)
    assert got == [[0, -1, -2, -3, -4, -5]]


@needs_dask
def test_key_error_is_reraised_as_itself_with_the_remote_traceback(pool):
    with pytest.raises(KeyError) as info:
        pool.apply(_raise_key_error, ('missing',))
    assert info.value.args == ('missing',)
    cause = info.value.__cause__
    assert isinstance(cause, multiprocess.pool.RemoteTraceback)
    assert '_raise_key_error' in cause.tb and 'KeyError' in cause.tb


@needs_dask
def test_error_callback_gets_the_exception(pool):
    errors = []
    r = pool.apply_async(lambda: {}['k'], error_callback=errors.append)
    r.wait(60)
    assert not r.successful()
    assert len(errors) == 1 and isinstance(errors[0], KeyError)


@needs_dask
def test_map_error_fails_the_map_with_the_items_exception(pool):
    def f(x):
        if x == 37:
            raise ValueError('bad item %d' % x)
        return x
    with pytest.raises(ValueError, match='bad item 37'):
        pool.map(f, range(100), chunksize=5)


@needs_dask
def test_imap_error_is_raised_at_its_position(pool):
    def f(x):
        if x == 3:
            raise KeyError(x)
        return x
    it = pool.imap(f, range(6))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(KeyError):
        next(it)
    assert list(it) == [4, 5]


@needs_dask
def test_unpicklable_result_is_a_maybe_encoding_error(pool):
    with pytest.raises(multiprocess.pool.MaybeEncodingError):
        pool.apply(lambda: threading.Lock())


@needs_dask
def test_unpicklable_argument_fails_that_task_in_the_caller(pool):
    with pytest.raises(TypeError, match='[Ll]ock'):
        pool.apply(len, (threading.Lock(),))
    assert pool.apply(len, ((1, 2),)) == 2


@needs_dask
def test_an_iterable_that_raises_fails_the_map(pool):
    def gen():
        yield 1
        raise RuntimeError('iterable broke')
    with pytest.raises(RuntimeError, match='iterable broke'):
        list(pool.imap(abs, gen()))


@needs_dask
def test_many_apply_async_in_flight(pool):
    results = [pool.apply_async(abs, (-i,)) for i in range(300)]
    assert [r.get(timeout=120) for r in results] == list(range(300))


@needs_dask
def test_a_callback_may_submit_more_work(pool):
    done = threading.Event()
    out = []

    def second(value):
        out.append(value)
        done.set()

    def first(value):
        pool.apply_async(abs, (value,), callback=second)

    pool.apply_async(lambda: -5, callback=first)
    assert done.wait(60)
    assert out == [5]


# ---------------------------------------------------- pool features

@needs_dask
def test_task_timeout_fails_the_call_on_time(pool):
    start = time.monotonic()
    r = pool.apply_async(time.sleep, (4,), task_timeout=0.5)
    with pytest.raises(multiprocess.TaskTimeoutError):
        r.get(timeout=60)
    assert time.monotonic() - start < 4
    assert pool.apply(abs, (-3,), task_timeout=30) == 3


@needs_dask
def test_task_timeout_limits_each_call_of_a_map(pool):
    with pytest.raises(multiprocess.TaskTimeoutError):
        pool.map(lambda x: time.sleep(x) or x, [0, 0, 0, 3], chunksize=2,
                 task_timeout=0.5)
    assert pool.map(lambda x: x, range(6), chunksize=3,
                    task_timeout=30) == list(range(6))


@needs_dask
def test_pool_wide_task_timeout(local_client):
    with cluster.Pool(client=local_client, task_timeout=0.5) as p:
        with pytest.raises(multiprocess.TaskTimeoutError):
            p.apply(time.sleep, (3,))


@needs_dask
def test_progress_callable_sees_every_item(pool):
    seen = []
    assert pool.map(abs, range(50), chunksize=5,
                    progress=lambda done, total: seen.append((done, total))
                    ) == list(range(50))
    assert seen and seen[-1] == (50, 50)


@needs_dask
def test_imap_buffersize_reads_an_endless_generator_lazily(local_client):
    import itertools
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield i

    with cluster.Pool(client=local_client) as p:
        it = p.imap(lambda x: x * 2, endless(), buffersize=4)
        assert [next(it) for _ in range(20)] == [x * 2 for x in range(20)]
        time.sleep(0.5)
        assert len(pulled) <= 20 + 4 + 1


# ----------------------------------------------------- initializer

@needs_dask
def test_initializer_runs_once_per_worker_process(local_client, tmp_path):
    log = str(tmp_path / 'init.log')

    def init(path, token):
        os.environ['MP_CLUSTER_TEST_INIT'] = token
        with open(path, 'a') as f:
            f.write('%d\n' % os.getpid())

    with cluster.Pool(client=local_client, initializer=init,
                      initargs=(log, 'tok-1')) as p:
        out = p.map(lambda x: (os.getpid(),
                               os.environ.get('MP_CLUSTER_TEST_INIT')),
                    range(40), chunksize=1)
        assert {tok for _, tok in out} == {'tok-1'}
        with open(log) as f:
            pids = [int(line) for line in f]
        assert len(pids) == len(set(pids))      # once per process
        assert {pid for pid, _ in out} <= set(pids)


@needs_dask
def test_failing_initializer_fails_the_tasks_not_the_pool(local_client):
    def init():
        raise OSError('no database')

    with cluster.Pool(client=local_client, initializer=init) as p:
        with pytest.raises(OSError, match='no database'):
            p.apply(abs, (1,))


# --------------------------------------------------- close / terminate

@needs_dask
def test_close_then_join_finishes_the_work(local_client):
    p = cluster.Pool(client=local_client)
    r = p.map_async(lambda x: time.sleep(0.01) or x, range(20), chunksize=1)
    p.close()
    with pytest.raises(ValueError):
        p.apply_async(abs, (1,))
    p.join()
    assert r.ready() and r.get(0) == list(range(20))
    assert local_client.status == 'running'     # not ours to close


@needs_dask
def test_join_while_running_is_refused(pool):
    with pytest.raises(ValueError):
        pool.join()


@needs_dask
def test_terminate_cancels_what_is_pending(local_client):
    p = cluster.Pool(client=local_client)
    r = p.map_async(lambda x: time.sleep(0.5), range(40), chunksize=1)
    time.sleep(1)
    start = time.monotonic()
    p.terminate()
    with pytest.raises(multiprocess.ProcessError):
        r.get(timeout=30)
    p.join()
    assert time.monotonic() - start < 30
    pool_id = p._engine.id

    def ours_left(dask_scheduler, pool_id=pool_id):
        return [k for k in dask_scheduler.tasks if pool_id in str(k)]

    deadline = time.monotonic() + 30
    while local_client.run_on_scheduler(ours_left):
        assert time.monotonic() < deadline, 'tasks left on the scheduler'
        time.sleep(0.2)


@needs_dask
def test_pool_is_not_picklable(pool):
    import pickle
    with pytest.raises(NotImplementedError):
        pickle.dumps(pool)


# -------------------------------------------------- a pool of its own

@needs_dask
def test_pool_without_client_or_address_runs_its_own_local_cluster():
    with cluster.Pool(2) as p:
        lc = p.client.cluster
        assert p._processes == 2
        assert len(p.client.nthreads()) == 2
        assert p.client.scheduler.address.startswith('tcp://127.0.0.1:')
        pids = _worker_pids(p.client)
        out = p.map(_closure(1), range(8), chunksize=1)
        assert {pid for _, pid in out} <= pids
        assert os.getpid() not in pids
    assert lc.status.name == 'closed'
    assert p.client.status == 'closed'
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, 'worker processes left running'
        time.sleep(0.1)


@needs_dask
def test_close_and_join_stop_the_own_local_cluster():
    p = cluster.Pool(1)
    lc = p.client.cluster
    assert p.apply(lambda: 41 + 1) == 42
    p.close()
    p.join()
    assert lc.status.name == 'closed'


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:        # a zombie is not running: it waits for its parent
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


# ---------------------------------------- the dask command line, address=

_SCRIPT = '''
import os, sys
from multiprocess import cluster

K = 5

class Point:
    def __init__(self, x):
        self.x = x
    def norm1(self, y):
        return abs(self.x) + abs(y) + K, os.getpid()

def main(address):
    with cluster.Pool(address=address) as pool:
        factor = 3
        closure = lambda x: (x * factor + K, os.getpid())
        out = pool.map(closure, range(10))
        assert [v for v, _ in out] == [x * 3 + 5 for x in range(10)], out
        pids = {p for _, p in out}
        out = list(pool.imap(Point(-2).norm1, range(6), chunksize=2))
        assert [v for v, _ in out] == [2 + y + 5 for y in range(6)], out
        pids |= {p for _, p in out}
        assert sorted(pool.imap_unordered(abs, range(-4, 4))) == \\
            sorted(abs(x) for x in range(-4, 4))
        assert pool.starmap(lambda a, b: a * b, [(2, 3), (4, 5)]) == [6, 20]
        got = []
        pool.apply_async(lambda: K, callback=got.append).wait(60)
        assert got == [5], got
        try:
            pool.apply(lambda: {}['nope'])
        except KeyError as exc:
            assert 'nope' in str(exc.__cause__), exc.__cause__
        else:
            raise AssertionError('no KeyError')
        assert os.getpid() not in pids
        print('pids', sorted(pids))
    print('ok')

if __name__ == '__main__':
    main(sys.argv[1])
'''


@needs_dask
def test_a_main_script_through_address_on_the_dask_command_line_cluster(
        cli_cluster, tmp_path):
    script = tmp_path / 'script.py'
    script.write_text(_SCRIPT)
    r = subprocess.run([sys.executable, str(script), cli_cluster],
                       capture_output=True, text=True, timeout=180,
                       cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith('ok')
    import distributed
    with distributed.Client(cli_cluster, set_as_default=False) as c:
        worker_pids = _worker_pids(c)
    line = [x for x in r.stdout.splitlines() if x.startswith('pids')][0]
    assert set(json.loads(line[5:])) <= worker_pids


@needs_dask
def test_address_pool_in_process(cli_cluster):
    with cluster.Pool(address=cli_cluster) as p:
        assert p._processes == 2
        out = p.map(_closure(2), range(6), chunksize=1)
        assert [v for v, _ in out] == [0, 2, 4, 6, 8, 10]
        with pytest.raises(KeyError):
            p.apply(_raise_key_error, ('x',))
        client = p.client
    assert client.status == 'closed'     # our connection, closed with us


# ------------------------------------------------------ lost workers
# Last in the module: each kills a worker process of the LocalCluster, and
# nothing after them waits for the nannies' restarts (minutes on a loaded
# machine).  The scheduler's allowed-failures is set per test.

def _allowed_failures(client, n):
    def setter(dask_scheduler, n=n):
        dask_scheduler.allowed_failures = n
    client.run_on_scheduler(setter)


@needs_dask
def test_a_worker_dying_once_is_retried_by_the_scheduler(
        pool, local_client, tmp_path):
    marker = str(tmp_path / 'died-once')

    def die_once(path):
        if not os.path.exists(path):
            open(path, 'w').close()
            os._exit(4)
        return 'second try'

    _allowed_failures(local_client, 1)
    assert pool.apply(die_once, (marker,)) == 'second try'


@needs_dask
def test_a_worker_dying_past_allowed_failures_fails_the_task_with_worker_lost(
        pool, local_client):
    _allowed_failures(local_client, 0)
    r = pool.apply_async(lambda: os._exit(3))
    with pytest.raises(multiprocess.WorkerLostError, match='died'):
        r.get(timeout=180)
