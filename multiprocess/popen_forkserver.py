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


class _DupFd(object):
    """What a pickled fd carries to a forkserver child: its position in the
    list of fds sent along with the request."""

    def __init__(self, ind):
        self.ind = ind

    def detach(self):
        return forkserver.get_inherited_fds()[self.ind]


class Popen(popen_fork.Popen):
    method = 'forkserver'
    DupFd = _DupFd

    def __init__(self, process_obj):
        self._fds = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return len(self._fds) - 1

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
        if self.returncode is not None:
            return self.returncode
        blocking = flag != os.WNOHANG
        if not popen_fork._wait_readable(self.sentinel,
                                         None if blocking else 0):
            return None
        try:
            self.returncode = forkserver.read_signed(self.sentinel)
        except (OSError, EOFError):
            # No exit code will ever come: the server itself died.
            self.returncode = 255
        return self.returncode
