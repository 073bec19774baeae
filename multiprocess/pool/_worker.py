"""The worker side of a process pool: the loop a worker process runs over
its task pipe, and the standard library's queue-protocol ``worker`` kept
for code that drives workers itself."""

import itertools
import mmap
import os
import pickle
import struct
import sys

import _multiprocess as _native

from .. import util
from ._errors import (ExceptionWithTraceback, MaybeEncodingError,
                      _format_tb, traceback)
from ._wire import (_ACK, _K_ACK, _K_APPLY, _K_APPLY_WAITED, _K_ERR,
                    _K_FORGET, _K_INITFAIL, _K_JOBDEF, _K_MAP, _K_OK,
                    _K_QUIT, _FrameReader, _dumps, _error_payload, _frame,
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


def _run_worker(task_fd, result_fd, initializer, initargs, maxtasks,
                wrap_exception, ack_map=None):
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
        if kind == _K_FORGET:
            for j in struct.unpack('<%dQ' % (len(payload) // 8), payload):
                funcs.pop(j, None)
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
            else:
                known, func = funcs.get(job, (False, None))
                if not known:
                    raise func if func is not None else RuntimeError(
                        'pool worker got a chunk of unknown job %d' % job)
                items = _loads_chunk(payload)
                if kind == _K_MAP:
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
    if pending:
        _write_all(result_fd, pending)
    return 0


def _pool_worker_entry(task_conn, result_conn, initializer, initargs,
                       maxtasks, wrap_exception, inherited_fds, ack_end=None):
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
        ack_map = mmap.mmap(ack_end.fd, _ACK.size)
        ack_end.close()
    code = _run_worker(task_fd, result_fd, initializer, initargs,
                       maxtasks, wrap_exception, ack_map)
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
