"""pathos runs on top of multiprocess.

pathos imports its process backend in one try-block (``multiprocess``,
``multiprocess.pool.Pool``, ``cpu_count``, ``multiprocess.dummy.Pool``,
``freeze_support``; ``TimeoutError``, ``ApplyResult`` and ``MapResult`` in a
second one) and quietly falls back to the standard library when any of those
imports fails.  A fallback would look like success until a lambda reaches a
worker, so the first thing checked here is that pathos picked *us*.

Every pathos map wraps the user's function in a lambda (its ``star``
helper), so even a plain builtin crosses the process boundary as a
dill-pickled lambda, under every start method.

pathos is optional: without it this module is skipped (nothing is installed
from here; ``pip install --no-deps pathos ppft pox`` adds it).
"""
import glob
import os
import subprocess
import sys
import textwrap

import pytest
from .conftest import START_METHODS

pytest.importorskip(
    "pathos", reason="pathos is not installed (pip install --no-deps pathos ppft pox)")

import multiprocess
import multiprocess.dummy
import multiprocess.pool
import pathos.helpers
from pathos.pools import ProcessPool, ThreadPool

pytestmark = pytest.mark.timeout(120)


def _shut_down_after(pool):
    try:
        yield pool
    finally:
        # pathos caches pools by configuration; clear() really shuts it down
        pool.close()
        pool.join()
        pool.clear()


@pytest.fixture
def process_pool():
    yield from _shut_down_after(ProcessPool(nodes=2))


@pytest.fixture
def thread_pool():
    yield from _shut_down_after(ThreadPool(nodes=2))


def test_pathos_helpers_use_this_package_not_the_stdlib():
    assert pathos.helpers.mp is multiprocess
    assert pathos.helpers.ProcessPool is multiprocess.pool.Pool
    assert pathos.helpers.ThreadPool is multiprocess.dummy.Pool
    assert pathos.helpers.cpu_count is multiprocess.cpu_count
    assert pathos.helpers.freeze_support is multiprocess.freeze_support


def test_pathos_parallel_python_helpers_import_ours():
    # the second try-block (pathos.helpers.pp_helper)
    from pathos.helpers import pp_helper
    assert pp_helper._ApplyResult is multiprocess.pool.ApplyResult
    assert pp_helper._MapResult is multiprocess.pool.MapResult
    assert pp_helper.TimeoutError is multiprocess.TimeoutError


def test_every_name_pathos_imports_is_exposed():
    for name in ("cpu_count", "freeze_support", "TimeoutError", "Pool",
                 "Process", "Manager", "get_context"):
        assert hasattr(multiprocess, name), name
    for name in ("Pool", "ApplyResult", "MapResult", "ThreadPool"):
        assert hasattr(multiprocess.pool, name), name
    assert hasattr(multiprocess.dummy, "Pool")
    assert issubclass(multiprocess.TimeoutError, Exception)


def test_process_pool_maps_lambdas_and_closures(process_pool):
    offset = 10

    def shifted(x):
        return x + offset
    assert process_pool.map(lambda x: x * x, range(6)) == [0, 1, 4, 9, 16, 25]
    assert process_pool.map(shifted, range(3)) == [10, 11, 12]
    # several sequences zip into the arguments, as with the builtin map
    assert process_pool.map(lambda a, b: a - b, [5, 6], [1, 2]) == [4, 4]


def test_process_pool_async_and_lazy_maps(process_pool):
    scale = 3
    res = process_pool.amap(lambda x: x * scale, range(4))
    assert res.get(timeout=60) == [0, 3, 6, 9]
    assert list(process_pool.imap(lambda x: -x, range(4))) == [0, -1, -2, -3]
    assert sorted(process_pool.uimap(lambda x: x + scale, range(4))) == [3, 4, 5, 6]


def test_process_pool_pipe_and_apipe(process_pool):
    assert process_pool.pipe(lambda a, b: a * b, 6, 7) == 42
    assert process_pool.apipe(lambda s: s.upper(), "abc").get(timeout=60) == "ABC"


def test_process_pool_runs_in_other_processes(process_pool):
    pids = set(process_pool.map(lambda _: os.getpid(), range(8)))
    assert os.getpid() not in pids


def test_process_pool_methods_of_local_class_instances(process_pool):
    class Adder:
        def __init__(self, n):
            self.n = n

        def add(self, x):
            return x + self.n
    assert process_pool.map(Adder(100).add, range(3)) == [100, 101, 102]


def test_process_pool_reraises_worker_exceptions(process_pool):
    def fail(x):
        raise ValueError(f"bad {x}")
    with pytest.raises(ValueError, match="bad"):
        process_pool.map(fail, [1])


def test_thread_pool_maps_lambdas_and_closures(thread_pool):
    seen = []
    assert thread_pool.map(lambda x: x + 1, range(4)) == [1, 2, 3, 4]
    thread_pool.map(seen.append, range(4))   # threads share our objects
    assert sorted(seen) == [0, 1, 2, 3]
    assert thread_pool.amap(lambda x: 2 * x, [1, 2]).get(timeout=60) == [2, 4]
    assert list(thread_pool.imap(str, [1, 2])) == ["1", "2"]
    assert sorted(thread_pool.uimap(abs, [-1, -2])) == [1, 2]
    assert thread_pool.pipe(max, 3, 9) == 9


_START_METHOD_SCRIPT = textwrap.dedent("""
    import sys
    import multiprocess

    def make_scaler(k):
        return lambda x: x * k

    if __name__ == '__main__':
        multiprocess.set_start_method(sys.argv[1])
        from pathos.pools import ProcessPool
        pool = ProcessPool(nodes=2)
        try:
            assert pool.map(make_scaler(3), range(4)) == [0, 3, 6, 9]
            assert list(pool.imap(lambda x: x + 1, range(3))) == [1, 2, 3]
            assert pool.amap(make_scaler(2), [5]).get(timeout=60) == [10]
        finally:
            pool.close()
            pool.join()
            pool.clear()
        print('ok')
""")


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_under_each_start_method(method, tmp_path):
    script = tmp_path / "pathos_main.py"
    script.write_text(_START_METHOD_SCRIPT)
    r = subprocess.run([sys.executable, str(script), method], capture_output=True,
                       text=True, timeout=100, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# pathos ships its own tests inside the package; each is a script.  test_pp
# drives ppft's parallel-python workers, which is ppft's business, not ours.
_PATHOS_TESTS = sorted(
    p for p in glob.glob(os.path.join(os.path.dirname(pathos.__file__), "tests", "test_*.py"))
    if os.path.basename(p) != "test_pp.py")


@pytest.mark.skipif(not _PATHOS_TESTS, reason="this pathos install ships no tests")
@pytest.mark.parametrize("script", _PATHOS_TESTS or ["none"], ids=os.path.basename)
def test_pathos_own_test_suite(script, tmp_path):
    r = subprocess.run([sys.executable, script], capture_output=True, text=True,
                       timeout=100, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
