"""The three start methods: what reaches the child (lambdas, closures,
``__main__`` functions of a script, ``python -c`` or stdin), the main-module
policy of spawn/forkserver children, the Popen handle's API, the forkserver's
preload and restart, and how launch failures surface."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocess as mp
from multiprocess import forkserver, popen_fork, spawn
from .conftest import START_METHODS, subprocess_env

METHODS = START_METHODS


def _outcome(proc):
    return proc.returncode, proc.stdout, proc.stderr


def _run(args, input=None, timeout=90, cwd=None):
    """Run the interpreter with these arguments (-c, -m, - and stdin...)."""
    return _outcome(subprocess.run(
        [sys.executable] + args, input=input, capture_output=True, text=True,
        timeout=timeout, cwd=cwd, env=subprocess_env()))


def _write_result(path, value):
    with open(path, 'w') as f:
        f.write(repr(value))


def _read_result(path):
    with open(path) as f:
        return f.read()


def _report_dill_loaded(path):
    _write_result(path, 'dill' in sys.modules)


def _make_adder(n):
    def add(x):
        return x + n
    return add


def _sleep_forever():
    while True:
        time.sleep(1)


# ---------------------------------------------------------------------------
# lambdas and closures cross the boundary under every start method

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_lambda_target_with_closure_argument(method, tmp_path):
    ctx = mp.get_context(method)
    out = str(tmp_path / 'result')
    offset = 40
    target = lambda path, fn: _write_result(path, fn(2) + offset)  # noqa: E731
    p = ctx.Process(target=target, args=(out, _make_adder(0)))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert _read_result(out) == '42'


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_closure_target_with_lambda_argument(method, tmp_path):
    ctx = mp.get_context(method)
    out = str(tmp_path / 'result')
    add = _make_adder(10)

    def target(path, fn):
        _write_result(path, add(fn(5)))

    p = ctx.Process(target=target, args=(out, lambda v: v * 2))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert _read_result(out) == '20'


_PROGRAM = '''
import sys
import multiprocess as mp

def make_scaler(k):
    def scale(v):
        return v * k
    return scale

def show(label, fn, arg):
    import sys
    print(label, fn(arg), flush=True)

if __name__ == '__main__':
    for method in sys.argv[1:]:
        ctx = mp.get_context(method)
        for label, target, args in [
                ('lambda', lambda fn, a: print('lambda', fn(a), flush=True),
                 (make_scaler(3), 7)),
                ('closure', make_scaler(2), (21,)),
                ('main-func', show, ('main-func', lambda v: v + 1, 41))]:
            p = ctx.Process(target=target, args=args)
            p.start()
            p.join(30)
            print(method, label, 'exit', p.exitcode, flush=True)
'''


def _check_program_output(out, err):
    lines = out.splitlines()
    for method in METHODS:
        for label in ('lambda', 'closure', 'main-func'):
            assert '%s %s exit 0' % (method, label) in lines, err
    assert lines.count('lambda 21') == len(METHODS)
    assert lines.count('main-func 42') == len(METHODS)


@pytest.mark.timeout(120)
def test_script_read_from_stdin_sends_lambdas_and_closures():
    rc, out, err = _run(['-', *METHODS], input=_PROGRAM)
    assert rc == 0, err
    _check_program_output(out, err)


@pytest.mark.timeout(120)
def test_python_dash_c_sends_lambdas_and_closures():
    rc, out, err = _run(['-c', _PROGRAM, *METHODS])
    assert rc == 0, err
    _check_program_output(out, err)


@pytest.mark.timeout(120)
def test_script_file_sends_lambdas_and_closures(run_script, tmp_path):
    rc, out, err = _outcome(run_script(_PROGRAM, *METHODS, as_file=tmp_path / 'prog.py', timeout=90))
    assert rc == 0, err
    _check_program_output(out, err)


# ---------------------------------------------------------------------------
# main-module policy of fresh children

_MAIN_AS_MP_MAIN = '''
import sys
import multiprocess as mp

MARK = 'imported'

def report():
    print('child sees', __name__, MARK, sys.modules['__main__'] is
          sys.modules.get('__mp_main__'), flush=True)

if __name__ == '__main__':
    MARK = 'guarded'
    p = mp.get_context(sys.argv[1]).Process(target=report)
    p.start()
    p.join(30)
    print('exit', p.exitcode)
'''


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_fresh_child_reruns_main_script_as_mp_main(run_script, method, tmp_path):
    rc, out, err = _outcome(run_script(_MAIN_AS_MP_MAIN, method, as_file=tmp_path / 'mainmod.py', timeout=90))
    assert rc == 0, err
    # the script was re-run under the name __mp_main__, aliased as __main__,
    # and its guarded block did not run again
    assert 'child sees __mp_main__ imported True' in out, err
    assert 'exit 0' in out


@pytest.mark.timeout(60)
def test_forked_child_keeps_the_parents_main(run_script, tmp_path):
    rc, out, err = _outcome(run_script(_MAIN_AS_MP_MAIN, 'fork', as_file=tmp_path / 'mainmod.py', timeout=90))
    assert rc == 0, err
    # the package aliases __mp_main__ to the real main in every process
    assert 'child sees __main__ guarded True' in out, err


_UNGUARDED = '''
import sys
import multiprocess as mp

def work():
    pass

ctx = mp.get_context(sys.argv[1])
p = ctx.Process(target=work)
p.start()
p.join(30)
print('parent saw exit', p.exitcode, flush=True)
'''


@pytest.mark.timeout(90)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_unguarded_main_script_gets_the_clear_runtime_error(run_script, method, tmp_path):
    rc, out, err = _outcome(run_script(_UNGUARDED, method, as_file=tmp_path / 'unguarded.py', timeout=90))
    assert 'RuntimeError' in err
    assert "if __name__ == '__main__':" in err
    assert 'bootstrapped' in err
    # no fork bomb: the child failed instead of starting a grandchild
    assert out.count('parent saw exit') == 1, out
    assert 'parent saw exit 1' in out


def test_check_not_importing_main_is_quiet_outside_bootstrap():
    spawn._check_not_importing_main()     # must not raise


def test_check_not_importing_main_raises_while_inheriting():
    me = mp.current_process()
    me._inheriting = True
    try:
        with pytest.raises(RuntimeError, match='freeze_support'):
            spawn.get_preparation_data('x')
    finally:
        del me._inheriting


def test_preparation_data_describes_this_process():
    data = spawn.get_preparation_data('Child-1')
    assert data['name'] == 'Child-1'
    assert data['authkey'] == mp.current_process().authkey
    assert data['dir'] == os.getcwd()
    assert '' not in data['sys_path']
    assert data['start_method'] == mp.get_start_method()
    assert data['sys_argv'] == sys.argv


def test_main_without_a_file_is_not_rerun():
    rc, out, err = _run(['-c', textwrap.dedent('''
        from multiprocess import spawn
        d = spawn.get_preparation_data('x')
        print('init_main_from_path' in d, 'init_main_from_name' in d)
    ''')])
    assert rc == 0, err
    assert out.split() == ['False', 'False']
    rc, out, err = _run(['-'], input=textwrap.dedent('''
        from multiprocess import spawn
        d = spawn.get_preparation_data('x')
        print('init_main_from_path' in d, 'init_main_from_name' in d)
    '''))
    assert rc == 0, err
    assert out.split() == ['False', 'False']


# ---------------------------------------------------------------------------
# spawn's command line and helpers

def test_command_line_runs_spawn_main_with_the_fork_flag():
    argv = spawn.get_command_line(tracker_fd=5, pipe_handle=7)
    assert argv[0] == spawn.get_executable()
    assert argv[-1] == '--multiprocessing-fork'
    assert 'from multiprocess.spawn import spawn_main' in argv[-2]
    assert 'tracker_fd=5' in argv[-2] and 'pipe_handle=7' in argv[-2]
    assert spawn.is_forking(['-c', '--multiprocessing-fork'])
    assert not spawn.is_forking(['prog.py'])


def test_set_executable_accepts_str_bytes_and_paths():
    import pathlib
    saved = spawn.get_executable()
    try:
        for exe in (sys.executable, sys.executable.encode(),
                    pathlib.Path(sys.executable)):
            spawn.set_executable(exe)
            assert spawn.get_executable() == os.fsencode(sys.executable)
    finally:
        spawn.set_executable(saved)


def test_freeze_support_is_a_noop_in_a_normal_process():
    spawn.freeze_support()
    assert spawn.WINEXE is False and spawn.WINSERVICE is False


@pytest.mark.timeout(60)
def test_missing_executable_fails_fast_not_in_a_hang(tmp_path):
    ctx = mp.get_context('spawn')
    saved = spawn.get_executable()
    spawn.set_executable(str(tmp_path / 'no-such-python'))
    try:
        p = ctx.Process(target=_sleep_forever)
        try:
            p.start()
        except OSError:
            return          # util.spawnv_passfds reported the exec error
    finally:
        spawn.set_executable(saved)
    # otherwise (the standard library's behaviour) the child exits at once
    p.join(30)
    assert p.exitcode == 255


@pytest.mark.timeout(60)
def test_spawned_child_does_not_import_dill_for_a_named_target(tmp_path):
    out = str(tmp_path / 'result')
    p = mp.get_context('spawn').Process(target=_report_dill_loaded,
                                        args=(out,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert _read_result(out) == 'False'


# ---------------------------------------------------------------------------
# the Popen handle

@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_wait_with_timeout_then_terminate(method):
    p = mp.get_context(method).Process(target=_sleep_forever)
    p.start()
    popen = p._popen
    assert popen.method == method
    assert isinstance(popen.sentinel, int)
    assert popen.poll() is None
    assert popen.wait(0) is None
    assert popen.wait(0.2) is None
    popen.terminate()
    assert popen.wait(30) == -signal.SIGTERM
    assert popen.poll() == -signal.SIGTERM
    popen.terminate()       # a no-op once reaped
    p.join()
    assert p.exitcode == -signal.SIGTERM


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_kill_reports_sigkill(method):
    p = mp.get_context(method).Process(target=_sleep_forever)
    p.start()
    p.kill()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    p.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_exit_code_of_a_failing_target(method):
    p = mp.get_context(method).Process(target=sys.exit, args=(7,))
    p.start()
    p.join(30)
    assert p.exitcode == 7


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', METHODS)
def test_sentinel_turns_readable_when_the_child_exits(method):
    p = mp.get_context(method).Process(target=time.sleep, args=(0.3,))
    p.start()
    assert not popen_fork._wait_readable(p.sentinel, 0)
    assert popen_fork._wait_readable(p.sentinel, 30)
    p.join(30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_unpicklable_target_fails_in_the_parent(method):
    import threading
    lock = threading.Lock()
    p = mp.get_context(method).Process(target=print, args=(lock,))
    with pytest.raises(Exception):
        p.start()


# ---------------------------------------------------------------------------
# forkserver

_PRELOAD_PROGRAM = '''
import os, sys
import multiprocess as mp

def check(name):
    import sys
    sys.exit(0 if name in sys.modules else 5)

if __name__ == '__main__':
    sys.path.insert(0, sys.argv[1])
    ctx = mp.get_context('forkserver')
    ctx.set_forkserver_preload(['preloaded_mod'])
    codes = []
    for _ in range(2):
        p = ctx.Process(target=check, args=('preloaded_mod',))
        p.start()
        p.join(30)
        codes.append(p.exitcode)
    from multiprocess.forkserver import _forkserver
    print(codes, _forkserver._forkserver_pid, flush=True)
'''


@pytest.mark.timeout(90)
def test_forkserver_preloads_modules_once_in_the_server(tmp_path):
    log = tmp_path / 'imports.log'
    (tmp_path / 'preloaded_mod.py').write_text(
        'import os\n'
        'with open(%r, "a") as f:\n'
        '    f.write("%%d\\n" %% os.getpid())\n' % str(log))
    rc, out, err = _run(['-c', _PRELOAD_PROGRAM, str(tmp_path)])
    assert rc == 0, err
    codes, server_pid = out.strip().rsplit(' ', 1)
    assert codes == '[0, 0]', err
    # imported once, by the server, and inherited by both children
    assert log.read_text().split() == [server_pid]


def test_forkserver_preload_rejects_non_strings():
    with pytest.raises(TypeError):
        forkserver.set_forkserver_preload([1, 2, 3])


@pytest.mark.timeout(90)
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGKILL])
def test_forkserver_death_is_survived(signum):
    rc, out, err = _run(['-c', textwrap.dedent('''
        import os, time
        import multiprocess as mp
        from multiprocess.forkserver import _forkserver
        ctx = mp.get_context('forkserver')
        first = ctx.Process(target=time.sleep, args=(0.5,))
        first.start()
        os.kill(_forkserver._forkserver_pid, %d)
        time.sleep(1.0)
        second = ctx.Process(target=time.sleep, args=(0,))
        second.start()
        second.join(30)
        first.join(30)
        print(second.exitcode, first.exitcode in (0, 255))
    ''' % signum)])
    assert rc == 0, err
    assert out.split() == ['0', 'True']


@pytest.mark.timeout(60)
def test_forkserver_stops_when_the_program_exits():
    rc, out, err = _run(['-c', textwrap.dedent('''
        import time
        import multiprocess as mp
        from multiprocess.forkserver import _forkserver
        p = mp.get_context('forkserver').Process(target=time.sleep, args=(0,))
        p.start()
        p.join(30)
        print(_forkserver._forkserver_pid, _forkserver._forkserver_address)
    ''')])
    assert rc == 0, err
    pid, address = out.split()
    deadline = time.monotonic() + 20
    while True:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, 'fork server outlived its program'
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_forkserver_stop_reaps_the_server():
    rc, out, err = _run(['-c', textwrap.dedent('''
        import os
        from multiprocess.forkserver import _forkserver
        _forkserver.ensure_running()
        pid, address = _forkserver._forkserver_pid, _forkserver._forkserver_address
        _forkserver._stop()
        assert _forkserver._forkserver_pid is None
        assert not os.path.exists(address)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print('stopped')
    ''')])
    assert rc == 0, err
    assert out.strip() == 'stopped'


def test_signed_integers_round_trip_over_a_pipe():
    r, w = os.pipe()
    try:
        for n in (0, -9, 2 ** 40, -(2 ** 62)):
            forkserver.write_signed(w, n)
            assert forkserver.read_signed(r) == n
        os.close(w)
        w = None
        with pytest.raises(EOFError):
            forkserver.read_signed(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


_NESTED = '''
import sys, time
import multiprocess as mp
from multiprocess.forkserver import _forkserver

def grandchild():
    pass

def child(kind, server_pid):
    import sys
    import multiprocess as mp
    from multiprocess.forkserver import _forkserver
    p = mp.get_context('forkserver').Process(target=grandchild)
    p.start()
    p.join(30)
    reused = _forkserver._forkserver_pid == server_pid
    print(kind, p.exitcode, reused, flush=True)

if __name__ == '__main__':
    fs = mp.get_context('forkserver')
    warm = fs.Process(target=grandchild)
    warm.start()
    warm.join(30)
    server = _forkserver._forkserver_pid
    for kind in ('fork', 'forkserver'):
        p = mp.get_context(kind).Process(target=child, args=(kind, server))
        p.start()
        p.join(60)
        print(kind, 'child exit', p.exitcode, flush=True)
'''


@pytest.mark.timeout(120)
def test_children_can_start_forkserver_children(run_script, tmp_path):
    rc, out, err = _outcome(run_script(_NESTED, as_file=tmp_path / 'nested.py', timeout=90))
    assert rc == 0, err
    lines = out.splitlines()
    # a forked child reuses its parent's server, inherited with the fds
    assert 'fork 0 True' in lines, err
    assert 'fork child exit 0' in lines, err
    # a forkserver child starts a server of its own
    assert 'forkserver 0 False' in lines, err
    assert 'forkserver child exit 0' in lines, err


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_main_run_with_dash_m_is_rerun_by_module_name(method, tmp_path):
    (tmp_path / 'runnable_mod.py').write_text(_MAIN_AS_MP_MAIN)
    rc, out, err = _run(['-m', 'runnable_mod', method], cwd=str(tmp_path))
    assert rc == 0, err
    assert 'child sees __mp_main__ imported True' in out, err
    assert 'exit 0' in out


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_functions_typed_into_an_interactive_session_reach_children(method):
    session = textwrap.dedent('''
        import multiprocess as mp
        def triple(v):
            print('tripled', v * 3, flush=True)

        p = mp.get_context(%r).Process(target=triple, args=(14,))
        p.start(); p.join(30); print('exit', p.exitcode, flush=True)
    ''' % method)
    rc, out, err = _run(['-i', '-q'], input=session)
    assert rc == 0, err
    assert 'tripled 42' in out, err
    assert 'exit 0' in out, err


_EXITS_AT_IMPORT = '''
import sys
import multiprocess as mp

def work():
    print('worked', flush=True)

if __name__ != '__main__':
    sys.exit('refusing to be imported')   # unguarded exit at import

if __name__ == '__main__':
    p = mp.get_context('forkserver').Process(target=work)
    p.start()
    p.join(30)
    print('exit', p.exitcode, flush=True)
    q = mp.get_context('fork').Process(target=work)
    q.start()
    q.join(30)
    print('fork exit', q.exitcode, flush=True)
'''


@pytest.mark.timeout(60)
def test_forkserver_survives_a_main_script_that_exits_when_imported(run_script, tmp_path):
    rc, out, err = _outcome(run_script(_EXITS_AT_IMPORT, as_file=tmp_path / 'exits.py', timeout=90))
    assert rc == 0, err
    # the child re-ran the script itself and exited with its message
    assert 'exit 1' in out.splitlines(), err
    assert 'refusing to be imported' in err
    assert 'fork exit 0' in out.splitlines()


_USES_MAIN_IMPORTS = '''
import math
import os.path as osp
import multiprocess as mp

def measure(x):
    print('measured', math.sqrt(x), osp.basename('/a/b'), flush=True)

for method in ('spawn', 'forkserver'):
    p = mp.get_context(method).Process(target=measure, args=(16,))
    p.start()
    p.join(30)
    print(method, 'exit', p.exitcode, flush=True)
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('how', ['stdin', 'dash-c'])
def test_functions_of_a_fileless_main_see_its_imports(how):
    if how == 'stdin':
        rc, out, err = _run(['-'], input=_USES_MAIN_IMPORTS)
    else:
        rc, out, err = _run(['-c', _USES_MAIN_IMPORTS])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines.count('measured 4.0 b') == 2, err
    assert 'spawn exit 0' in lines and 'forkserver exit 0' in lines


def test_preparation_data_lists_the_imports_of_a_fileless_main():
    rc, out, err = _run(['-c', textwrap.dedent('''
        import math, json as j
        from multiprocess import spawn
        print(sorted(spawn.get_preparation_data('x')['main_module_imports'].items()))
    ''')])
    assert rc == 0, err
    assert "('j', 'json')" in out and "('math', 'math')" in out


@pytest.mark.timeout(60)
def test_stopping_inherited_helpers_in_a_forked_child_is_harmless():
    rc, out, err = _run(['-c', textwrap.dedent('''
        import os
        import multiprocess as mp
        from multiprocess.forkserver import _forkserver
        from multiprocess.resource_tracker import _resource_tracker

        def child():
            _forkserver._stop()
            _resource_tracker._stop()

        if __name__ == '__main__':
            _forkserver.ensure_running()
            p = mp.get_context('fork').Process(target=child)
            p.start()
            p.join(30)
            # the parent's server and tracker are still usable
            q = mp.get_context('forkserver').Process(target=os.getpid)
            q.start()
            q.join(30)
            print(p.exitcode, q.exitcode, _resource_tracker._check_alive())
    ''')])
    assert rc == 0, err
    assert out.split() == ['0', '0', 'True'], err


@pytest.mark.timeout(60)
def test_idle_forkserver_preimports_dill_for_its_children():
    rc, out, err = _run(['-c', textwrap.dedent('''
        import sys, time
        import multiprocess as mp

        # exec goes by reference: unpickling the job needs no dill
        PROBE = "import sys; sys.exit(0 if 'dill' in sys.modules else 9)"

        if __name__ == '__main__':
            ctx = mp.get_context('forkserver')
            p = ctx.Process(target=time.sleep, args=(0,))
            p.start()
            p.join(30)
            time.sleep(0.5)     # the server is idle: it warms up
            q = ctx.Process(target=exec, args=(PROBE,))
            q.start()
            q.join(30)
            print(p.exitcode, q.exitcode)
    ''')])
    assert rc == 0, err
    assert out.split() == ['0', '0'], err


_MAIN_GLOBALS_AFTER_WARM_UP = '''
import functools, sys, time
import multiprocess as mp

# Runs in the forkserver too when preloaded: fails there (the server's argv
# is not ours), so the server keeps its own `python -c` __main__.
MODE = sys.argv[1]
if MODE not in ('preload-none', 'preload-fails'):
    raise SystemExit('bad mode')

def logged(func):
    # functools.wraps: such functions travel through dill, by value
    @functools.wraps(func)
    def wrapper(*args):
        return func(*args)
    return wrapper

@logged
def uses_an_import(q):
    q.put(('child', time.time() > 0))
    q.put(double)

@logged
def double(x):
    return 2 * len(sys.argv) * x

if __name__ == '__main__':
    ctx = mp.get_context('forkserver')
    if MODE == 'preload-none':
        ctx.set_forkserver_preload([])
    p = ctx.Process(target=time.sleep, args=(0,))
    p.start()
    p.join(30)
    time.sleep(0.5)     # the idle server imports dill now
    q = ctx.Queue()
    p = ctx.Process(target=uses_an_import, args=(q,))
    p.start()
    print(q.get(timeout=30), q.get(timeout=30)(5), flush=True)
    p.join(30)
    print('exit', p.exitcode, flush=True)
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('mode', ['preload-none', 'preload-fails'])
def test_forkserver_child_main_functions_see_the_rerun_script(run_script, mode, tmp_path):
    # dill, imported by the idle server before the child re-ran the script,
    # must resolve __main__ globals in the child's new __main__, both ways.
    rc, out, err = _outcome(run_script(_MAIN_GLOBALS_AFTER_WARM_UP, mode, as_file=tmp_path / 'main_globals.py', timeout=90))
    assert rc == 0, err
    assert out.splitlines() == ["('child', True) 20", 'exit 0'], err


_LEAN_CHILD = '''
import sys
import multiprocess as mp

def report():
    heavy = ('socket', 'subprocess', 'selectors', 'dill', 'multiprocessing')
    print(sorted(m for m in heavy if m in sys.modules), flush=True)

if __name__ == '__main__':
    p = mp.get_context(sys.argv[1]).Process(target=report)
    p.start()
    p.join()
'''


@pytest.mark.timeout(90)
def test_spawned_child_imports_nothing_it_does_not_use(run_script, tmp_path):
    # socket and subprocess are imported where they are used: a child that
    # only runs a function pays for neither (about 5 ms per spawned child).
    # (A forkserver child inherits whatever its server imported.)
    rc, out, err = _outcome(run_script(_LEAN_CHILD, 'spawn', as_file=tmp_path / 'lean.py', timeout=90))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == '[]', out + err


_MAIN_VIEW = '''
import os, sys
mp = __import__(sys.argv[1])
MARK = 'original'

def view():
    main = sys.modules['__main__']
    names = ('__name__', '__file__', '__package__', '__spec__', '__loader__',
             '__cached__')
    print(repr((MARK, [getattr(main, n, '-') for n in names],
                sys.modules['__mp_main__'] is main, sys.argv[0])), flush=True)

if __name__ == '__main__':
    if sys.argv[2] == 'edit':
        # the file changes after the parent compiled it: the child must run
        # what it finds on disk, as a child that compiles it itself would
        with open(__file__) as f:
            text = f.read()
        with open(__file__, 'w') as f:
            f.write(text.replace("MARK = 'original'", "MARK = 'edited!!'"))
        os.utime(__file__, ns=(0, 0))
    p = mp.get_context('spawn').Process(target=view)
    p.start()
    p.join()
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('edit', ['keep', 'edit'])
def test_spawned_main_matches_the_stdlib_view(run_script, tmp_path, edit):
    # The parent ships the main script compiled; the child's __main__ must
    # look as the stdlib's runpy-made one does, and a script changed on
    # disk in between is read again.
    def child_view(lib):
        script = tmp_path / lib / 'viewer.py'
        script.parent.mkdir(exist_ok=True)
        rc, out, err = _outcome(run_script(_MAIN_VIEW, lib, edit, as_file=script, timeout=90))
        assert rc == 0, err
        return eval(out.strip().splitlines()[-1]), str(script)

    ours, ours_path = child_view('multiprocess')
    theirs, their_path = child_view('multiprocessing')
    mark, attrs, aliased, argv0 = ours
    assert mark == ('edited!!' if edit == 'edit' else 'original')
    assert attrs[1] == ours_path and argv0 == ours_path
    # the same view as the stdlib's child, but for the script's own path
    assert (mark, attrs[:1] + attrs[2:], aliased) == \
        (theirs[0], theirs[1][:1] + theirs[1][2:], theirs[2])


# -- forking a process that has threads ----------------------------------------

_FORK_WITH_THREADS = r'''
import sys, threading, warnings
import multiprocess as mp

def child():
    pass

if __name__ == '__main__':
    ctx = mp.get_context(sys.argv[1])
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        p = ctx.Process(target=child)
        p.start()
        p.join(30)
    stop.set()
    t.join()
    print(p.exitcode, [(w.category.__name__, str(w.message)[:80])
                       for w in caught])
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', START_METHODS)
def test_forking_a_threaded_process_warns_as_the_running_python(run_script, method,
                                                                tmp_path):
    # 3.12's os.fork() warns (DeprecationWarning) when the process has other
    # threads; the stdlib's fork start method lets that warning through, as
    # we do.  spawn and forkserver fork nothing from the threaded process.
    rc, out, err = _outcome(run_script(_FORK_WITH_THREADS, method, as_file=tmp_path / 'threads.py', timeout=90))
    assert rc == 0, err
    exitcode, caught = out.strip().split(' ', 1)
    assert exitcode == '0'
    caught = eval(caught)
    if method == 'fork' and sys.version_info >= (3, 12):
        assert len(caught) == 1, caught
        category, message = caught[0]
        assert category == 'DeprecationWarning'
        assert 'is multi-threaded, use of fork() may' in message
    else:
        assert caught == []


_FLAGS_CHILD = r'''
import sys
import multiprocess as mp

def report(conn):
    conn.send(tuple(sys.flags))

if __name__ == '__main__':
    ctx = mp.get_context(sys.argv[1])
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=report, args=(w,))
    p.start()
    print(tuple(sys.flags) == r.recv())
    p.join(30)
    print(p.exitcode)
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_child_of_an_interpreter_without_site_packages(method, tmp_path):
    # Started with -E -S -O, a parent finds us only through sys.path entries
    # it was given; its children (and the fork server) get the same flags
    # and must still find the package (CPython's TestFlags).
    import multiprocess as pkg
    script = tmp_path / 'flags.py'
    script.write_text(_FLAGS_CHILD)
    paths = [os.path.dirname(os.path.dirname(pkg.__file__)),
             os.path.dirname(__import__('_multiprocess').__file__)]
    import dill
    paths.append(os.path.dirname(os.path.dirname(dill.__file__)))
    boot = ('import sys, runpy; sys.path[:0] = %r; sys.argv = [%r, %r]; '
            'runpy.run_path(%r, run_name="__main__")'
            % (paths, str(script), method, str(script)))
    out = subprocess.run([sys.executable, '-E', '-S', '-O', '-c', boot],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['True', '0'], out.stderr
