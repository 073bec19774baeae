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


# A pipe's default capacity on Linux.  A payload that fits is written at
# once and start() returns; a bigger one would hold start() until the child
# has started and drained it, so the pipe is enlarged first when it can be.
_PIPE_CAPACITY = 65536


def _make_room(fd, size):
    import fcntl
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (OSError, AttributeError):
        pass        # over /proc/sys/fs/pipe-max-size: start() waits instead


class _DupFd(int):
    """What a pickled fd carries to a spawned child: the fd number itself,
    since ``spawnv_passfds`` keeps it open under the same number."""

    __slots__ = ()
    fd = property(int)

    def detach(self):
        return int(self)


class Popen(popen_fork.Popen):
    method = 'spawn'

    def duplicate_for_child(self, fd):
        # Listed in _fds, the fd survives the exec under the same number.
        self._fds.append(fd)
        return fd

    DupFd = _DupFd

    def _launch(self, process_obj):
        from . import resource_tracker
        # Children report the named resources they create to our tracker.
        self._fds.append(resource_tracker.getfd())
        tracker_fd = self._fds[-1]
        # Pickling may call duplicate_for_child() and so add to _fds.
        payload = spawn.serialize_for_child(process_obj, self,
                                            main_code=True)

        mine = []       # ends we keep; closed by close() or at exit
        theirs = []     # ends only the child keeps
        try:
            exit_r, exit_w = os.pipe()      # EOF when the child is gone
            mine.append(exit_r)
            theirs.append(exit_w)
            data_r, data_w = os.pipe()      # job data; EOF when we are gone
            theirs.append(data_r)
            mine.append(data_w)
            if len(payload) > _PIPE_CAPACITY:
                _make_room(data_w, len(payload))
            argv = spawn.get_command_line(tracker_fd=tracker_fd,
                                          pipe_handle=data_r)
            self.pid = util.spawnv_passfds(spawn.get_executable(), argv,
                                           self._fds + theirs)
            self.sentinel = exit_r
            with open(data_w, 'wb', closefd=False) as out:
                out.write(payload)
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, tuple(mine))
            util.close_fds(*theirs)
