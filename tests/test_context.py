"""Contexts and the package facade: start-method selection, the concrete
contexts and their Process classes, the spawning-popen registry, and the
public names the package exports."""
import multiprocessing as std_mp
import os
import threading

import pytest

import multiprocess as mp
from multiprocess import context, exceptions, process


@pytest.fixture
def restore_start_method():
    old = mp.get_start_method(allow_none=True)
    yield
    mp.set_start_method(old, force=True)


# -- the facade ----------------------------------------------------------

def test_all_matches_stdlib_plus_pool_errors():
    assert set(mp.__all__) == set(std_mp.__all__) | {"WorkerLostError",
                                                     "TaskTimeoutError"}
    for name in mp.__all__:
        assert hasattr(mp, name), name


def test_version_is_the_installed_distributions():
    # PyPI's multiprocess has __version__ too; code checks it.
    from importlib.metadata import version
    assert mp.__version__ == version("multiprocess")


def test_star_import_gives_every_public_name():
    namespace = {}
    exec("from multiprocess import *", namespace)
    assert set(mp.__all__) <= set(namespace)


def test_facade_is_bound_to_the_default_context():
    default = context._default_context
    assert mp.Process is context.Process
    assert mp.get_context.__self__ is default
    assert mp.Lock.__self__ is default
    assert mp.current_process is process.current_process
    assert mp.active_children is process.active_children
    assert mp.parent_process is process.parent_process
    assert mp.reducer is default.reducer
    assert (mp.SUBDEBUG, mp.SUBWARNING) == (5, 25)


def test_exceptions_are_the_shared_vocabulary():
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert getattr(mp, name) is cls
        assert getattr(context, name) is cls
        assert getattr(context.BaseContext, name) is cls
    assert issubclass(mp.WorkerLostError, mp.ProcessError)
    assert issubclass(mp.TaskTimeoutError, mp.TimeoutError)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError):
        mp.no_such_name
    with pytest.raises(AttributeError):
        context.no_such_name


@pytest.mark.timeout(60)
def test_importing_the_package_does_not_import_upper_layers(run_script):
    r = run_script("""
        import sys, multiprocess
        heavy = [m for m in ('multiprocess.pool', 'multiprocess.managers',
                             'multiprocess.queues', 'multiprocess.sharedctypes',
                             'multiprocess.synchronize')
                 if m in sys.modules]
        print(heavy)
        """)
    assert r.stdout.strip() == "[]", r.stderr


@pytest.mark.timeout(60)
def test_main_module_alias(run_script):
    r = run_script("""
        import sys, multiprocess
        print(sys.modules['__mp_main__'] is sys.modules['__main__'])
        """)
    assert r.stdout.strip() == "True", r.stderr


def test_cpu_count():
    n = mp.cpu_count()
    assert type(n) is int and n >= 1


# -- start methods ---------------------------------------------------------

def test_all_start_methods_with_fork_first():
    assert mp.get_all_start_methods() == ["fork", "spawn", "forkserver"]


@pytest.mark.timeout(60)
def test_default_start_method_is_fork_and_fixed_on_first_use(run_script):
    r = run_script("""
        import multiprocess as mp
        print(mp.get_start_method(allow_none=True))
        print(mp.get_start_method())
        print(mp.get_start_method(allow_none=True))
        try:
            mp.set_start_method('spawn')
        except RuntimeError as e:
            print('RuntimeError', e)
        mp.set_start_method('spawn', force=True)
        print(mp.get_start_method(), type(mp.get_context()).__name__)
        """)
    assert r.stdout.split("\n")[:5] == [
        "None", "fork", "fork", "RuntimeError context has already been set",
        "spawn SpawnContext"], r.stderr


@pytest.mark.timeout(60)
def test_set_start_method_before_first_use(run_script):
    r = run_script("""
        import multiprocess as mp
        mp.set_start_method('forkserver')
        print(mp.get_start_method())
        """)
    assert r.stdout.strip() == "forkserver", r.stderr


def test_forced_none_forgets_the_choice(restore_start_method):
    mp.set_start_method("spawn", force=True)
    mp.set_start_method(None, force=True)
    assert mp.get_start_method(allow_none=True) is None
    assert mp.get_start_method() == "fork"


def test_unknown_start_method_is_a_value_error(restore_start_method):
    with pytest.raises(ValueError, match="cannot find context"):
        mp.get_context("vfork")
    with pytest.raises(ValueError):
        mp.set_start_method("vfork", force=True)


@pytest.mark.parametrize("method, ctx_name, proc_name, popen", [
    ("fork", "ForkContext", "ForkProcess", "popen_fork"),
    ("spawn", "SpawnContext", "SpawnProcess", "popen_spawn_posix"),
    ("forkserver", "ForkServerContext", "ForkServerProcess",
     "popen_forkserver"),
])
def test_concrete_contexts(method, ctx_name, proc_name, popen):
    ctx = mp.get_context(method)
    assert ctx is context._concrete_contexts[method]
    assert type(ctx).__name__ == ctx_name
    assert ctx.get_context() is ctx
    assert ctx.get_context(method) is ctx
    assert ctx.get_start_method() == method
    assert ctx.Process.__name__ == proc_name
    assert ctx.Process._start_method == method
    assert ctx.Process._popen_module == popen
    assert issubclass(ctx.Process, process.BaseProcess)
    for bad in ("spawn", None):
        with pytest.raises(ValueError, match="concrete context"):
            ctx.set_start_method(bad)


def test_spawn_process_has_nothing_to_repair_after_fork():
    # a spawned child starts afresh: its after-fork step is a no-op
    assert context.SpawnProcess._after_fork() is None


def test_default_process_follows_the_chosen_context(restore_start_method):
    mp.set_start_method("spawn", force=True)
    assert context.Process._start_method is None
    assert context._chosen_process_class() is context.SpawnProcess


def test_force_start_method(restore_start_method):
    context._force_start_method("forkserver")
    assert mp.get_start_method() == "forkserver"


@pytest.mark.timeout(60)
def test_package_and_context_have_plain_attributes_after_a_bare_import():
    # A module holding a __getattr__ gets no specialized attribute reads
    # (every mp.X would cost about double), so none is left after import,
    # even in a program that never pickles anything.
    import subprocess
    import sys
    code = ("import multiprocess, multiprocess.context as c\n"
            "print(hasattr(multiprocess, '__getattr__'),"
            " hasattr(c, '__getattr__'),"
            " multiprocess.reducer is sys.modules['multiprocess.reduction'],"
            " c.reduction is multiprocess.reducer)")
    out = subprocess.run([sys.executable, "-c", "import sys\n" + code],
                         capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True", "True"]


def test_reducer_property_can_be_replaced():
    ctx = mp.get_context("fork")
    original = ctx.reducer
    assert original is context.reduction
    try:
        ctx.reducer = "stand-in"
        assert mp.get_context("spawn").reducer == "stand-in"
    finally:
        ctx.reducer = original
    assert ctx.reducer is original


def test_configuration_helpers_exist():
    for name in ("freeze_support", "get_logger", "log_to_stderr",
                 "allow_connection_pickling", "set_executable",
                 "set_forkserver_preload", "get_all_start_methods"):
        assert callable(getattr(mp.get_context("spawn"), name))
    assert mp.freeze_support() is None      # nothing to do on Linux
    assert mp.get_logger().name == "multiprocess"


# -- the spawning popen ------------------------------------------------------

def test_spawning_popen_is_thread_local():
    marker = object()
    seen = []
    context.set_spawning_popen(marker)
    try:
        assert context.get_spawning_popen() is marker
        context.assert_spawning(object())
        t = threading.Thread(target=lambda: seen.append(
            context.get_spawning_popen()))
        t.start()
        t.join()
    finally:
        context.set_spawning_popen(None)
    assert seen == [None]
    assert context.get_spawning_popen() is None


def test_assert_spawning_names_the_type():
    class Widget:
        pass
    with pytest.raises(RuntimeError, match="Widget objects should only be "
                       "shared between processes through inheritance"):
        context.assert_spawning(Widget())


def test_the_spawning_popen_is_process_state_offered_by_context():
    # AuthenticationString (process) and DupFd (reduction, via context)
    # must see the same popen: one thread-local, two names.
    for name in ("get_spawning_popen", "set_spawning_popen",
                 "assert_spawning"):
        assert getattr(context, name) is getattr(process, name)


def test_a_start_method_class_adopts_its_method_in_the_child(
        restore_start_method):
    mp.set_start_method("fork", force=True)
    context.SpawnProcess()._adopt_start_method()
    assert mp.get_start_method() == "spawn"


def test_the_default_process_class_adopts_nothing(restore_start_method):
    mp.set_start_method("spawn", force=True)
    context.Process()._adopt_start_method()
    assert mp.get_start_method() == "spawn"


def test_the_package_plugs_the_fd_sharer_into_the_context():
    from multiprocess import resource_sharer
    r, w = os.pipe()
    try:
        dup = context._fd_sharer(w)
        assert isinstance(dup, resource_sharer.DupFd)
        fd = dup.detach()
        os.close(fd)
    finally:
        resource_sharer.stop(timeout=10)
        os.close(r)
        os.close(w)
