"""The 'forkserver' start method: children are forked by the fork server.

See ``forkserver`` for the server and its protocol.  The status pipe
returned by ``connect_to_new_process`` doubles as the sentinel: the server
writes the child's pid on it at once (consumed by ``_launch``), then the
exit code when the child is reaped, then closes it.
"""

import os

from . import reduction
if not reduction.HAVE_SEND_HANDLE:
    raise ImportError('No support for sending fds between processes')
from . import forkserver
from . import popen_fork
from . import spawn
from . import util

__all__ = ['Popen']


class _DupFd(int):
    """What a pickled fd carries to a forkserver child: the fd's position in
    the list of fds sent along with the request."""

    __slots__ = ()
    ind = property(int)

    def detach(self):
        return forkserver.get_inherited_fds()[self]


class Popen(popen_fork.Popen):
    method = 'forkserver'

    def duplicate_for_child(self, fd):
        # The fd travels with the request; the child finds it by position.
        self._fds.append(fd)
        return len(self._fds) - 1

    DupFd = _DupFd

    def _launch(self, process_obj):
        # Pickle first: pickling fills self._fds through duplicate_for_child.
        payload = spawn.serialize_for_child(process_obj, self)
        self.sentinel, data_w = forkserver.connect_to_new_process(self._fds)
        # The child's parent sentinel is the data pipe: keep a copy of its
        # write end open for as long as this Popen is not closed.
        keep_w = os.dup(data_w)
        self.finalizer = util.Finalize(self, util.close_fds,
                                       (keep_w, self.sentinel))
        with open(data_w, 'wb', closefd=True) as out:
            out.write(payload)
        self.pid = forkserver.read_signed(self.sentinel)

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            # The server writes the exit code once it has reaped the child.
            limit = 0 if flag == os.WNOHANG else None
            if popen_fork._wait_readable(self.sentinel, limit):
                self.returncode = self._read_exit_code()
        return self.returncode

    def _read_exit_code(self):
        try:
            return forkserver.read_signed(self.sentinel)
        except (OSError, EOFError):
            # No exit code will ever come: the server itself died.
            return 255
