"""Process objects: the ``threading.Thread``-like face of a child process.

``BaseProcess`` holds everything that does not depend on how a child is
started; the start method lives in the ``_Popen`` hook that each concrete
subclass (see ``context``) supplies.  A started process delegates waiting,
polling and signalling to its popen object, which has ``pid``, ``sentinel``,
``poll()``, ``wait(timeout)``, ``terminate()``, ``kill()`` and ``close()``.

Module state, per process:

* ``_current_process``: the object standing for this very process (a
  ``_MainProcess`` in the interpreter the user started, the ``BaseProcess``
  being run in a child);
* ``_parent_process``: ``None`` in the main process, a ``_ParentProcess``
  in a child;
* ``_children``: started children not yet known to have finished;
* ``_process_counter``: numbers the children created here, so that names
  and identities read like ``Process-1:3`` (third child of the first child).

``_config`` is a dict that every child inherits from its creator: it carries
the authkey, the semaphore-name prefix, the daemon flag and the temp dir.

Also here, because process objects and authkeys need them and this module
imports nothing else of the package: which popen is spawning a child on
this thread (``get_spawning_popen``; ``context`` offers it too), the
child's stdio helpers, and the slots through which ``util`` takes its part
in a child's life (``_plug_services``).
"""

import itertools
import os
import select
import signal
import sys
import threading
import types
from weakref import WeakSet

__all__ = ['BaseProcess', 'current_process', 'active_children',
           'parent_process']

# The working directory at import time; spawned children start from here so
# that relative paths of the main module keep meaning the same thing.
try:
    ORIGINAL_DIR = os.path.abspath(os.getcwd())
except OSError:         # the directory was removed under us
    ORIGINAL_DIR = None


def current_process():
    """The process object of the running process."""
    return _current_process


def parent_process():
    """The process object of our parent, or None in the main process."""
    return _parent_process


def active_children():
    """A list of the children started here that are still running."""
    _cleanup()
    return list(_children)


def _cleanup():
    # Forget children whose exit status has been collected.  Reading the
    # status through poll() also reaps them, so none lingers as a zombie.
    for child in tuple(_children):
        popen = child._popen
        if popen is not None and popen.poll() is not None:
            _children.discard(child)


def _fd_readable(fd, timeout):
    """True once fd is readable or hung up; timeout in seconds or None."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    if timeout is None:
        ms = None
    else:
        ms = max(0, int(timeout * 1000))
    return bool(poller.poll(ms))


class BaseProcess(object):
    """A unit of work run in its own process; mirrors ``threading.Thread``.

    Subclasses supply ``_Popen(process_obj)``, which starts the child and
    returns the popen object that tracks it.
    """

    _start_method = None
    # Every process object sets _identity, _parent_pid, _popen and _closed
    # in its __init__ (not as class defaults): an attribute read that falls
    # through to the class, or shadows a class attribute, is not
    # specialized by 3.11 or 3.13 respectively, which cost is_alive() and
    # exitcode a quarter of their time.

    def _Popen(self):
        raise NotImplementedError

    def __init__(self, group=None, target=None, name=None, args=(),
                 kwargs={}, *, daemon=None):
        assert group is None, 'group argument must be None for now'
        creator = _current_process
        self._parent_pid, self._parent_name = os.getpid(), creator.name
        self._popen, self._closed = None, False
        self._config = dict(creator._config)
        self._identity = (*creator._identity, next(_process_counter))
        self._target, self._args, self._kwargs = target, tuple(args), \
            dict(kwargs)
        self._name = name or '%s-%s' % (type(self).__name__,
                                        ':'.join(map(str, self._identity)))
        _dangling.add(self)
        if daemon is not None:
            self.daemon = daemon

    # -- guards ---------------------------------------------------------

    def _check_closed(self):
        if self._closed:
            raise ValueError("process object is closed")

    # -- the Thread-like API -------------------------------------------

    def run(self):
        """What the child executes; calls the target unless overridden."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    def start(self):
        """Create the child process and make it call ``run()``."""
        self._check_closed()
        # Misuse is an AssertionError, like threading's checks, with the
        # standard library's messages (_MISUSE).  Plain asserts: a helper
        # taking the conditions as keywords doubled is_alive()'s cost.
        assert self._popen is None, _MISUSE['twice']
        assert self._parent_pid == os.getpid(), _MISUSE['foreign']
        assert not _current_process._config.get('daemon'), _MISUSE['daemonic']
        _cleanup()
        popen = self._popen = self._Popen(self)
        self._sentinel = popen.sentinel
        # The child has its own copy of the target now.  Dropping ours
        # means a target that refers back to this object does not keep it
        # alive (bpo-30775).
        del self._target, self._args, self._kwargs
        _children.add(self)

    def interrupt(self):
        """Interrupt the child with SIGINT: by default it raises
        KeyboardInterrupt there, so its ``finally`` blocks and exit
        handlers run, and it ends with exit code 1 unless it catches it.
        (The stdlib added this in 3.14; it exists here on every version.)"""
        self._check_closed()
        self._popen.interrupt()

    def terminate(self):
        """Ask the child to stop, with SIGTERM."""
        self._check_closed()
        self._popen.terminate()

    def kill(self):
        """Stop the child at once, with SIGKILL."""
        self._check_closed()
        self._popen.kill()

    def join(self, timeout=None):
        """Wait until the child ends, or until timeout seconds passed."""
        self._check_closed()
        assert self._parent_pid == os.getpid(), _MISUSE['join_foreign']
        popen = self._popen
        assert popen is not None, _MISUSE['join_unstarted']
        if popen.wait(timeout) is not None:
            _children.discard(self)

    def is_alive(self):
        """Whether the child has been started and has not ended yet."""
        # Polled in loops: the closed check is spelled out (one call less),
        # and an exit code already collected is not asked for again.
        if self._closed:
            raise ValueError("process object is closed")
        if self is _current_process:
            return True
        assert self._parent_pid == os.getpid(), _MISUSE['test_foreign']
        popen = self._popen
        running = (popen is not None and popen.returncode is None
                   and popen.poll() is None)
        if not running:
            _children.discard(self)
        return running

    def close(self):
        """Release the resources of a finished process object.

        Most methods raise ValueError afterwards.  Closing a child that
        is still running is an error: join() or terminate() it first.
        """
        popen = self._popen
        if popen is not None and popen.poll() is None:
            raise ValueError(
                "Cannot close a process while it is still running. "
                "You should first call join() or terminate().")
        if popen is not None:
            popen.close()
            _children.discard(self)
            self._popen = None
            del self._sentinel
        self._closed = True

    # -- attributes ----------------------------------------------------

    def _get_name(self):
        return self._name

    def _set_name(self, name):
        assert isinstance(name, str), 'name must be a string'
        self._name = name

    def _get_daemon(self):
        return self._config.get('daemon', False)

    def _set_daemon(self, daemonic):
        assert self._popen is None, _MISUSE['started']
        self._config['daemon'] = daemonic

    def _get_authkey(self):
        return self._config['authkey']

    def _set_authkey(self, authkey):
        self._config['authkey'] = AuthenticationString(authkey)

    name = property(_get_name, _set_name)
    daemon = property(_get_daemon, _set_daemon, doc=
                      "A daemonic child is terminated when its creator "
                      "exits; it may not start children of its own.")
    authkey = property(_get_authkey, _set_authkey, doc=
                       "The secret that connections between our processes "
                       "prove; inherited by children.")

    @property
    def exitcode(self):
        """None while running (or unstarted); else the exit status, which
        is -N for a child ended by signal N."""
        if self._closed:
            raise ValueError("process object is closed")
        popen = self._popen
        if popen is None:
            return None
        # Once collected, the exit code is the popen's to keep.
        code = popen.returncode
        return popen.poll() if code is None else code

    @property
    def ident(self):
        """The pid, or None before the process was started."""
        self._check_closed()
        if self is _current_process:
            return os.getpid()
        return self._popen and self._popen.pid

    pid = ident

    @property
    def sentinel(self):
        """A file descriptor that becomes ready when the child ends."""
        self._check_closed()
        try:
            return self._sentinel
        except AttributeError:
            raise ValueError("process not started") from None

    # -- description ---------------------------------------------------

    def _state(self):
        """(word describing the life stage, exit code or None)."""
        if self is _current_process:
            return 'started', None
        if self._closed:
            return 'closed', None
        if self._parent_pid != os.getpid():
            return 'unknown', None
        if self._popen is None:
            return 'initial', None
        code = self._popen.poll()
        return ('started' if code is None else 'stopped'), code

    def __repr__(self):
        stage, code = self._state()
        words = [type(self).__name__, f'name={self._name!r}']
        if self._popen is not None:
            words.append(f'pid={self._popen.pid}')
        words += [f'parent={self._parent_pid}', stage]
        if code is not None:
            words.append(f'exitcode={_exitcode_to_name.get(code, code)}')
        if self.daemon:
            words.append('daemon')
        return '<' + ' '.join(words) + '>'

    # -- running in the child ------------------------------------------

    @staticmethod
    def _after_fork():
        # Finalizers belong to the process that registered them: the child
        # starts with none, then re-initialises fork-sensitive objects
        # (both util's, see _plug_services).
        _services.after_fork()

    def _adopt_start_method(self):
        """In the child, before run(): a process class bound to one start
        method makes the default context use it, so that a grandchild made
        through the default context starts the same way.  Those classes
        live in ``context`` and override this; here there is none."""

    def _become_current(self, parent_sentinel):
        """Rebind this module's state so that the child sees itself;
        returns the process object that was current before."""
        global _current_process, _parent_process, _process_counter
        previous = _current_process
        _current_process = self
        _parent_process = _ParentProcess(self._parent_name,
                                         self._parent_pid, parent_sentinel)
        _process_counter = itertools.count(1)
        _children.clear()
        return previous

    def _child_main(self, parent_sentinel):
        self._adopt_start_method()
        _close_stdin()
        previous = [self._become_current(parent_sentinel)]
        _refresh_native_thread_id()
        try:
            self._after_fork()
        finally:
            # Finalizers of the creator's process object must not run
            # before the after-fork hooks had their chance.
            previous.clear()
        _services.log('child process calling self.run()')
        if _CHILD_EXITS_THROUGH_ATEXIT:
            self.run()      # util's exit steps run from atexit
            return 0
        try:
            self.run()
        finally:
            _services.exit()
        return 0

    def _bootstrap(self, parent_sentinel=None):
        """Entry point of the child: set up, run(), tear down.

        Returns the exit code; the caller (the start method) passes it to
        ``os._exit``.  An uncaught exception is printed to stderr after a
        ``Process <name>:`` line and gives 1; ``SystemExit`` gives the
        status the interpreter would.
        """
        code = 1
        try:
            code = self._child_main(parent_sentinel)
        except SystemExit as exc:
            code = _exit_status_of(exc.code)
        except BaseException:
            _report_crash(self.name)
        finally:
            threading._shutdown()
            _services.log('process exiting with exitcode %d' % code)
            _flush_std_streams()
        return code


_MISUSE = {
    'twice': 'cannot start a process twice',
    'foreign': 'can only start a process object created by current process',
    'daemonic': 'daemonic processes are not allowed to have children',
    'join_foreign': 'can only join a child process',
    'join_unstarted': 'can only join a started process',
    'test_foreign': 'can only test a child process',
    'started': 'process has already started',
}


def _refresh_native_thread_id():
    # The main thread of a forked child still carries its parent's native
    # thread id.
    if threading._HAVE_THREAD_NATIVE_ID:
        threading.main_thread()._set_native_id()


def _report_crash(name):
    import traceback
    sys.stderr.write(f'Process {name}:\n')
    traceback.print_exc()


def _exit_status_of(code):
    """The exit status the interpreter would give ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f'{code}\n')
    return 1


# From 3.13 on, a child forked from a running program (fork, forkserver)
# ends through atexit as a spawned one does: exit handlers the job
# registers run when it ends, and util's exit steps run after them.  Before
# 3.13 the child ran those steps itself at the end of run() and never ran
# atexit at all.
_CHILD_EXITS_THROUGH_ATEXIT = sys.version_info >= (3, 13)


def _close_stdin():
    """Point sys.stdin at /dev/null: a child must not read its parent's
    terminal or pipe (both would then race for the same input)."""
    stdin = sys.stdin
    if stdin is None:
        return
    # A stream already closed, or no /dev/null: the child goes on anyway.
    # (Not contextlib.suppress: importing the package would load it.)
    for step in (stdin.close, _stdin_from_devnull):
        try:
            step()
        except (OSError, ValueError):
            pass


def _stdin_from_devnull():
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        sys.stdin = open(fd, encoding="utf-8", closefd=False)
    except BaseException:
        os.close(fd)
        raise


def _flush_std_streams():
    """Flush stdout and stderr, tolerating missing or closed streams."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


# -- util's part in a child's life ----------------------------------------
#
# Finalizers, after-fork hooks, logging and the exit steps are util's:
# process-wide services that read the current process, so util imports
# this module and not the other way round.  util plugs its part in here
# when it is imported, which every start method's machinery (popen_fork,
# spawn, forkserver: the callers of _bootstrap) does at its own import.
# Before util is imported there is no finalizer, hook or logger for them to
# act on, so doing nothing is then exactly right.

def _nothing(*args):
    pass


_services = types.SimpleNamespace(after_fork=_nothing, log=_nothing,
                                  exit=_nothing)


def _plug_services(*, after_fork, log, exit):
    """Called by util: ``after_fork()`` in a forked child before run(),
    ``log(msg)`` for the child's info messages, ``exit()`` at the end of
    run() where the child does not exit through atexit."""
    _services.after_fork, _services.log, _services.exit = \
        after_fork, log, exit


# -- which popen is spawning a child on this thread ------------------------
#
# While a spawn or forkserver popen pickles the process object for the
# child, it registers itself here.  Objects that may only travel to a child
# being created (locks, queues, authkeys) check for it when pickled, and ask
# it to duplicate their handles for the child.  ``context`` offers these
# functions under the standard library's names.

class _SpawningState(threading.local):
    popen = None


_spawning = _SpawningState()


def get_spawning_popen():
    """The popen object spawning a child on this thread, or None."""
    return _spawning.popen


def set_spawning_popen(popen):
    """Called by a popen around pickling for its child (None after)."""
    _spawning.popen = popen


def assert_spawning(obj):
    """Raise RuntimeError unless a child is being spawned on this thread."""
    if _spawning.popen is None:
        raise RuntimeError(
            f'{type(obj).__name__} objects should only be shared between '
            f'processes through inheritance')


class AuthenticationString(bytes):
    """Bytes that refuse to be pickled, so an authkey cannot leak into a
    message by accident.  Only a child being spawned may receive one."""

    def __reduce__(self):
        if _spawning.popen is None:
            raise TypeError('Pickling an AuthenticationString object is '
                            'disallowed for security reasons')
        return AuthenticationString, (bytes(self),)


class _ParentProcess(BaseProcess):
    """The creator of this process, as seen from the child.

    Liveness is read from ``sentinel``: the child holds the read end of a
    pipe whose write end only the parent has, so it becomes readable (EOF)
    when the parent dies.
    """

    def __init__(self, name, pid, sentinel):
        self._name, self._pid, self._sentinel = name, pid, sentinel
        self._config = {}
        self._identity, self._parent_pid = (), None
        self._popen, self._closed = None, False

    @property
    def ident(self):
        return self._pid

    pid = ident

    def is_alive(self):
        if self._sentinel is None:
            return True
        return not _fd_readable(self._sentinel, 0)

    def join(self, timeout=None):
        """Wait until the parent process ends, or timeout seconds."""
        if self._sentinel is not None:
            _fd_readable(self._sentinel, timeout)


class _MainProcess(BaseProcess):
    """The interpreter the user started."""

    def __init__(self):
        self._name = 'MainProcess'
        # Inherited by every descendant.  The semaphore prefix is short
        # because some systems cap semaphore names at 14 characters.
        self._config = dict(semprefix='/mp',
                            authkey=AuthenticationString(os.urandom(32)))
        self._identity, self._parent_pid = (), None
        self._popen, self._closed = None, False

    def close(self):
        pass


_current_process = _MainProcess()
_parent_process = None
_process_counter = itertools.count(1)
_children = set()

# Exit codes of children ended by a signal, as the signal's name: -15 reads
# as '-SIGTERM' in a repr.  Aliases (SIGIOT for SIGABRT) are skipped.
_exitcode_to_name = {-sig.value: f'-{sig.name}' for sig in signal.Signals}

# Every process object ever created and not yet collected; the test suite
# compares snapshots of it to find leaks.
_dangling = WeakSet()
