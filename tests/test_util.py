"""util: finalizers and their exit ordering, the exit hook, after-fork
hooks and fork-aware types, the temp dir, fd helpers, spawnv_passfds and
logging."""
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

import multiprocess as mp
from multiprocess import util


class Thing:
    pass


@pytest.fixture
def registry():
    """An empty finalizer registry for the test; the real one restored."""
    saved = dict(util._finalizer_registry)
    util._finalizer_registry.clear()
    yield util._finalizer_registry
    util._finalizer_registry.clear()
    util._finalizer_registry.update(saved)


# -- Finalize ----------------------------------------------------------------

def test_finalizer_runs_when_object_is_collected(registry):
    calls = []
    obj = Thing()
    f = util.Finalize(obj, calls.append, args=("gone",))
    assert f.still_active()
    del obj
    gc.collect()
    assert calls == ["gone"]
    assert not f.still_active() and not registry


def test_calling_a_finalizer_runs_it_once(registry):
    calls = []
    obj = Thing()
    f = util.Finalize(obj, lambda *a, **k: calls.append((a, k)) or "result",
                      args=(1,), kwargs={"k": 2})
    assert f() == "result"
    assert f() is None
    del obj
    gc.collect()
    assert calls == [((1,), {"k": 2})]


def test_cancelled_finalizer_never_runs(registry):
    calls = []
    obj = Thing()
    f = util.Finalize(obj, calls.append, args=("x",), exitpriority=1)
    f.cancel()
    f.cancel()
    assert not f.still_active()
    util._run_finalizers()
    del obj
    gc.collect()
    assert calls == []


def test_exit_ordering_by_priority_then_newest_first(registry):
    calls = []
    keep = [Thing() for _ in range(5)]
    util.Finalize(keep[0], calls.append, args=("p0-old",), exitpriority=0)
    util.Finalize(keep[1], calls.append, args=("p0-new",), exitpriority=0)
    util.Finalize(keep[2], calls.append, args=("p10",), exitpriority=10)
    util.Finalize(keep[3], calls.append, args=("none",))
    util.Finalize(None, calls.append, args=("p-5",), exitpriority=-5)
    util._run_finalizers(0)
    assert calls == ["p10", "p0-new", "p0-old"]
    util._run_finalizers()
    assert calls == ["p10", "p0-new", "p0-old", "p-5"]
    # without a minimum, the registry is emptied: 'none' is dropped
    assert not registry


def test_failing_finalizer_does_not_stop_the_others(registry, capsys):
    calls = []
    util.Finalize(None, lambda: 1 / 0, exitpriority=2)
    util.Finalize(None, calls.append, args=("after",), exitpriority=1)
    util._run_finalizers()
    assert calls == ["after"]
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_finalizer_from_another_process_is_ignored(registry):
    calls = []
    f = util.Finalize(None, calls.append, args=("x",), exitpriority=0)
    f._pid = -1                      # as if inherited through fork
    assert f() is None
    assert calls == [] and not f.still_active()


def test_finalize_argument_checks(registry):
    with pytest.raises(ValueError, match="exitpriority cannot be None"):
        util.Finalize(None, print)
    with pytest.raises(TypeError, match="must be None or int"):
        util.Finalize(None, print, exitpriority=1.5)


def test_finalize_repr(registry):
    obj = Thing()
    f = util.Finalize(obj, print, args=(1,), exitpriority=3)
    assert repr(f) == "<Finalize object, callback=print, args=(1,), " \
                      "exitpriority=3>"
    f()
    assert repr(f) == "<Finalize object, dead>"


def test_run_finalizers_survives_concurrent_collection(registry):
    # bpo-24484: the registry may shrink while it is being walked
    stop = threading.Event()
    errors = []

    def churn():
        while not stop.is_set():
            objs = [Thing() for _ in range(20)]
            for o in objs:
                o.me = o
                util.Finalize(o, lambda: None, exitpriority=1)
            del objs
            gc.collect()

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(200):
            try:
                util._run_finalizers(0)
            except Exception as e:          # pragma: no cover
                errors.append(e)
    finally:
        stop.set()
        t.join()
    assert errors == []


# -- the exit hook --------------------------------------------------------

@pytest.mark.timeout(60)
def test_exit_function_order_and_once(run_script):
    r = run_script("""
        from multiprocess import util
        class T: pass
        keep = [T(), T()]
        util.Finalize(keep[0], print, args=('hi',), exitpriority=5)
        util.Finalize(None, print, args=('low',), exitpriority=-1)
        util.Finalize(keep[1], print, args=('never',))
        print('exiting', util.is_exiting())
        util._exit_function()
        print('exiting', util.is_exiting())
        util._exit_function()            # second call does nothing
        print('end')
        """)
    assert r.stdout.split("\n")[:5] == [
        "exiting False", "hi", "low", "exiting True", "end"], r.stderr


@pytest.mark.timeout(60)
def test_temp_dir_is_private_and_removed_at_exit(run_script):
    r = run_script("""
        import os
        from multiprocess import util, current_process
        d = util.get_temp_dir()
        assert d == util.get_temp_dir()
        assert os.path.isdir(d) and os.path.basename(d).startswith('pymp-')
        assert current_process()._config['tempdir'] == d
        open(os.path.join(d, 'f'), 'w').close()
        print(d)
        """)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(r.stdout.strip())


# -- after fork --------------------------------------------------------------

def _after_fork_report(path, obj, lock, local):
    with open(path, "w") as f:
        f.write(repr((obj.forked, lock.acquire(False), hasattr(local, "x"))))


class Forkable:
    forked = False


@pytest.mark.timeout(60)
def test_after_fork_hooks_run_in_forked_child(tmp_path):
    obj = Forkable()
    util.register_after_fork(obj, lambda o: setattr(o, "forked", True))
    lock = util.ForkAwareThreadLock()
    local = util.ForkAwareLocal()
    local.x = 1
    out = tmp_path / "out"
    with lock:                      # held while forking
        p = mp.get_context("fork").Process(
            target=_after_fork_report, args=(str(out), obj, lock, local))
        p.start()
    p.join()
    assert p.exitcode == 0
    assert out.read_text() == "(True, True, False)"
    assert obj.forked is False and local.x == 1


def test_after_fork_registry_is_weak_and_ordered():
    calls = []
    a, b = Forkable(), Forkable()
    util.register_after_fork(b, lambda o: calls.append("b"))
    util.register_after_fork(a, lambda o: calls.append("a"))
    saved = dict(util._afterfork_registry)
    del a
    gc.collect()
    assert not any(v is None for v in util._afterfork_registry.values())
    # run only our own hooks: others could have side effects
    util._afterfork_registry.clear()
    try:
        util.register_after_fork(b, lambda o: calls.append("first"))
        util.register_after_fork(b, lambda o: 1 / 0)     # logged, ignored
        util.register_after_fork(b, lambda o: calls.append("last"))
        util._run_after_forkers()
    finally:
        util._afterfork_registry.clear()
        util._afterfork_registry.update(saved)
    assert calls == ["first", "last"]


def test_fork_aware_thread_lock_api():
    lock = util.ForkAwareThreadLock()
    assert lock.acquire()
    assert not lock.acquire(False)
    lock.release()
    with lock:
        assert not lock.acquire(timeout=0.01)
    assert lock.acquire(False)
    lock.release()


def test_fork_aware_local_pickles_empty():
    local = util.ForkAwareLocal()
    local.x = 1
    again = pickle.loads(pickle.dumps(local))
    assert type(again) is util.ForkAwareLocal and not hasattr(again, "x")


# -- fds and streams ---------------------------------------------------------

@pytest.mark.timeout(60)
def test_close_all_fds_except(run_script):
    r = run_script("""
        import os
        from multiprocess import util
        keep_r, keep_w = os.pipe()
        gone_r, gone_w = os.pipe()
        os.set_inheritable(keep_w, True)
        util.close_all_fds_except([0, 1, 2, keep_w])
        alive = []
        for fd in (keep_r, keep_w, gone_r, gone_w):
            try:
                os.fstat(fd); alive.append(fd == keep_w)
            except OSError:
                pass
        print(alive)
        """)
    assert r.stdout.strip() == "[True]", r.stderr


def test_close_fds():
    r, w = os.pipe()
    util.close_fds(r, w)
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)


@pytest.mark.timeout(60)
def test_spawnv_passfds_keeps_only_passed_fds():
    r, w = os.pipe()
    other_r, other_w = os.pipe()
    try:
        code = (f"import os; os.write({w}, b'ok');"
                f"os.write(1, str([os.path.exists('/proc/self/fd/%d' % fd)"
                f" for fd in ({other_r}, {other_w})]).encode())")
        pid = util.spawnv_passfds(sys.executable,
                                  [sys.executable, "-c", code], [w])
        os.close(w)
        assert os.read(r, 10) == b"ok"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        for fd in (r, other_r, other_w):
            os.close(fd)
        try:
            os.close(w)
        except OSError:
            pass


@pytest.mark.timeout(60)
def test_spawnv_passfds_reports_exec_failure():
    with pytest.raises(FileNotFoundError):
        util.spawnv_passfds("/nonexistent/python", ["x"], [])


@pytest.mark.timeout(60)
def test_close_stdin_points_at_devnull(run_script):
    r = run_script("""
        import sys
        from multiprocess import util
        old = sys.stdin
        util._close_stdin()
        print(old.closed, sys.stdin.read() == '', sys.stdin is not old)
        sys.stdin = None
        util._close_stdin()          # no stdin at all: nothing to do
        """)
    assert r.stdout.strip() == "True True True", r.stderr


def test_flush_std_streams_tolerates_missing_streams(monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    util._flush_std_streams()
    import io
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    util._flush_std_streams()


# -- sockets, misc -----------------------------------------------------------

def test_abstract_socket_namespace():
    assert util.abstract_sockets_supported
    assert util.is_abstract_socket_namespace("\0name")
    assert util.is_abstract_socket_namespace(b"\0name")
    assert not util.is_abstract_socket_namespace("/tmp/sock")
    assert not util.is_abstract_socket_namespace(b"/tmp/sock")
    assert not util.is_abstract_socket_namespace("")
    assert not util.is_abstract_socket_namespace(None)
    with pytest.raises(TypeError):
        util.is_abstract_socket_namespace(("127.0.0.1", 80))


def test_public_names():
    for name in util.__all__:
        assert hasattr(util, name), name
    assert util.MAXFD >= 3
    assert util._args_from_interpreter_flags() == [] or True


# -- logging -----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_log_to_stderr_format_and_levels(run_script):
    r = run_script("""
        import multiprocess as mp
        from multiprocess import util
        util.info('silent before logging is on')
        logger = mp.log_to_stderr(util.SUBDEBUG)
        assert logger is mp.get_logger() and logger.name == 'multiprocess'
        assert logger.propagate in (0, False)
        util.sub_debug('sub %s', 'debug')
        util.debug('dbg')
        util.sub_warning('careful')
        p = mp.Process(target=util.info, args=('from child',))
        p.start(); p.join()
        """)
    err = r.stderr
    assert "silent" not in err
    assert "[Level 5/MainProcess] sub debug" in err
    assert "[DEBUG/MainProcess] dbg" in err
    assert "[Level 25/MainProcess] careful" in err
    assert "[INFO/Process-1] from child" in err
    assert "[INFO/Process-1] process exiting with exitcode 0" in err
    assert "[INFO/MainProcess] process shutting down" in err


def test_log_records_name_the_callers_file_and_line():
    # The helpers log with stacklevel=2: filters and formats that use
    # %(filename)s/%(lineno)d see the caller, as with the stdlib's helpers.
    import logging
    logger = util.get_logger()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(util.SUBDEBUG)
    try:
        line = sys._getframe().f_lineno + 1
        util.info('i'); util.debug('d'); util.sub_debug('s'); util.sub_warning('w')
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [r.getMessage() for r in records] == ['i', 'd', 's', 'w']
    for r in records:
        assert (r.filename, r.lineno) == (os.path.basename(__file__), line)
        assert r.funcName == 'test_log_records_name_the_callers_file_and_line'


def test_helpers_are_silent_without_logger(monkeypatch):
    monkeypatch.setattr(util, "_logger", None)
    util.sub_debug("x")
    util.debug("x")
    util.info("x")
    util.sub_warning("x")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method, name", [("spawn", "SpawnProcess"),
                                          ("forkserver", "ForkServerProcess")])
def test_children_log_under_their_own_name(method, name, tmp_path):
    # spawned children inherit "log to stderr" and the level, and their
    # records carry our process names, not the standard library's
    script = tmp_path / "logs.py"
    script.write_text(textwrap.dedent(f"""
        import logging
        import multiprocess as mp
        from multiprocess import util
        if __name__ == '__main__':
            mp.log_to_stderr(logging.INFO)
            p = mp.get_context({method!r}).Process(target=util.info,
                                                   args=('hello',))
            p.start(); p.join()
        """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, timeout=80)
    assert f"[INFO/{name}-1] hello" in r.stderr, r.stderr
    assert f"[INFO/{name}-1] process exiting with exitcode 0" in r.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", [str, os.fsencode, __import__("pathlib").Path])
def test_spawnv_passfds_accepts_str_bytes_and_paths(kind):
    pid = util.spawnv_passfds(kind(sys.executable),
                              [sys.executable, "-c", "pass"], [])
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- util's part in a child's life (plugged into process) -------------------

def test_util_plugs_its_child_steps_into_process():
    from multiprocess import process
    assert process._services.after_fork is util._after_fork_in_child
    assert process._services.log is util.info


def test_a_replaced_exit_function_is_the_one_a_child_runs(monkeypatch):
    # The standard library's suite and others reach util._exit_function;
    # process must call whatever is bound there when the child ends.
    from multiprocess import process
    calls = []
    monkeypatch.setattr(util, "_exit_function", lambda: calls.append(1))
    process._services.exit()
    assert calls == [1]


def test_after_fork_in_child_drops_finalizers_then_runs_hooks(registry):
    seen = []
    obj = Thing()
    util.Finalize(obj, seen.append, args=("finalizer",), exitpriority=1)
    util.register_after_fork(obj, lambda o: seen.append(len(registry)))
    util._after_fork_in_child()
    assert seen == [0] and not registry


def test_the_child_stdio_helpers_are_process_ones_under_util_names():
    from multiprocess import process
    assert util._close_stdin is process._close_stdin
    assert util._flush_std_streams is process._flush_std_streams
    assert util._CHILD_EXITS_THROUGH_ATEXIT is \
        process._CHILD_EXITS_THROUGH_ATEXIT
