"""The worker side of a process pool: the loop a worker process runs over
its task pipe, and the standard library's queue-protocol ``worker`` kept
for code that drives workers itself."""

import itertools
import mmap
import os
import pickle
import struct
import sys
import time

import _multiprocess as _native

from .. import util
from ._errors import (ExceptionWithTraceback, MaybeEncodingError,
                      _format_tb, traceback)
from ._wire import (_ACK, _ACK_SIZE, _K_ACK, _K_APPLY, _K_APPLY_TIMED,
                    _K_APPLY_WAITED, _K_ERR, _K_FORGET, _K_INITFAIL,
                    _K_JOBDEF, _K_JOBDEF_TIMED, _K_MAP, _K_OK, _K_PART,
                    _K_QUIT, _K_STARMAP, _PART_ID, _STAMP, _STAMP_AT,
                    _STAMP_SEQ, _FrameReader, _dumps, _error_payload, _frame,
                    _loads_chunk, _write_all)


# pathos and older code import these names from the pool module.

def mapstar(args):
    """Call ``args[0]`` on each element of ``args[1]``; return a list."""
    func, items = args
    return list(map(func, items))


def starmapstar(args):
    """Call ``args[0](*item)`` for each item of ``args[1]``; return a list."""
    func, items = args
    return list(itertools.starmap(func, items))


# How long a caller waiting for the result of a task it sent itself
# (ApplyResult.get on a lent result pipe), and the worker that ran such a
# task (_K_APPLY_WAITED) once its task pipe is empty, poll without sleeping
# before they block.  On VMs a wake-up of a sleeping process on another CPU
# costs tens of microseconds, paid by the writer inside write() and again
# by the sleeper: a back-to-back apply() loop pays it twice per call unless
# both ends are still awake.  The price is at most this much CPU time per
# such call.  Workers running map chunks never spin: there the parent is
# the bottleneck and a spinning worker would take a CPU from it.
# MULTIPROCESS_POOL_SPIN_US=0 turns it off.
_SPIN = util._spin_seconds_from_env('MULTIPROCESS_POOL_SPIN_US', 100)


def _read_some(fd, spin=False):
    """Block until the parent sends something; b'' when it went away."""
    if spin and _SPIN > 0:
        _native.PoolEngine.spin_wait(fd, _SPIN)
    while True:
        try:
            return os.read(fd, 1 << 20)
        except InterruptedError:
            continue
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reaches the whole process group; an idle
            # worker ignores it and lets the parent decide what to do.
            continue
        except OSError:
            return b''


def _stamp(ack_map, task, index):
    """Tell the engine that call ``index`` of ``task`` starts now (see
    _STAMP in _wire): it measures task_timeout from here."""
    if ack_map is None:
        return      # no shared word: the engine measures from sending
    seq = ack_map[_STAMP_SEQ]
    ack_map[_STAMP_SEQ] = (seq + 1) & 0xff
    _STAMP.pack_into(ack_map, _STAMP_AT, task, index, time.monotonic_ns())
    ack_map[_STAMP_SEQ] = (seq + 2) & 0xff


def _run_timed(func, items, star, task, ack_map, result_fd, pending):
    """A chunk under task_timeout: each call stamped as it starts; with
    ``result_fd`` each value but the last is sent at once as a part (an
    imap's chunk keeps the values computed before a call that times out).
    Returns the values not sent."""
    values = []
    last = len(items) - 1
    for i, item in enumerate(items):
        _stamp(ack_map, task, i)
        value = func(*item) if star else func(item)
        if result_fd is None or i == last:
            values.append(value)
            continue
        try:
            part = _dumps(value)
        except BaseException as why:
            raise MaybeEncodingError(why, value) from None
        pending += _frame(_K_PART, 0, 0, _PART_ID.pack(task) + part)
        _write_all(result_fd, pending)
        pending.clear()
    return values


class _Memory:
    """Is this worker over max_memory_per_child?  Read from /proc.

    A forked worker maps its parent's pages until it writes to them, and its
    resident set size counts them all: under a parent of 150 MB every forked
    worker would be over a 100 MB cap before running anything.  The cap is
    therefore on the pages this worker holds alone (Private_Clean +
    Private_Dirty of /proc/self/smaps_rollup, Linux 4.14+), which grow with
    what it allocates or writes.  That read walks the page tables (about
    1 ms per 25 MB), so it is made only when the cheap resident size
    (/proc/self/statm, a few microseconds) is over the cap -- private pages
    are resident ones -- and then at most a tenth of the time.
    """

    _PRIVATE = (b'Private_Clean:', b'Private_Dirty:')

    def __init__(self):
        self.page = os.sysconf('SC_PAGE_SIZE')
        self.statm = self._open('/proc/self/statm')
        self.rollup = self._open('/proc/self/smaps_rollup')
        self.next_rollup = 0.0

    @staticmethod
    def _open(path):
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def resident(self):
        """The resident set size in bytes (the peak, without /proc)."""
        if self.statm is not None:
            try:
                return int(os.pread(self.statm, 128, 0).split()[1]) * self.page
            except (OSError, ValueError, IndexError):
                self.statm = None
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def private(self):
        """Bytes of private pages, or None without smaps_rollup."""
        if self.rollup is not None:
            try:
                text = os.pread(self.rollup, 4096, 0)
                return sum(int(line.split()[1]) * 1024      # kB
                           for line in text.splitlines()
                           if line.startswith(self._PRIVATE))
            except (OSError, ValueError, IndexError):
                self.rollup = None
        return None

    def over(self, limit):
        if self.resident() <= limit:
            return False
        if self.rollup is None:
            return True
        start = time.monotonic()
        if start < self.next_rollup:
            return False
        private = self.private()
        end = time.monotonic()
        self.next_rollup = end + 9 * (end - start)
        return private is None or private > limit


def _run_worker(task_fd, result_fd, initializer, initargs, maxtasks,
                wrap_exception, ack_map=None, max_memory=None):
    """The task loop of one pool worker process."""
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            traceback.print_exc()
            try:
                _write_all(result_fd, _frame(_K_INITFAIL, 0, 0, _error_payload(
                    exc, _format_tb(exc))))
            except OSError:
                pass
            return 1
    reader = _FrameReader()
    funcs = {}
    timed = {}          # job id -> send parts (bool), jobs under task_timeout
    memory = _Memory() if max_memory is not None else None
    pending = bytearray()        # frames not yet written to the parent
    done = 0
    waited = False               # the last task's caller waits for it
    while maxtasks is None or done < maxtasks:
        frame = reader.next()
        if frame is None:
            if pending:
                _write_all(result_fd, pending)
                pending.clear()
            frame = reader.big_frame(task_fd)
            if frame is False:
                return 0
            if frame is None:
                data = _read_some(task_fd, waited)
                if not data:
                    return 0
                reader.feed(data)
                continue
        kind, task, job, payload = frame
        if kind == _K_JOBDEF:
            try:
                funcs[job] = (True, pickle.loads(payload))
            except BaseException as exc:
                funcs[job] = (False, exc)
            continue
        if kind == _K_JOBDEF_TIMED:
            timed[job] = payload[0] == 1
            try:
                funcs[job] = (True, pickle.loads(memoryview(payload)[1:]))
            except BaseException as exc:
                funcs[job] = (False, exc)
            continue
        if kind == _K_FORGET:
            for j in struct.unpack('<%dQ' % (len(payload) // 8), payload):
                funcs.pop(j, None)
                timed.pop(j, None)
            continue
        if kind == _K_QUIT:
            break
        # The acknowledgement must be visible to the parent before the task
        # runs: if the task kills this process, the parent knows which one
        # it was.  A shared word when we have one (no system call), else a
        # frame on the result pipe.
        if ack_map is not None:
            _ACK.pack_into(ack_map, 0, task)
        else:
            pending += _frame(_K_ACK, task)
            _write_all(result_fd, pending)
            pending.clear()
        waited = kind == _K_APPLY_WAITED
        try:
            if kind == _K_APPLY or waited:
                func, args, kwds = pickle.loads(payload)
                value = func(*args, **kwds)
            elif kind == _K_APPLY_TIMED:
                func, args, kwds = pickle.loads(payload)
                _stamp(ack_map, task, 0)
                value = func(*args, **kwds)
            else:
                known, func = funcs.get(job, (False, None))
                if not known:
                    raise func if func is not None else RuntimeError(
                        'pool worker got a chunk of unknown job %d' % job)
                items = _loads_chunk(payload)
                parts = timed.get(job)
                if parts is not None:
                    value = _run_timed(func, items, kind == _K_STARMAP, task,
                                       ack_map, result_fd if parts else None,
                                       pending)
                elif kind == _K_MAP:
                    value = list(map(func, items))
                else:
                    value = list(itertools.starmap(func, items))
            try:
                out = _frame(_K_OK, task, 0, _dumps(value))
            except BaseException as why:
                out = _frame(_K_ERR, task, 0, _error_payload(
                    MaybeEncodingError(why, value), None))
        except BaseException as exc:
            tb_text = _format_tb(exc) if wrap_exception else None
            out = _frame(_K_ERR, task, 0, _error_payload(exc, tb_text))
            exc = None
        value = func = None
        pending += out
        done += 1
        if memory is not None and memory.over(max_memory):
            # replaced as after maxtasksperchild: the tasks still queued in
            # our pipe were never acknowledged, the engine sends them on
            break
    if pending:
        _write_all(result_fd, pending)
    return 0


def _pool_worker_entry(task_conn, result_conn, initializer, initargs,
                       maxtasks, wrap_exception, inherited_fds, ack_end=None,
                       max_memory=None):
    """Target of every worker process."""
    for fd in inherited_fds:
        # Under fork the child inherits the parent's ends of the other
        # workers' pipes; holding them would hide their EOFs.
        try:
            os.close(fd)
        except OSError:
            pass
    task_fd, result_fd = task_conn.fd, result_conn.fd
    ack_map = None
    if ack_end is not None:
        ack_map = mmap.mmap(ack_end.fd, _ACK_SIZE)
        ack_end.close()
    code = _run_worker(task_fd, result_fd, initializer, initargs,
                       maxtasks, wrap_exception, ack_map, max_memory)
    if code:
        sys.exit(code)


class _PipeEnd:
    """A pipe end handed to a worker: the fd itself under fork, a duplicate
    passed along by the start method under spawn and forkserver."""

    __slots__ = ('fd',)

    def __init__(self, fd):
        self.fd = fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __reduce__(self):
        from ..reduction import DupFd
        return _rebuild_pipe_end, (DupFd(self.fd),)


def _rebuild_pipe_end(dup):
    return _PipeEnd(dup.detach())


# ------------------------------------------- the standard library's protocol

def worker(inqueue, outqueue, initializer=None, initargs=(), maxtasks=None,
           wrap_exception=False):
    """A worker speaking the standard library's queue protocol.

    Reads ``(job, i, func, args, kwds)`` tuples from ``inqueue`` (``None``
    ends it) and puts ``(job, i, (ok, value))`` on ``outqueue``.  Our own
    pools use the framed protocol above; this is kept for code that drives
    workers itself.
    """
    if maxtasks is not None and (type(maxtasks) is not int or maxtasks < 1):
        raise AssertionError(f'Maxtasks {maxtasks!r} is not valid')
    # the parent's ends of SimpleQueues are of no use here
    for unused in (getattr(inqueue, '_writer', None),
                   getattr(outqueue, '_reader', None)):
        if unused is not None:
            unused.close()
    if initializer is not None:
        initializer(*initargs)
    for job, i, func, args, kwds in itertools.islice(_queued_tasks(inqueue),
                                                     maxtasks):
        try:
            outcome = (True, func(*args, **kwds))
        except Exception as exc:
            wrap = wrap_exception and func is not _helper_reraises_exception
            outcome = (False, ExceptionWithTraceback(exc, exc.__traceback__)
                       if wrap else exc)
        try:
            outqueue.put((job, i, outcome))
        except Exception as why:
            failed = MaybeEncodingError(why, outcome[1])
            outqueue.put((job, i, (False, failed)))
        func = args = kwds = outcome = None


def _queued_tasks(inqueue):
    """Tasks from a stdlib-protocol queue until None, EOF or a closed pipe."""
    while True:
        try:
            task = inqueue.get()
        except (EOFError, OSError):
            return
        if task is None:
            return
        yield task


def _helper_reraises_exception(ex):
    raise ex
