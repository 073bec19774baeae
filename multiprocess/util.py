"""Process-wide services shared by the whole package.

* logging: one package logger (``get_logger``), silent until asked for,
  and the cheap ``debug``/``info``/``sub_debug``/``sub_warning`` helpers
  that do nothing while it does not exist;
* finalization: ``Finalize`` callbacks run when an object is collected or,
  ordered by exit priority, when the process exits (``_exit_function``,
  registered with atexit, which also stops and reaps our children);
* after-fork hooks (``register_after_fork``) that re-initialise objects in
  a child created by fork, and fork-aware lock and thread-local types;
* process plumbing: a private temp dir, starting a program with only chosen
  fds open (``spawnv_passfds``), fd closing, std stream helpers.

It reads the current process object (its config, its children), so it
imports ``process`` and nothing higher.  ``process`` runs a child's life
and reaches these services only through what this module plugs in at
import (``process._plug_services``): the child's after-fork steps, its
log messages and its exit steps.
"""

import atexit
import itertools
import os
import sys
import threading        # set up before our atexit hook exists: the hook
                        # joins children, and threading must still work
import weakref

from . import process

__all__ = [
    # logging
    'get_logger', 'log_to_stderr', 'SUBDEBUG', 'SUBWARNING',
    'sub_debug', 'debug', 'info', 'sub_warning',
    # finalization and fork hooks
    'Finalize', 'is_exiting', 'register_after_fork',
    'ForkAwareThreadLock', 'ForkAwareLocal',
    # plumbing
    'get_temp_dir', 'close_all_fds_except',
]


# ------------------------------------------------ abstract unix sockets

# Linux (and Android) let a unix socket live in an abstract namespace: its
# address starts with a NUL byte and it has no file to clean up.
def _platform_supports_abstract_sockets():
    return sys.platform == 'linux' or hasattr(sys, 'getandroidapilevel')


abstract_sockets_supported = _platform_supports_abstract_sockets()


def is_abstract_socket_namespace(address):
    """Whether a unix socket address names the abstract namespace."""
    if not address:
        return False
    if isinstance(address, (bytes, str)):
        return address[:1] in (b'\0', '\0')
    raise TypeError(f'address type of {address!r} unrecognized')


# ---------------------------------------------------------------- logging

# Two extra levels: SUBDEBUG below DEBUG, SUBWARNING between INFO and
# WARNING.  The standard ones are repeated so that logging need not be
# imported until a logger is wanted.
SUBDEBUG, SUBWARNING = 5, 25
NOTSET, DEBUG, INFO = 0, 10, 20

LOGGER_NAME = 'multiprocess'
DEFAULT_LOGGING_FORMAT = '[%(levelname)s/%(processName)s] %(message)s'

_logger = None            # created by get_logger()
_log_to_stderr = False    # spawn passes this on so children log alike


def _leveled(level, name):
    # The helpers look _logger up at each call, and only that: late in
    # interpreter shutdown the module's globals are set to None, and a
    # finalizer that logs must then quietly do nothing.
    # stacklevel=2: the record names the caller's file and line, not this
    # helper's, as the standard library's helpers do since gh-113421 (3.13,
    # and the later 3.11 and 3.12 bugfix releases).  We do it on 3.10 too.
    def log(msg, *args):
        logger = _logger
        if logger:
            logger.log(level, msg, *args, stacklevel=2)
    log.__name__ = log.__qualname__ = name
    log.__doc__ = f'Log msg % args at level {level}, if logging is on.'
    return log


sub_debug = _leveled(SUBDEBUG, 'sub_debug')
debug = _leveled(DEBUG, 'debug')
info = _leveled(INFO, 'info')
sub_warning = _leveled(SUBWARNING, 'sub_warning')


def get_logger():
    """The package's logger ('multiprocess'), created on first call.

    It does not propagate to the root logger.  Creating it moves our exit
    hook to the end of the atexit list, so that it runs before logging's
    own shutdown and our exit messages can still be written.
    """
    global _logger
    import logging
    with logging._lock:
        if not _logger:
            created = logging.getLogger(LOGGER_NAME)
            created.propagate = 0
            created.addFilter(_name_the_process)
            atexit.unregister(_exit_function)
            atexit.register(_exit_function)
            _logger = created
    return _logger


def _name_the_process(record):
    # logging fills in processName from the standard library's
    # multiprocessing module, which knows nothing of our processes; our
    # records carry our process's name instead.
    proc = process.current_process()
    if proc is not None:
        record.processName = proc.name
    return True


def log_to_stderr(level=None):
    """Add a stderr handler to the package logger and return the logger."""
    import logging
    global _log_to_stderr
    _log_to_stderr = True       # spawned children will do the same
    logger = get_logger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    return logger


# ------------------------------------------------------------ temp dir

def _remove_temp_dir(rmtree, tempdir):
    rmtree(tempdir)
    # This can run very late in interpreter shutdown, when the process
    # module's globals may already be gone (current_process() is None).
    config = getattr(process.current_process(), '_config', {})
    config['tempdir'] = None


def get_temp_dir():
    """A private directory for this process, removed when it exits.

    Children started by fork share their creator's (it is in ``_config``).
    """
    config = process.current_process()._config
    tempdir = config.get('tempdir')
    if tempdir is None:
        import shutil
        import tempfile
        tempdir = tempfile.mkdtemp(prefix='pymp-')
        info('created temp directory %s', tempdir)
        # shutil.rmtree is passed in so that the finalizer still has it
        # when module globals are being torn down.
        Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir),
                 exitpriority=-100)
        config['tempdir'] = tempdir
    return tempdir


# ----------------------------------------------------- after-fork hooks

# (sequence number, id(obj), func) -> obj.  Weak values: an object that
# dies takes its hook with it.  The sequence number keeps registration
# order and makes keys unique.
_afterfork_registry = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()


def register_after_fork(obj, func):
    """Call ``func(obj)`` in each child created by fork, while obj lives."""
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


def _run_after_forkers():
    hooks = sorted(_afterfork_registry.items(), key=lambda item: item[0][0])
    for (_, _, func), obj in hooks:
        try:
            func(obj)
        except Exception as exc:
            info('after forker raised exception %s', exc)


# --------------------------------------------------------- finalization

# (exitpriority, sequence number) -> Finalize.  A plain dict: the test
# suite copies, clears and restores it.
_finalizer_registry = {}
_finalizer_counter = itertools.count()


class Finalize(object):
    """Call ``callback(*args, **kwargs)`` once: when ``obj`` is garbage
    collected, when the finalizer is called, or at process exit.

    At exit, finalizers with an ``exitpriority`` run from the highest
    priority down, newest first within a priority; those without one
    (``None``) never run at exit.  With ``obj`` None, an exitpriority is
    required.  A finalizer inherited through fork does nothing in the
    child.
    """

    def __init__(self, obj, callback, args=(), kwargs=None,
                 exitpriority=None):
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(
                f"Exitpriority ({exitpriority!r}) must be None or int, "
                f"not {type(exitpriority)!s}")
        if obj is None and exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        self._pid = os.getpid()
        self._callback, self._args = callback, args
        self._kwargs = kwargs if kwargs else {}
        if obj is not None:
            self._weakref = weakref.ref(obj, self)
        self._key = key = (exitpriority, next(_finalizer_counter))
        _finalizer_registry[key] = self

    def _forget(self):
        self._weakref = None
        self._callback = None
        self._args = None
        self._kwargs = None
        self._key = None

    def __call__(self, wr=None,
                 # Bound at definition time: the call may come during
                 # shutdown, after this module's globals were cleared.
                 _registry=_finalizer_registry, _getpid=os.getpid,
                 _note=sub_debug):
        """Run the callback, unless it already ran or was cancelled."""
        if _registry.pop(self._key, None) is None:
            _note('finalizer no longer registered')
            return None
        result = None
        if self._pid == _getpid():
            _note('finalizer calling %s with args %s and kwargs %s',
                  self._callback, self._args, self._kwargs)
            result = self._callback(*self._args, **self._kwargs)
        else:
            _note('finalizer ignored because different process')
        self._forget()
        return result

    def cancel(self):
        """Make sure the callback will not run."""
        if _finalizer_registry.pop(self._key, None) is not None:
            self._forget()

    def still_active(self):
        """Whether the callback is still due."""
        return self._key in _finalizer_registry

    def __repr__(self):
        cls = type(self).__name__
        ref = getattr(self, '_weakref', None)
        obj = ref() if callable(ref) else None
        if obj is None:
            return f'<{cls} object, dead>'
        parts = [f'<{cls} object, callback='
                 f'{getattr(self._callback, "__name__", self._callback)}']
        extras = (('args', self._args), ('kwargs', self._kwargs),
                  ('exitpriority', self._key[0]))
        parts += [f'{label}={value}' for label, value in extras
                  if value or (label == 'exitpriority' and value is not None)]
        return ', '.join(parts) + '>'


def _run_finalizers(minpriority=None):
    """Run the finalizers that have an exit priority >= minpriority (any
    exit priority when None), highest first, newest first among equals.

    With minpriority None the registry is emptied afterwards, so that
    finalizers without an exit priority are dropped too.
    """
    registry = _finalizer_registry
    if registry is None:        # module globals already torn down
        return
    # The registry can change under us (garbage collection, other
    # threads): iterate over a snapshot of its keys, taken atomically.
    due = []
    for key in list(registry):
        priority = key[0]
        if priority is None:
            continue
        if minpriority is None or priority >= minpriority:
            due.append(key)
    due.sort(reverse=True)
    for finalizer in map(registry.get, due):
        # None: it ran or was cancelled meanwhile.
        if finalizer is not None:
            sub_debug('calling %s', finalizer)
            _call_reporting_errors(finalizer)
    if minpriority is None:
        registry.clear()


def _call_reporting_errors(func):
    # A failing finalizer must not keep the others from running.
    try:
        func()
    except Exception:
        import traceback
        traceback.print_exc()


# ----------------------------------------------------------- pool size

# 3.13's pool sizes itself by the CPUs this process may run on (affinity,
# PYTHON_CPU_COUNT); older versions count the machine's.
_cpu_count_for_pools = getattr(os, 'process_cpu_count', os.cpu_count)


def _chunks(iterable, size):
    """Lists of `size` items of `iterable` (the last one shorter): the
    tasks of a pool's or an executor's map with a chunk size."""
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _default_pool_size():
    """Workers a pool gets when not told how many."""
    return _cpu_count_for_pools() or 1


# -------------------------------------------------------------- exiting

_exiting = False


def is_exiting():
    """Whether this process is shutting down."""
    # None means the module's globals were cleared: very much exiting.
    return _exiting or _exiting is None


def _stop_children(current_process, active_children, info):
    # current_process() is None when the process module was torn down
    # (someone replaced sys.modules): there is nothing to reap then.
    if current_process() is None:
        return
    # Daemonic children are terminated first, then every child is waited
    # for, so that no child outlives us as an orphan or a zombie.
    doomed = [child for child in active_children() if child.daemon]
    for child in doomed:
        info('calling terminate() for daemon %s', child.name)
        child._popen.terminate()
    for child in active_children():
        info('calling join() for process %s', child.name)
        child.join()


def _exit_function(info=info, debug=debug, _run_finalizers=_run_finalizers,
                   active_children=process.active_children,
                   current_process=process.current_process,
                   _stop_children=_stop_children):
    """Our atexit hook; also called by a child at the end of its run().

    1. finalizers with exit priority >= 0 (queues flush, pools stop);
    2. daemonic children are terminated, then every child is joined;
    3. all remaining finalizers with an exit priority.

    The defaults hold what it needs, because it may run after this
    module's globals were cleared.  Runs once per process.
    """
    global _exiting
    if _exiting:
        return
    _exiting = True
    info('process shutting down')
    debug('running all "atexit" finalizers with priority >= 0')
    _run_finalizers(0)
    _stop_children(current_process, active_children, info)
    debug('running the remaining "atexit" finalizers')
    _run_finalizers()


atexit.register(_exit_function)


def _after_fork_in_child():
    # Finalizers belong to the process that registered them: a forked
    # child starts with none, then re-initialises fork-sensitive objects.
    _finalizer_registry.clear()
    _run_after_forkers()


def _exit_steps():
    # Looked up at each call: a replaced util._exit_function is the one run.
    _exit_function()


# Our part in a child's life, which process runs (see _plug_services there).
process._plug_services(after_fork=_after_fork_in_child, log=info,
                       exit=_exit_steps)


# A child's stdio and the way it exits are the process module's (it runs
# the child); offered here under their old names too.
_CHILD_EXITS_THROUGH_ATEXIT = process._CHILD_EXITS_THROUGH_ATEXIT
_close_stdin = process._close_stdin
_flush_std_streams = process._flush_std_streams


def _run_forked_job(job):
    """Run ``job()`` (a process bootstrap) in a freshly forked child and
    return its exit code, honouring the running version's exit handling."""
    if not _CHILD_EXITS_THROUGH_ATEXIT:
        return job()
    # The parent's handlers are the parent's business, not the child's.
    atexit._clear()
    atexit.register(_exit_function)
    try:
        return job()
    finally:
        atexit._run_exitfuncs()
        _flush_std_streams()


# ----------------------------------------------------- fork-aware types

class ForkAwareThreadLock(object):
    """A thread lock that a child created by fork gets back unlocked."""

    def __init__(self):
        lock = self._lock = threading.Lock()
        self.acquire, self.release = lock.acquire, lock.release
        register_after_fork(self, type(self)._at_fork_reinit)

    def __enter__(self):
        return self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()

    def _at_fork_reinit(self):
        # The fork may have happened while another thread held the lock.
        self._lock._at_fork_reinit()


def _clear_local(local):
    local.__dict__.clear()


class ForkAwareLocal(threading.local):
    """Thread-local storage that a child created by fork gets back empty;
    pickles as a fresh, empty instance."""

    def __init__(self):
        register_after_fork(self, _clear_local)

    def __reduce__(self):
        return type(self), ()


# ------------------------------------------------------ tuning knobs

def _spin_seconds_from_env(name, default_us):
    """The busy-wait time set by the environment variable ``name`` in whole
    microseconds, as seconds (never negative); ``default_us`` when it is
    unset or not a number.  The pool and connections each read their own."""
    try:
        micros = int(os.environ.get(name, default_us))
    except ValueError:
        micros = default_us
    return max(micros, 0) / 1e6


# ------------------------------------------------------ fds and streams

def _open_fd_limit(fallback=256):
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return fallback


MAXFD = _open_fd_limit()


def close_all_fds_except(fds):
    """Close every fd below MAXFD except those in ``fds``."""
    keep = sorted(set(fds))
    assert not keep or keep[-1] < MAXFD, 'fd too large'
    low = 0
    for high in keep + [MAXFD]:
        # Empty ranges are skipped: on Linux, Python 3.11 turns
        # os.closerange(0, 0) into close_range(0, UINT_MAX), which closes
        # every fd (the standard library's version trips on this).
        if low < high:
            os.closerange(low, high)
        low = high + 1


def close_fds(*fds):
    """Close each file descriptor given as an argument."""
    for fd in fds:
        os.close(fd)


def _args_from_interpreter_flags():
    """The command-line options that reproduce this interpreter's settings
    (-O, -W, -X ...) in a child interpreter.  subprocess is imported only
    here: a spawned child that never starts a program should not pay for it
    (with selectors and locale, about 3 ms)."""
    import subprocess
    return subprocess._args_from_interpreter_flags()


def spawnv_passfds(path, args, passfds):
    """Start program ``path`` with argv ``args``; only the fds in
    ``passfds`` (made inheritable) stay open in it.  Returns the pid.

    Raises OSError, after reaping the child, if the program could not be
    executed.
    """
    import _posixsubprocess
    import subprocess
    err_r, err_w = os.pipe()
    # err_w must survive close_fds until exec (it is close-on-exec, and
    # fork_exec leaves it so), or an exec failure could not be reported.
    keep = tuple(sorted({*map(int, passfds), err_w}))
    try:
        no_fd = -1
        if sys.version_info >= (3, 11):
            # 3.11 added process_group (before gid) and the vfork switch
            ids, last = (-1, None, None, None), (subprocess._USE_VFORK,)
        else:
            ids, last = (None, None, None), ()
        pid = _posixsubprocess.fork_exec(
            args, [os.fsencode(path)],
            True, keep,              # close_fds, fds to keep
            None, None,              # cwd, env (inherit both)
            no_fd, no_fd, no_fd, no_fd, no_fd, no_fd,   # std streams as-is
            err_r, err_w,            # the child reports exec errors here
            False, False,            # restore_signals, start_new_session
            *ids,                    # [process_group], gid, gids, uid
            -1, None,                # umask, preexec_fn
            *last)
        os.close(err_w)
        err_w = -1
        report = _read_all(err_r)
    finally:
        os.close(err_r)
        if err_w != -1:
            os.close(err_w)
    if report:
        _reap(pid)
        raise _exec_error(report, path)
    return pid


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 50000)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _exec_error(report, path):
    # The child writes b"ExceptionName:hex_errno:description".
    try:
        _, hex_errno, _ = report.split(b':', 2)
        errno_ = int(hex_errno, 16)
    except ValueError:
        return OSError(f'could not start {path!r}: {report!r}')
    return OSError(errno_, os.strerror(errno_), path)


# -------------------------------------------------------- test support

def _cleanup_tests():
    """Release the package's resources after a test run: reap children,
    stop the fork server and the resource tracker, run the finalizers
    (removing temp dirs at once, bpo-37421) and reap whatever is left."""
    from test import support
    steps = [process._cleanup]
    # The fork server and the resource tracker run only if their module
    # was imported: stop those that were (importing them here would start
    # nothing, and would make this layer import the ones above it).
    for name, helper in (('forkserver', '_forkserver'),
                         ('resource_tracker', '_resource_tracker')):
        module = sys.modules.get('%s.%s' % (__package__, name))
        if module is not None:
            steps.append(getattr(module, helper)._stop)
    steps += [_run_finalizers, support.gc_collect, support.reap_children]
    for step in steps:
        step()
