"""The process engine's records: a worker process (its pipes, its ack
word) and a task in flight; the stamp a worker writes into its ack word."""

import itertools
import mmap
import os
import time

from ._wire import _ACK_SIZE, _STAMP, _STAMP_AT, _STAMP_SEQ
from ._worker import _PipeEnd


class _Worker:
    """The engine's record of one worker process."""

    __slots__ = ('slot', 'process', 'pid', 'task_fd', 'result_fd',
                 'sentinel', 'jobs', 'forget', 'sent', 'dead', 'quitting',
                 'ack_map', 'lent', 'pidfd', 'expired')

    def __init__(self, slot, process, task_fd, result_fd, ack_map):
        self.slot = slot
        self.ack_map = ack_map          # the task id it said it started
        self.process = process
        self.pid = getattr(process, 'pid', None)
        self.task_fd = task_fd          # parent's write end, non-blocking
        self.result_fd = result_fd      # parent's read end, non-blocking
        sentinel = getattr(process, 'sentinel', None)
        self.sentinel = sentinel if isinstance(sentinel, int) else -1
        self.pidfd = None       # see _Engine._exit_fd
        self.jobs = set()                  # jobs whose callable it holds
        self.forget = []                   # finished jobs it should drop
        self.sent = 0
        self.dead = False
        self.quitting = False
        self.lent = False       # its result pipe is lent to a caller
        self.expired = None     # (task, call index) it was killed for


def _widen_pipe(fd, size=1 << 20):
    """Ask for a 1 MiB pipe buffer (the default is 64 KiB): big chunks and
    results then cross in one write.  Refused above
    /proc/sys/fs/pipe-max-size for unprivileged users: harmless."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, 'F_SETPIPE_SZ', 1031), size)
    except (ImportError, OSError):
        pass


def _ack_word():
    """A shared 8-byte word where a worker writes the id of the task it
    starts: (the end to hand to the worker, the parent's mapping)."""
    try:
        fd = os.memfd_create('multiprocess-pool-ack', os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None, None
    try:
        os.ftruncate(fd, _ACK_SIZE)
        return _PipeEnd(fd), mmap.mmap(fd, _ACK_SIZE)
    except BaseException:
        os.close(fd)
        raise


class _Task:
    __slots__ = ('id', 'job', 'index', 'kind', 'payload')

    def __init__(self, task_id, job, index, kind, payload):
        self.id = task_id
        self.job = job
        self.index = index
        self.kind = kind
        self.payload = payload


class _TimedTask(_Task):
    """A task under task_timeout.  ``data``: an imap chunk's items, kept
    to send the calls after one that timed out elsewhere; ``parts``: the
    values of its calls reported one by one; ``prefix``: the outcomes of
    the calls of its chunk before it (this task is then that rest)."""

    __slots__ = ('timeout', 'sent_at', 'data', 'parts', 'prefix')

    def __init__(self, task_id, job, index, kind, payload, data=None,
                 prefix=None):
        super().__init__(task_id, job, index, kind, payload)
        self.timeout = job.timeout
        self.sent_at = time.monotonic()
        self.data = data
        self.parts = []
        self.prefix = prefix


_task_counter = itertools.count(1)


def _read_stamp(ack_map):
    """(task id, call index, start ns) a worker stamped, or None while it
    is writing it."""
    for _ in range(100):
        seq = ack_map[_STAMP_SEQ]
        if seq & 1:
            continue
        stamp = _STAMP.unpack_from(ack_map, _STAMP_AT)
        if ack_map[_STAMP_SEQ] == seq:
            return stamp
    return None
