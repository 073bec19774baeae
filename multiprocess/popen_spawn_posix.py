"""The 'spawn' start method: the child is a fresh interpreter.

The child runs ``spawn.spawn_main`` (see ``spawn.get_command_line``) and
reads its preparation data and process object from a pipe.  Only the fds
listed in ``self._fds`` survive into it: the data pipe, the parent-death
pipe, the resource tracker's pipe and whatever objects being pickled asked
for through ``duplicate_for_child`` (a Connection, say).
"""

import os

from . import popen_fork
from . import spawn
from . import util

__all__ = ['Popen']


class _DupFd(object):
    """What a pickled fd carries to a spawned child: the fd number itself,
    since ``spawnv_passfds`` keeps it open under the same number."""

    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


class Popen(popen_fork.Popen):
    method = 'spawn'
    DupFd = _DupFd

    def __init__(self, process_obj):
        self._fds = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return fd

    def _launch(self, process_obj):
        from . import resource_tracker
        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        # Pickling may call duplicate_for_child() and so add to _fds.
        payload = spawn.serialize_for_child(process_obj, self)

        mine = []       # ends we keep; closed by close() or at exit
        theirs = []     # ends only the child keeps
        try:
            exit_r, exit_w = os.pipe()      # EOF when the child is gone
            mine.append(exit_r)
            theirs.append(exit_w)
            data_r, data_w = os.pipe()      # job data; EOF when we are gone
            theirs.append(data_r)
            mine.append(data_w)
            argv = spawn.get_command_line(tracker_fd=tracker_fd,
                                          pipe_handle=data_r)
            self._fds.extend(theirs)
            self.pid = util.spawnv_passfds(spawn.get_executable(), argv,
                                           self._fds)
            self.sentinel = exit_r
            with open(data_w, 'wb', closefd=False) as out:
                out.write(payload)
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, tuple(mine))
            for fd in theirs:
                os.close(fd)
