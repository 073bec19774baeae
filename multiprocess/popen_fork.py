"""The 'fork' start method: the child is an ``os.fork()`` of the parent.

Also the base class of the other two Popen types, which share its
bookkeeping (poll/wait/terminate/kill/close) and differ only in ``_launch``.

Two pipes link parent and child, used only for their end-of-file:

* ``sentinel`` (parent's read end): the child holds the only write end, so
  it turns readable when the child exits, however it exits.  This is what
  ``connection.wait()`` and ``Process.sentinel`` wait on.
* the child's ``parent_sentinel``: the parent holds the only write end
  (closed by ``close()`` or by the parent's death), so the child can tell
  when its parent is gone.
"""

import os
import select
import signal

from . import util

__all__ = ['Popen']


def _wait_readable(fd, timeout):
    """Block until ``fd`` is readable or hung up; False on timeout.

    ``timeout`` in seconds, None for no limit.  poll() rather than select()
    because the fd may be above FD_SETSIZE; Python retries it on EINTR.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if timeout is None:
        return bool(poller.poll())
    return bool(poller.poll(max(0.0, timeout) * 1000.0))


class Popen(object):
    """Handle on a child started with ``os.fork()``."""

    method = 'fork'

    def __init__(self, process_obj):
        # Buffered output not yet flushed would otherwise be written twice,
        # once by each side of the fork.
        util._flush_std_streams()
        self.returncode = None
        self.finalizer = None
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        # A forked child inherits every fd under the same number.
        return fd

    # -- status -------------------------------------------------------------

    def poll(self, flag=os.WNOHANG):
        """Reap the child if it has exited; return its exit code or None.

        The exit code is negative (-signum) when a signal killed the child.
        """
        if self.returncode is not None:
            return self.returncode
        try:
            reaped, status = os.waitpid(self.pid, flag)
        except OSError:
            # ECHILD: not started yet, or reaped behind our back.
            return None
        if reaped == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: forever) for the child."""
        if self.returncode is not None:
            return self.returncode
        if timeout is None:
            return self.poll(0)
        if not _wait_readable(self.sentinel, timeout):
            return None
        # The sentinel fired: the child is gone, waitpid() will not block
        # (except with a zero timeout, where we promise not to block at all).
        return self.poll(os.WNOHANG if timeout == 0.0 else 0)

    # -- signals ------------------------------------------------------------

    def _send_signal(self, sig):
        if self.returncode is not None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass        # already dead
        except OSError:
            # EPERM and friends are only an error for a child still running
            if self.wait(timeout=0.1) is None:
                raise

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    # -- launching ----------------------------------------------------------

    def _launch(self, process_obj):
        to_parent_r, to_parent_w = os.pipe()
        to_child_r, to_child_w = os.pipe()
        self.pid = os.fork()
        if self.pid != 0:
            # parent: keep only our ends (closed by close() or at exit)
            os.close(to_parent_w)
            os.close(to_child_r)
            self.sentinel = to_parent_r
            self.finalizer = util.Finalize(
                self, util.close_fds, (to_parent_r, to_child_w))
            return
        exitcode = 1
        try:
            os.close(to_parent_r)
            os.close(to_child_w)
            exitcode = process_obj._bootstrap(parent_sentinel=to_child_r)
        finally:
            # Never fall back into the parent's stack.
            os._exit(exitcode)

    def close(self):
        """Release the fds held for the child (the child is unaffected)."""
        if self.finalizer is not None:
            self.finalizer()
