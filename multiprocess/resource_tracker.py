"""Resource tracker: unlink named OS resources that a program leaves behind.

Named semaphores and POSIX shared-memory segments outlive the processes
that created them; a program killed before it could unlink them would leak
them until reboot.  So the first process that needs one starts a small
tracker process and talks to it over a pipe:

    creator ---- "REGISTER:/mp-xyz:semaphore\\n" ----> tracker
    owner   ---- "UNREGISTER:/mp-xyz:semaphore\\n" --> tracker
    anyone  ---- "PROBE:0:noop\\n" (liveness check) -> tracker

Every process of the program (children inherit it, spawned ones get it
passed explicitly) holds the write end of that pipe, so the tracker sees EOF
only when all of them are gone.  Whatever is still registered then has
leaked: the tracker warns on its stderr and unlinks it.

Messages are single lines under 512 bytes, so each write is atomic on a pipe
(PIPE_BUF >= 512) and concurrent writers never interleave.  The tracker
ignores SIGINT and SIGTERM, so ``^C`` or ``killall python`` take the program
down but leave the tracker alive to clean up after it.
"""

import contextlib
import os
import signal
import sys
import threading
import warnings

import _multiprocess

from . import spawn
from . import util

__all__ = ['ensure_running', 'register', 'unregister']

# The signals the tracker shields itself from (see the module docstring).
_SHIELDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# A single write to a pipe of at most this many bytes is atomic.
_ATOMIC_WRITE = 512


# From 3.13 on the tracker's exit status tells what it found at the end
# (the stdlib's tests read it from ``ResourceTracker._exitcode``), leak
# warnings name the leaked resources, and a 'dummy' type exists for tests.
_PY313 = sys.version_info >= (3, 13)

# Exit statuses of the tracker process (3.13+; before, always 0).
_EXIT_CLEAN = 0             # nothing was left registered
_EXIT_LEAKED = 1            # something was, and has been unlinked
_EXIT_UNLINK_FAILED = 2     # unlinking a leaked resource failed
_EXIT_BAD_MESSAGE = 3       # a message could not be applied


def _never_cleaned(name):
    # 'noop' lines are liveness probes: nothing is ever registered as one.
    raise RuntimeError('a noop resource is never registered or cleaned up')


# resource type -> function unlinking a resource of that type by name.
_CLEANUP_FUNCS = {
    'noop': _never_cleaned,
    'semaphore': _multiprocess.sem_unlink,
    'shared_memory': _multiprocess.shm_unlink,
}
if _PY313:
    # registered and leaked by tests, without any OS resource behind it
    _CLEANUP_FUNCS['dummy'] = lambda name: None


class ReentrantCallError(RuntimeError):
    """A tracker call was made from inside another tracker call of the same
    thread (typically a finalizer run by the garbage collector)."""


class ResourceTracker(object):
    """Client side of the tracker: owns the pipe to the tracker process."""

    def __init__(self):
        self._lock = threading.RLock()
        self._depth = 0          # nesting of _lock by the owning thread
        self._fd = None          # write end of the tracker's pipe
        self._pid = None         # tracker's pid, if this process started it
        self._exitcode = None    # its exit status, once reaped (3.13+)

    # -- locking that notices re-entrance -----------------------------------

    def _enter(self):
        self._lock.acquire()
        self._depth += 1
        if self._depth > 1:
            # A garbage-collected object's finalizer (a SemLock's, say)
            # called back into the tracker while we were talking to it.
            # Neither starting the tracker nor writing to it is safe then.
            self._leave()
            raise ReentrantCallError(
                'Reentrant call into the multiprocess resource tracker')

    def _leave(self):
        self._depth -= 1
        self._lock.release()

    # -- lifecycle ----------------------------------------------------------

    def _stop(self):
        """Close our end of the pipe and reap the tracker (tests use this)."""
        self._enter()
        try:
            if self._fd is None:
                return
            os.close(self._fd)
            self._fd = None
            pid, self._pid = self._pid, None
            if pid is not None:
                try:
                    _, status = os.waitpid(pid, 0)
                except ChildProcessError:
                    pass    # inherited through fork: our parent's child
                else:
                    if _PY313:
                        self._exitcode = os.waitstatus_to_exitcode(status)
        finally:
            self._leave()

    def getfd(self):
        """Return the pipe's write end, starting the tracker if needed."""
        self.ensure_running()
        return self._fd

    def ensure_running(self):
        """Start the tracker unless this process already has a live one.

        Callable from any process; children normally reuse their parent's
        tracker.  A tracker that died is replaced, with a warning, since
        whatever it had registered is no longer tracked.
        """
        self._enter()
        try:
            if self._fd is not None:
                if self._check_alive():
                    return
                self._forget_dead_tracker()
                warnings.warn('resource_tracker: process died unexpectedly, '
                              'relaunching.  Some resources might leak.')
            self._fd, self._pid = self._launch()
            self._exitcode = None
        finally:
            self._leave()

    def _forget_dead_tracker(self):
        os.close(self._fd)
        self._fd = None
        pid, self._pid = self._pid, None
        if pid is None:
            return      # started by an ancestor: not ours to reap
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _launch(self):
        """Spawn a tracker process; return (write end of its pipe, pid)."""
        keep_open = []
        try:
            keep_open.append(sys.stderr.fileno())
        except Exception:
            pass        # no usable stderr: the tracker's warnings get lost
        read_end, write_end = os.pipe()
        keep_open.append(read_end)
        program = 'from %s import main; main(%d)' % (__name__, read_end)
        # Block the shielded signals around the spawn: the child inherits
        # the mask, so a ^C arriving before it has installed SIG_IGN cannot
        # kill it (main() unblocks them once ignored).
        signal.pthread_sigmask(signal.SIG_BLOCK, _SHIELDED_SIGNALS)
        try:
            pid = spawn._run_helper(program, keep_open)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SHIELDED_SIGNALS)
            os.close(read_end)
        return write_end, pid

    def _check_alive(self):
        """Probe the tracker with a no-op line; False if the pipe is broken."""
        # Written directly: _send() would call ensure_running() again.
        try:
            os.write(self._fd, b'PROBE:0:noop\n')
        except OSError:
            return False
        return True

    # -- messages -----------------------------------------------------------

    def _send(self, cmd, name, rtype):
        line = ('%s:%s:%s\n' % (cmd, name, rtype)).encode('ascii')
        if len(line) > _ATOMIC_WRITE:
            raise ValueError('resource name too long for the resource '
                             'tracker (%d bytes in a message, at most %d)'
                             % (len(line), _ATOMIC_WRITE))
        try:
            self.ensure_running()
        except ReentrantCallError:
            # Still try the write below: it works if the tracker is up.
            warnings.warn(
                'ResourceTracker called reentrantly for resource cleanup, '
                'which is unsupported. The %s object %r might leak.'
                % (rtype, name))
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError('short write to the resource tracker '
                          '(%d of %d bytes)' % (written, len(line)))


    def register(self, name, rtype):
        """Ask the tracker to unlink ``name`` if the program leaks it."""
        self._send('REGISTER', name, rtype)

    def unregister(self, name, rtype):
        """Tell the tracker ``name`` was released properly."""
        self._send('UNREGISTER', name, rtype)

    def _reset_after_fork(self):
        # A thread of the parent may have held the lock at fork time; that
        # thread does not exist in the child.
        self._lock = threading.RLock()
        self._depth = 0


_resource_tracker = ResourceTracker()
# a spawned child whose parent handed it its tracker before this import
_resource_tracker._fd = spawn._inherited_tracker_fd
os.register_at_fork(after_in_child=_resource_tracker._reset_after_fork)
# The module-level API is the single client object's.
(ensure_running, register, unregister, getfd) = (
    _resource_tracker.ensure_running, _resource_tracker.register,
    _resource_tracker.unregister, _resource_tracker.getfd)


# ---------------------------------------------------------------------------
# the tracker process

def _apply(line, live):
    """Apply one protocol line to ``live`` (rtype -> set of names)."""
    cmd, name, rtype = line.strip().decode('ascii').split(':')
    if rtype not in _CLEANUP_FUNCS:
        raise ValueError('Cannot register %s for automatic cleanup: '
                         'unknown resource type %s' % (name, rtype))
    names = live.setdefault(rtype, set())
    if cmd == 'REGISTER':
        names.add(name)
    elif cmd == 'UNREGISTER':
        names.remove(name)
    elif cmd != 'PROBE':
        raise RuntimeError('unrecognized command %r' % cmd)


def _clean_up(live):
    """Warn about and unlink every resource still registered; return the
    tracker's exit status."""
    status = _EXIT_CLEAN
    for rtype, names in live.items():
        if not names:
            continue
        status = max(status, _EXIT_LEAKED)
        if rtype != 'dummy':
            message = ('resource_tracker: There appear to be %d leaked %s '
                       'objects to clean up at shutdown' % (len(names), rtype))
            if _PY313:
                message += ': %s' % (names,)
            try:
                warnings.warn(message)
            except Exception:
                pass
        unlink = _CLEANUP_FUNCS[rtype]
        for name in names:
            # Whoever registered it died without unregistering it.
            try:
                unlink(name)
            except Exception as exc:
                status = _EXIT_UNLINK_FAILED
                warnings.warn('resource_tracker: %r: %s' % (name, exc))
    return status


def main(fd):
    """Run the tracker: read messages from ``fd`` until every writer is gone."""
    for signum in _SHIELDED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SHIELDED_SIGNALS)
    # The tracker outlives the program: let go of its stdin and stdout.
    for stream_name in ('stdin', 'stdout'):
        with contextlib.suppress(Exception):
            getattr(sys, stream_name).close()
    live = {rtype: set() for rtype in _CLEANUP_FUNCS}
    bad_message = False
    try:
        with open(fd, 'rb') as messages:
            for line in messages:
                try:
                    _apply(line, live)
                except Exception:
                    bad_message = True
                    # A bad message must not stop the tracking of the rest.
                    try:
                        sys.excepthook(*sys.exc_info())
                    except BaseException:
                        pass
    finally:
        status = _clean_up(live)
    if bad_message and status == _EXIT_CLEAN:
        # what was left behind says more than a garbled line
        status = _EXIT_BAD_MESSAGE
    if _PY313:
        sys.exit(status)
