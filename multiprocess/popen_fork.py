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


def _run_forked_child(process_obj, unused_fds, parent_sentinel):
    """Body of the forked child: run the job, then leave without unwinding
    into the parent's stack (no atexit handlers, no finally blocks of it)."""
    exitcode = 1
    try:
        util.close_fds(*unused_fds)
        exitcode = util._run_forked_job(
            lambda: process_obj._bootstrap(parent_sentinel=parent_sentinel))
    finally:
        os._exit(exitcode)


class Popen(object):
    """Handle on a child started with ``os.fork()``."""

    method = 'fork'
    # util.Finalize closing the fds we hold for the child; set by _launch.
    finalizer = None

    def __init__(self, process_obj):
        self.returncode = None   # exit code once reaped (-N: killed by N)
        self._fds = []           # fds to hand over (spawn and forkserver)
        # Buffered output not yet flushed would otherwise be written twice,
        # once by each side of the fork.
        util._flush_std_streams()
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        # A forked child inherits every fd under the same number.
        return fd

    # -- status -------------------------------------------------------------

    def poll(self, flag=os.WNOHANG):
        """Reap the child if it has exited; return its exit code or None."""
        if self.returncode is None:
            self._reap(flag)
        return self.returncode

    def _reap(self, flag):
        try:
            reaped, status = os.waitpid(self.pid, flag)
        except OSError:
            # ECHILD: not started yet, or reaped behind our back.
            return
        if reaped == self.pid:      # 0 under WNOHANG while it runs
            self.returncode = os.waitstatus_to_exitcode(status)

    def wait(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: forever) for the child."""
        if self.returncode is None:
            if timeout is not None and not _wait_readable(self.sentinel,
                                                          timeout):
                return None
            # The child is gone (or we may block): reap it.  A zero timeout
            # promises not to block at all.
            self.poll(os.WNOHANG if timeout == 0.0 else 0)
        return self.returncode

    # -- launching ----------------------------------------------------------

    def _launch(self, process_obj):
        child_exit = os.pipe()      # (r, w): EOF for us when the child exits
        parent_exit = os.pipe()     # (r, w): EOF for it when we are gone
        self.pid = os.fork()
        if self.pid == 0:
            _run_forked_child(process_obj, (child_exit[0], parent_exit[1]),
                              parent_exit[0])
        util.close_fds(child_exit[1], parent_exit[0])
        self.sentinel = child_exit[0]
        self.finalizer = util.Finalize(self, util.close_fds,
                                       (child_exit[0], parent_exit[1]))

    def close(self):
        """Release the fds held for the child (the child is unaffected)."""
        if self.finalizer is not None:
            self.finalizer()

    # -- signals ------------------------------------------------------------

    def _send_signal(self, sig):
        if self.returncode is not None:
            return
        try:
            os.kill(self.pid, sig)
        except OSError as exc:
            # ESRCH: it exited and awaits reaping, nothing to do.  Anything
            # else (EPERM ...) is an error only if the child still runs.
            gone = (isinstance(exc, ProcessLookupError) or
                    self.wait(timeout=0.1) is not None)
            if not gone:
                raise

    def interrupt(self):
        self._send_signal(signal.SIGINT)

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)
