"""Process objects: life cycle, exit codes, signals, misuse, and what the
child sees (current_process, parent_process), under every start method.

Children report back through files (never through queues or pipes), so
these tests only depend on process.py, context.py and the start methods.
"""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocess as mp
from multiprocess import process as mp_process
from multiprocess import context as mp_context
try:
    from .conftest import START_METHODS
except ImportError:     # imported by name from a child's script (see below)
    from conftest import START_METHODS

METHODS = START_METHODS


# -- helpers that run in children (module level: spawn imports them) -----

def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _sleep_forever():
    while True:
        time.sleep(10)


def _raise_value_error():
    raise ValueError("boom from the child")


def _exit_with(code):
    sys.exit(code)


def _self_signal(signum):
    os.kill(os.getpid(), signum)
    time.sleep(10)


def _report_identity(path):
    me = mp.current_process()
    parent = mp.parent_process()
    _write(path, repr((me.name, me.pid == os.getpid(), me.daemon,
                       parent.pid, parent.name, mp.get_start_method(),
                       bytes(me.authkey).hex())))


def _report_parent_alive(path, wait_for_death):
    parent = mp.parent_process()
    if wait_for_death:
        parent.join(timeout=30)
    _write(path, "alive" if parent.is_alive() else "dead")


def _grandparent(path, method):
    # Starts a grandchild with the default context, which must follow this
    # child's start method.
    child = mp.Process(target=_write, args=(path, mp.get_start_method()))
    child.start()
    child.join()


def _read(path):
    with open(path) as f:
        return f.read()


# -- normal life cycle -------------------------------------------------------

@pytest.mark.timeout(60)
def test_run_target_with_args_and_exit_zero(ctx, tmp_path):
    out = tmp_path / "out"
    p = ctx.Process(target=_write, args=(str(out),), kwargs={"text": "hi"})
    assert p.pid is None and p.exitcode is None and not p.is_alive()
    assert repr(p).endswith(" initial>")
    p.start()
    assert isinstance(p.pid, int) and p.ident == p.pid
    p.join()
    assert p.exitcode == 0
    assert not p.is_alive()
    assert _read(out) == "hi"
    assert "stopped exitcode=0" in repr(p)
    assert p not in mp.active_children()


@pytest.mark.timeout(60)
def test_child_sees_itself_and_its_parent(ctx, tmp_path):
    out = tmp_path / "out"
    p = ctx.Process(target=_report_identity, args=(str(out),), name="kid",
                    daemon=True)
    p.start()
    p.join()
    assert p.exitcode == 0
    name, pid_ok, daemon, ppid, pname, method, key = eval(_read(out))
    assert (name, pid_ok, daemon) == ("kid", True, True)
    assert ppid == os.getpid() and pname == "MainProcess"
    assert method == ctx.get_start_method()
    assert key == bytes(mp.current_process().authkey).hex()


@pytest.mark.timeout(60)
def test_grandchild_uses_the_childs_start_method(ctx, tmp_path):
    out = tmp_path / "out"
    p = ctx.Process(target=_grandparent, args=(str(out), ctx._name))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert _read(out) == ctx.get_start_method()


@pytest.mark.timeout(60)
def test_parent_process_is_alive_while_parent_runs(ctx, tmp_path):
    out = tmp_path / "out"
    p = ctx.Process(target=_report_parent_alive, args=(str(out), False))
    p.start()
    p.join()
    assert _read(out) == "alive"


@pytest.mark.timeout(60)
def test_parent_process_reports_death_of_parent(run_script, tmp_path):
    # The middle process starts a grandchild that waits for it to die.
    out = tmp_path / "out"
    r = run_script(f"""
        import multiprocess as mp, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_process import _report_parent_alive
        if __name__ == '__main__':
            p = mp.Process(target=_report_parent_alive,
                           args=({str(out)!r}, True))
            p.start()
            import os
            os._exit(0)      # dies without joining
        """)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while not out.exists() or not _read(out):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _read(out) == "dead"


@pytest.mark.timeout(60)
def test_default_names_count_children(tmp_path):
    a, b = mp.Process(), mp.Process()
    na = int(a.name.rsplit("-", 1)[1])
    assert b.name == f"Process-{na + 1}"
    assert a._identity == (na,)


# -- failures in the child ---------------------------------------------------

@pytest.mark.timeout(60)
def test_child_exception_prints_traceback_and_exits_1(run_script):
    r = run_script("""
        import multiprocess as mp
        def boom():
            raise ValueError("boom from the child")
        if __name__ == '__main__':
            p = mp.get_context('fork').Process(target=boom, name='Boomer')
            p.start(); p.join()
            print(p.exitcode)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    assert "Process Boomer:" in r.stderr
    assert "Traceback (most recent call last)" in r.stderr
    assert "ValueError: boom from the child" in r.stderr


@pytest.mark.timeout(60)
def test_child_exception_exitcode_under_each_method(ctx):
    p = ctx.Process(target=_raise_value_error)
    p.start()
    p.join()
    assert p.exitcode == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("code, expected", [(None, 0), (0, 0), (3, 3),
                                            (True, 1), ("bye", 1)])
def test_sys_exit_codes(ctx, code, expected):
    p = ctx.Process(target=_exit_with, args=(code,))
    p.start()
    p.join()
    assert p.exitcode == expected


@pytest.mark.timeout(60)
def test_sys_exit_with_message_prints_it(run_script):
    r = run_script("""
        import multiprocess as mp, sys
        if __name__ == '__main__':
            p = mp.Process(target=sys.exit, args=('so long',))
            p.start(); p.join()
            print(p.exitcode)
        """)
    assert r.stdout.strip() == "1"
    assert "so long" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(60)
def test_child_killed_by_signal_has_negative_exitcode(ctx):
    p = ctx.Process(target=_self_signal, args=(signal.SIGUSR1,))
    p.start()
    p.join()
    assert p.exitcode == -signal.SIGUSR1
    assert "exitcode=-SIGUSR1" in repr(p)


# -- controlling a running child --------------------------------------------

@pytest.mark.timeout(60)
def test_join_timeout_returns_while_child_still_runs(ctx):
    p = ctx.Process(target=_sleep_forever)
    p.start()
    try:
        t0 = time.monotonic()
        assert p.join(0.3) is None
        assert time.monotonic() - t0 < 5
        assert p.is_alive() and p.exitcode is None
        assert p in mp.active_children()
        p.join(0)           # zero and negative timeouts do not block
        p.join(-1)
        assert p.is_alive()
    finally:
        p.kill()
        p.join()


@pytest.mark.timeout(60)
@pytest.mark.parametrize('stop, signum', [('terminate', signal.SIGTERM),
                                          ('kill', signal.SIGKILL)])
def test_terminate_and_kill_give_minus_the_signal(ctx, stop, signum):
    p = ctx.Process(target=_sleep_forever)
    p.start()
    getattr(p, stop)()
    p.join()
    assert p.exitcode == -signum
    assert "stopped exitcode=-%s" % signum.name in repr(p)
    assert p not in mp.active_children()


@pytest.mark.timeout(60)
def test_close_refuses_running_process_then_closes(ctx):
    p = ctx.Process(target=_sleep_forever)
    p.start()
    with pytest.raises(ValueError, match="still running"):
        p.close()
    assert p.is_alive()
    p.terminate()
    p.join()
    p.close()
    p.close()                   # closing twice is harmless
    assert "closed" in repr(p)
    for use in (p.is_alive, p.join, p.terminate, p.kill,
                lambda: p.exitcode, lambda: p.pid, lambda: p.sentinel):
        with pytest.raises(ValueError, match="closed"):
            use()


@pytest.mark.timeout(60)
def test_sentinel_becomes_ready_when_child_ends(ctx):
    import select
    p = ctx.Process(target=time.sleep, args=(0.3,))
    with pytest.raises(ValueError, match="not started"):
        p.sentinel
    p.start()
    assert isinstance(p.sentinel, int)
    assert select.select([p.sentinel], [], [], 0)[0] == []
    assert select.select([p.sentinel], [], [], 30)[0] == [p.sentinel]
    p.join()


# -- misuse -----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_start_twice_and_join_unstarted_are_errors():
    p = mp.Process(target=time.sleep, args=(0,))
    with pytest.raises(AssertionError, match="started process"):
        p.join()
    p.start()
    with pytest.raises(AssertionError, match="twice"):
        p.start()
    with pytest.raises(AssertionError, match="already started"):
        p.daemon = True
    p.join()


def test_name_must_be_a_string():
    p = mp.Process()
    p.name = "x"
    assert p.name == "x"
    with pytest.raises(AssertionError):
        p.name = 3


def test_group_must_be_none():
    with pytest.raises(AssertionError):
        mp.Process(group=1)


@pytest.mark.timeout(60)
def test_daemonic_process_may_not_have_children(run_script, tmp_path):
    r = run_script("""
        import multiprocess as mp
        def nest():
            try:
                mp.Process(target=print).start()
            except AssertionError as e:
                print('refused:', e)
        if __name__ == '__main__':
            p = mp.Process(target=nest, daemon=True)
            p.start(); p.join()
        """)
    assert "refused: daemonic processes are not allowed to have children" \
        in r.stdout, r.stderr


# -- the main process and module state --------------------------------------

def test_main_process_object():
    me = mp.current_process()
    assert me.name == "MainProcess"
    assert me.is_alive() and me.ident == os.getpid() and me.pid == os.getpid()
    assert me.exitcode is None and not me.daemon
    assert isinstance(me.authkey, bytes) and len(me.authkey) == 32
    assert mp.parent_process() is None
    assert "started" in repr(me)
    me.close()                  # a no-op for the main process


def test_authkey_is_an_authentication_string_that_refuses_pickling():
    p = mp.Process()
    p.authkey = b"secret"
    assert isinstance(p.authkey, mp_process.AuthenticationString)
    assert p.authkey == b"secret"
    with pytest.raises(TypeError, match="security"):
        pickle.dumps(p.authkey)


def test_authkey_pickles_while_spawning():
    key = mp_process.AuthenticationString(b"k")
    mp_context.set_spawning_popen(object())
    try:
        again = pickle.loads(pickle.dumps(key))
    finally:
        mp_context.set_spawning_popen(None)
    assert again == b"k" and type(again) is mp_process.AuthenticationString


def test_exitcode_names_cover_signals():
    names = mp_process._exitcode_to_name
    assert names[-signal.SIGTERM] == "-SIGTERM"
    assert names[-signal.SIGKILL] == "-SIGKILL"
    assert all(code < 0 for code in names)


def test_dangling_tracks_process_objects():
    p = mp.Process()
    assert p in mp_process._dangling


def test_original_dir_is_absolute():
    assert mp_process.ORIGINAL_DIR is None or \
        os.path.isabs(mp_process.ORIGINAL_DIR)


@pytest.mark.timeout(60)
def test_start_drops_reference_to_target(tmp_path):
    import weakref

    class Target:
        def __call__(self):
            pass

    target = Target()
    ref = weakref.ref(target)
    p = mp.get_context("fork").Process(target=target)
    del target
    p.start()
    p.join()
    assert ref() is None


# -- interpreter exit --------------------------------------------------------

@pytest.mark.timeout(60)
def test_daemon_children_are_terminated_and_others_joined_at_exit(run_script, tmp_path):
    done = tmp_path / "done"
    r = run_script(f"""
        import multiprocess as mp, time, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_process import _sleep_forever, _write
        def slow_write(path):
            time.sleep(0.5)
            _write(path, 'written')
        if __name__ == '__main__':
            d = mp.Process(target=_sleep_forever, daemon=True)
            d.start()
            n = mp.Process(target=slow_write, args=({str(done)!r},))
            n.start()
            print(d.pid, flush=True)
        """)
    assert r.returncode == 0, r.stderr
    # the non-daemonic child was waited for
    assert _read(done) == "written"
    # the daemon is gone (or at most a zombie waiting for init)
    pid = int(r.stdout.split()[0])
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state in ("Z", "X")
    except FileNotFoundError:
        pass


# -- targets that only dill can carry ----------------------------------------

@pytest.mark.timeout(60)
def test_lambda_and_closure_targets(ctx, tmp_path):
    out = tmp_path / "out"
    suffix = "-closure"

    def closure(path):
        _write(path, ctx.get_start_method() + suffix)

    p = ctx.Process(target=closure, args=(str(out),))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert _read(out) == ctx.get_start_method() + suffix

    p = ctx.Process(target=lambda path: _write(path, "lambda"),
                    args=(str(out),))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert _read(out) == "lambda"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_main_module_lambda_target_in_script(method, tmp_path):
    # A lambda defined in __main__ (a script) cannot be re-imported by a
    # spawned child: it has to travel by value.
    out = tmp_path / "out"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocess as mp
        class Box:
            def __init__(self, v): self.v = v
        def main():
            ctx = mp.get_context({method!r})
            box = Box('boxed')
            def write(path):
                with open(path, 'w') as f:
                    f.write(box.v)
            p = ctx.Process(target=write, args=({str(out)!r},))
            p.start(); p.join()
            q = ctx.Process(target=lambda: None)
            q.start(); q.join()
            print(p.exitcode, q.exitcode)
        if __name__ == '__main__':
            main()
        """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, timeout=100)
    assert r.stdout.split() == ["0", "0"], r.stderr
    assert r.stderr == ""
    assert _read(out) == "boxed"


# -- exit handlers in children -------------------------------------------------

def _register_exit_handler(path):
    import atexit
    from multiprocess import util

    def handler():
        # whether our own exit hook has run yet
        _write(path, "ran, exiting=%s" % util._exiting)
    atexit.register(handler)


@pytest.mark.timeout(60)
def test_childs_atexit_handlers_follow_the_running_version(ctx, tmp_path):
    path = tmp_path / "atexit"
    p = ctx.Process(target=_register_exit_handler, args=(str(path),))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    if sys.version_info >= (3, 13):
        # 3.13 ends every child through atexit: the job's handler runs,
        # before our hook
        assert _read(path) == "ran, exiting=False"
    elif ctx.get_start_method() == "spawn":
        # before: a spawned child ran our hook at the end of run(), then
        # its interpreter's exit ran the rest
        assert _read(path) == "ran, exiting=True"
    else:
        # and a forked one left through os._exit
        assert not path.exists()


def _register_handler_then_fail(path):
    _register_exit_handler(path)
    raise ValueError("boom")


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13 behaviour")
def test_childs_atexit_handlers_run_when_its_target_fails(ctx, tmp_path):
    path = tmp_path / "atexit"
    p = ctx.Process(target=_register_handler_then_fail, args=(str(path),))
    p.start()
    p.join(30)
    assert p.exitcode == 1
    assert _read(path) == "ran, exiting=False"


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13 behaviour")
def test_forked_child_does_not_run_its_parents_atexit_handlers(run_script):
    out = run_script("""
        import atexit, multiprocess as mp
        atexit.register(print, "parent handler")
        if __name__ == "__main__":
            for method in ("fork", "forkserver", "spawn"):
                p = mp.get_context(method).Process(target=print, args=(method,))
                p.start()
                p.join()
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["fork", "forkserver", "spawn",
                                       "parent handler"]
