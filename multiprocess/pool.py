"""Pools of workers: ``Pool`` (processes) and ``ThreadPool`` (threads).

Data flow of a process ``Pool``::

    caller threads                 engine thread (one per pool)            worker processes
    --------------                 ----------------------------            ----------------
    apply_async / map_async  -->   jobs (deque of _Job, lazy chunk sources)
    imap / imap_unordered              |  add work: pull the next chunk only when a
                                       |  worker has room, pickle it, frame it
                                       v
                                   per-worker task pipe  ==================>  read frame
                                       (non-blocking writes,                   ack (task started)
                                        at most `depth` tasks in flight)       run func on chunk
                                                                               frame result
                                   per-worker result pipe <=================== (ack + result
                                       |                                        share one write)
                                       |  wait: results, acks, worker sentinels, wake-ups
                                       v
    AsyncResult.get()  <------     process results: unpickle, complete the
    IMapIterator.next()            result object, run callbacks
                                   handle breakage: a dead worker fails the task it had
                                   acknowledged (WorkerLostError), re-queues the tasks it
                                   never started, and is replaced

The latency path skips the engine thread: ``apply_async`` finding an idle
worker (and no callbacks) sends the task from the caller's thread and
borrows that worker's result pipe, so ``get()`` reads the result itself::

    caller: lend + send  ========>  worker: run  ========>  caller: read_lent

two hand-offs instead of the four of a handler-thread design; the engine
never wakes (see _Engine._send_direct and poolengine.c).

The engine is a loop of small named steps (``_Engine._step``).  Its waiting
and its pipe I/O are done by the native core, ``_multiprocess.PoolEngine``
(poolengine.c); the steps and the bookkeeping are Python.

Every task is owned by exactly one worker from the moment it is sent, and
the worker acknowledges it when it starts running it, so the death of a
worker touches only that worker's tasks.  The callable of a ``map`` is sent
once per worker and job (``_K_JOBDEF``), then each chunk carries only its
arguments.

A ``ThreadPool`` has the same public surface and result objects, without
pipes or pickling: its threads pull chunks from the same kind of job queue
and complete the results themselves.
"""

import collections
import itertools
import mmap
import os
import pickle
import signal
import struct
import sys
import threading
import time
import types
import warnings
import weakref

from . import util


class _Lazy:
    """A module imported on first use: `traceback` pulls in linecache,
    tokenize and textwrap (~2 ms), needed only once something failed."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        module = importlib.import_module(self._name)
        globals()[self._name] = module
        return getattr(module, attr)


traceback = _Lazy('traceback')
from .exceptions import ProcessError, TimeoutError, WorkerLostError

import _multiprocess as _native

__all__ = ['Pool', 'ThreadPool']

# Pool._state takes these values; pathos compares against the strings.
RUN, CLOSE, TERMINATE = 'RUN', 'CLOSE', 'TERMINATE'
INIT = 'INIT'       # only while __init__ runs

job_counter = itertools.count()     # ids of result objects (and jobs)


# ----------------------------------------------------------------- helpers
# pathos and older code import these names from the pool module.

def mapstar(args):
    """Call ``args[0]`` on each element of ``args[1]``; return a list."""
    func, items = args
    return list(map(func, items))


def starmapstar(args):
    """Call ``args[0](*item)`` for each item of ``args[1]``; return a list."""
    func, items = args
    return list(itertools.starmap(func, items))


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker.

    Set as the ``__cause__`` of the exception re-raised in the caller, so
    the worker's traceback is printed along with the caller's; the text is
    in ``tb``.
    """

    tb = property(lambda self: self.args[0])

    def __str__(self):
        return self.args[0]


def _format_tb(exc):
    return ''.join(traceback.format_exception(type(exc), exc,
                                              exc.__traceback__))


def _with_remote_tb(exc, tb_text):
    """Give ``exc`` the worker's traceback text as its cause; returns it."""
    if not tb_text.startswith('\n"""'):
        tb_text = '\n"""\n%s"""' % tb_text
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc


# stdlib-compatible name: rebuild ``exc`` with ``tb`` (text) as its cause
rebuild_exc = _with_remote_tb


class ExceptionWithTraceback:
    """Pickles as ``exc`` with the traceback ``tb`` (a traceback object or
    text) attached on arrival -- for code driving ``worker()`` directly."""

    def __init__(self, exc, tb):
        text = tb if isinstance(tb, str) else ''.join(
            traceback.format_exception(type(exc), exc, tb))
        self._parts = (exc, text)

    def __reduce__(self):
        return _with_remote_tb, self._parts


class MaybeEncodingError(Exception):
    """A result or an exception could not cross the process boundary.

    ``exc`` is the repr of the pickling (or unpickling) error, ``value`` the
    repr of what was being sent.  The task's own outcome is lost; make the
    returned object picklable (or return something simpler) to fix it.
    """

    def __init__(self, exc, value):
        super().__init__(*(x if isinstance(x, str) else repr(x)
                           for x in (exc, value)))

    exc = property(lambda self: self.args[0])
    value = property(lambda self: self.args[1])

    def __str__(self):
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"


def _exit_description(exitcode):
    """Words for how a process ended, for WorkerLostError messages."""
    if exitcode is None:
        return 'ended in an unknown way'
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = 'signal %d' % -exitcode
        text = 'was killed by %s (signal %d)' % (name, -exitcode)
        if -exitcode == signal.SIGKILL:
            text += '; it may have run out of memory (the kernel OOM ' \
                    'killer sends SIGKILL)'
        return text
    return 'exited with code %d' % exitcode


def _lost_worker_error(pid, exitcode):
    return WorkerLostError(
        'worker process %s %s while running this task; the pool replaced '
        'it' % (pid, _exit_description(exitcode)), pid, exitcode)


# ------------------------------------------------------------ wire format
# One frame: header (payload size, kind, task id, job id) then payload.
# Both ends of every pipe are ours, so the format is private to this file
# (and to poolengine.c, which reads and writes the same frames).

_HEADER = struct.Struct('<QBQQ')
_HSIZE = _HEADER.size

# parent -> worker
_K_APPLY = 1      # payload: pickle of (func, args, kwds)
_K_MAP = 2        # payload: pickle of a list of arguments
_K_STARMAP = 3    # payload: pickle of a list of argument tuples
_K_JOBDEF = 4     # payload: pickle of the job's callable
_K_FORGET = 5     # payload: job ids (little-endian uint64) to drop
_K_QUIT = 6
_K_APPLY_WAITED = 7   # as _K_APPLY; its caller is waiting for the result
                      # (the worker then spins before sleeping, see _SPIN)
# worker -> parent
_K_ACK = 10       # the task is starting
_K_OK = 11        # payload: pickle of the value
_K_ERR = 12       # payload: pickle of (exception or None, traceback text, repr)
_K_INITFAIL = 13  # the initializer raised; payload as for _K_ERR


def _frame(kind, task=0, job=0, payload=b''):
    return _HEADER.pack(len(payload), kind, task, job) + payload


# Types the C pickler writes without ever consulting a reducer: a list or
# tuple made only of these pickles identically with pickle.dumps, which
# skips building a ForkingPickler (most map chunks and results are such).
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def _dumps(obj, _plain=_PLAIN, _fast=pickle.dumps):
    kind = type(obj)
    # (a long container is not worth the scan: the pickler's set-up cost
    # is then small next to the pickling itself)
    if kind in _plain or ((kind is list or kind is tuple) and len(obj) <= 32
                          and all(type(x) in _plain for x in obj)):
        return _fast(obj, _PROTOCOL)
    from .reduction import ForkingPickler
    return ForkingPickler.dumps(obj)      # a buffer; not copied again


# Functions living in the main module are sent by value (the receiver's
# main module may differ); reduction.py decides how.
_MAIN_MODULES = frozenset({'__main__', '__mp_main__'})
_BY_NAME = (types.FunctionType, types.BuiltinFunctionType)
_not_by_name = weakref.WeakSet()     # functions pickle.dumps refused


def _dumps_call(call, _plain=_PLAIN, _fast=pickle.dumps):
    """An apply task's payload: pickle of (func, args, kwds).  A function
    found again by its module and qualified name, called with plain data,
    is pickled by reference both by the C pickler and by the reduction
    layer, so the C pickler does it alone (~1.5 us instead of ~8 us: no
    ForkingPickler to set up).  pickle.dumps checks that the name leads
    back to the very object and raises otherwise; the reduction layer
    then decides (nested functions, lambdas, dill's reach)."""
    func, args, kwds = call
    if (type(func) in _BY_NAME
            and getattr(func, '__module__', None) not in _MAIN_MODULES
            and all(type(x) in _plain for x in args)
            and (not kwds or all(type(x) in _plain
                                 for x in kwds.values()))
            and func not in _not_by_name):
        try:
            return _fast(call, _PROTOCOL)
        except Exception:
            try:
                _not_by_name.add(func)
            except TypeError:
                pass
    return _dumps_rich(call)


def _dumps_rich(obj):
    from .reduction import ForkingPickler
    return ForkingPickler.dumps(obj)


# Frames at least this large are read by the worker into a buffer of their
# own size (see _FrameReader.big_frame) and sent by the parent from the
# pickled buffer itself (PE_BIG in poolengine.c).
_BIG_FRAME = 64 * 1024

# A task payload at least this large is written as soon as it is pickled
# (see _Engine._add_work), smaller ones are batched.
_EAGER_SEND = 8 * 1024


class _OutOfBand:
    """Stands in for a big bytes object while a chunk is pickled: the
    pickler hands its buffer to the buffer callback (the C pickler would
    copy a bytes object into the pickle, and never asks a reducer_override
    about bytes), and the worker gets bytes back."""

    __slots__ = ('data',)

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return bytes, (pickle.PickleBuffer(self.data),)


_OOB_MARK = b'M'       # no pickle of protocol 2+ starts with it (b'\x80')


def _dumps_chunk(items, _plain=_PLAIN, _fast=pickle.dumps):
    """A task's payload: like _dumps, except that a short chunk of plain
    data holding big bytes objects becomes a tuple of parts (a header, the
    pickle, the bytes objects) so that nobody copies those in this process:
    the engine writes them straight to the pipe."""
    kind = type(items)
    if (kind is list or kind is tuple) and len(items) <= 32:
        big = False
        for x in items:
            t = type(x)
            if t not in _plain:
                return _dumps_rich(items)
            if t is bytes and len(x) >= _BIG_FRAME:
                big = True
        if not big:
            return _fast(items, _PROTOCOL)
        stand_ins = {}      # one per object: repeats stay one object
        wrapped = []
        for x in items:
            if type(x) is bytes and len(x) >= _BIG_FRAME:
                x = stand_ins.get(id(x)) or stand_ins.setdefault(
                    id(x), _OutOfBand(x))
            wrapped.append(x)
        bufs = []
        data = _fast(wrapped if kind is list else tuple(wrapped), 5,
                     buffer_callback=bufs.append)
        sizes = [len(data)] + [b.raw().nbytes for b in bufs]
        head = _OOB_MARK + struct.pack('<I%dQ' % len(sizes),
                                       len(bufs), *sizes)
        return (head, data) + tuple(bufs)
    return _dumps(items)


def _loads_chunk(payload):
    """Inverse of _dumps_chunk, in the worker."""
    if payload[:1] != _OOB_MARK:
        return _native.loads(payload)   # plain chunks are read in C
    count, = struct.unpack_from('<I', payload, 1)
    sizes = struct.unpack_from('<%dQ' % (count + 1), payload, 5)
    pos = 5 + 8 * (count + 1)
    parts = []
    with memoryview(payload) as view:
        for size in sizes:
            parts.append(view[pos:pos + size])
            pos += size
        try:
            return pickle.loads(parts[0], buffers=parts[1:])
        finally:
            for part in parts:
                part.release()


class _FrameReader:
    """Splits a byte stream into frames."""

    __slots__ = ('buf', 'pos')

    def __init__(self):
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data):
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def next(self):
        """The next whole frame as (kind, task, job, payload), or None."""
        buf, pos = self.buf, self.pos
        if len(buf) - pos < _HSIZE:
            return None
        size, kind, task, job = _HEADER.unpack_from(buf, pos)
        end = pos + _HSIZE + size
        if len(buf) < end:
            return None
        with memoryview(buf) as view:       # one copy, not two
            payload = bytes(view[pos + _HSIZE:end])
        self.pos = end
        return kind, task, job, payload

    def big_frame(self, fd, least=_BIG_FRAME):
        """Finish reading a large frame whose header is buffered straight
        into its own buffer (no growing buffer, no extra copy): the frame,
        None when the buffered frame is small or incomplete in its header,
        or False when the parent went away."""
        buf, pos = self.buf, self.pos
        if len(buf) - pos < _HSIZE:
            return None
        size, kind, task, job = _HEADER.unpack_from(buf, pos)
        if size < least:
            return None
        payload = bytearray(size)
        have = len(buf) - pos - _HSIZE
        payload[:have] = memoryview(buf)[pos + _HSIZE:]
        self.buf = bytearray()
        self.pos = 0
        with memoryview(payload) as view:
            while have < size:
                try:
                    n = os.readv(fd, [view[have:]])
                except (InterruptedError, KeyboardInterrupt):
                    continue
                except OSError:
                    return False
                if not n:
                    return False
                have += n
        return kind, task, job, payload


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _error_payload(exc, tb_text):
    """Pickle an exception for the parent so that something always arrives.

    The exception is pickled on its own and nested as bytes next to its
    traceback text and its repr: if it cannot be pickled here, or cannot be
    rebuilt over there, the text still makes it.
    """
    described = '%s: %s' % (type(exc).__qualname__, exc)
    try:
        blob = bytes(_dumps(exc))
    except BaseException as why:
        blob = bytes(_dumps(MaybeEncodingError(why, described)))
    return pickle.dumps((blob, tb_text, described), protocol=5)


def _decode_error(payload):
    """The exception a _K_ERR payload stands for, with its remote traceback."""
    blob, tb_text, described = pickle.loads(payload)
    try:
        exc = pickle.loads(blob)
    except BaseException as why:
        # Typically an exception class whose __init__ does not accept its
        # own args; the text still tells what happened.
        exc = MaybeEncodingError(why, described)
    if not isinstance(exc, BaseException):
        exc = MaybeEncodingError('not an exception', described)
    if tb_text:
        _with_remote_tb(exc, tb_text)
    return exc


# ------------------------------------------------------------- the worker

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


_ACK = struct.Struct('<Q')


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
        from .reduction import DupFd
        return _rebuild_pipe_end, (DupFd(self.fd),)


def _rebuild_pipe_end(dup):
    return _PipeEnd(dup.detach())


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


# ------------------------------------------------------------ result objects

class ApplyResult(object):
    """The future of one ``apply_async`` call (alias ``AsyncResult``)."""

    def __init__(self, pool, callback, error_callback):
        self._pool = pool           # keeps the pool alive until we're done
        self._event = threading.Event()
        self._callback, self._error_callback = callback, error_callback
        self._success = self._value = None
        self._lent = None       # (engine, slot) whose result we may read
        self._job = next(job_counter)
        self._cache = pool._cache
        self._cache[self._job] = self

    def ready(self):
        """Whether the call has completed, successfully or not."""
        if self._lent is not None and not self._event.is_set():
            self._collect(0)
        return self._event.is_set()

    def successful(self):
        """Whether it completed without raising (ValueError until ready)."""
        if self.ready():
            return self._success
        raise ValueError(f"{self!r} not ready")

    def _collect(self, timeout):
        """Our task went to an idle worker whose result pipe was lent to
        us: read the result in this thread.  Afterwards the engine owns the
        pipe again, whatever happened."""
        lent, self._lent = self._lent, None
        if lent is not None:
            lent[0].collect(lent[1], timeout)

    def _wait(self, timeout):
        if self._lent is not None and not self._event.is_set():
            if timeout is None:
                self._collect(None)
            else:
                deadline = time.monotonic() + timeout
                self._collect(timeout)
                timeout = max(0.0, deadline - time.monotonic())
        return self._event.wait(timeout)

    def wait(self, timeout=None):
        """Block until ready, or for at most ``timeout`` seconds."""
        self._wait(timeout)

    def get(self, timeout=None):
        """The value, or raise the call's exception; ``TimeoutError`` if
        it is not ready within ``timeout`` seconds."""
        if not self._wait(timeout):
            raise TimeoutError
        if not self._success:
            raise self._value
        return self._value

    def _set(self, i, obj):
        if self._event.is_set():
            return          # aborted by terminate() before it came back
        self._success, self._value = obj
        _run_callback(self._callback if self._success
                      else self._error_callback, self._value)
        self._event.set()
        self._retire()

    def _retire(self):
        self._cache.pop(self._job, None)
        self._pool = self._lent = None

    __class_getitem__ = classmethod(types.GenericAlias)

    def _abort(self, exc):
        if not self._event.is_set():
            self._set(0, (False, exc))


AsyncResult = ApplyResult


def _run_callback(callback, value):
    if callback is None:
        return
    try:
        callback(value)
    except BaseException:
        # A failing callback must not take the engine down with it.
        sys.stderr.write('Exception in a pool callback:\n')
        traceback.print_exc()


class MapResult(ApplyResult):
    """The future of a ``map_async``/``starmap_async`` call."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        super().__init__(pool, callback, error_callback)
        # filled slice by slice as chunks arrive; chunks still to come
        self._success, self._value = True, [None] * length
        self._chunksize = chunksize
        self._number_left = -(-length // chunksize) if chunksize > 0 else 0
        if not self._number_left:      # nothing to wait for (empty input)
            self._event.set()
            self._retire()

    def _set(self, i, success_result):
        if self._event.is_set():
            return                      # already failed: drop the rest
        ok, value = success_result
        if not ok:
            self._success = False
            self._value = value
            _run_callback(self._error_callback, value)
            self._event.set()
            self._retire()
            return
        start = i * self._chunksize
        self._value[start:start + len(value)] = value
        self._number_left -= 1
        if self._number_left == 0:
            _run_callback(self._callback, self._value)
            self._event.set()
            self._retire()


class _Failure:
    """Marks, among an iterator's ready items, a chunk that failed."""
    __slots__ = ('exc',)

    def __init__(self, exc):
        self.exc = exc


class IMapIterator(object):
    """Results of ``imap``, in order, as they arrive.

    Chunks are kept whole internally and handed out item by item; a failed
    chunk raises its exception once, at its position.
    """

    def __init__(self, pool):
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = next(job_counter)
        self._cache = pool._cache
        self._items = collections.deque()    # items ready to hand out
        self._chunks = {}                    # chunk index -> (ok, value)
        self._index = 0                      # next chunk index to hand out
        self._length = None                  # number of chunks, once known
        # Look-ahead bound: the engine stops pulling from the caller's
        # iterable while `_sent - _yielded` items are out (_stalled), and
        # the consumer wakes it up again once it caught up by half.
        self._sent = 0
        self._yielded = 0
        self._limit = None
        self._stalled = False
        self._wake = None
        self._cache[self._job] = self

    def __iter__(self):
        return self

    def next(self, timeout=None):
        with self._cond:
            while True:
                if self._items:
                    value = self._items.popleft()
                    self._yielded += 1
                    if self._stalled and (self._sent - self._yielded
                                          <= self._limit // 2):
                        self._stalled = False
                        self._wake()
                    if type(value) is _Failure:
                        raise value.exc
                    return value
                if self._length is not None and self._index >= self._length:
                    self._pool = None
                    raise StopIteration from None
                if not self._advance():
                    if not self._cond.wait(timeout):
                        if not self._advance_possible():
                            raise TimeoutError from None

    __next__ = next

    def _advance_possible(self):
        return bool(self._items) or self._index in self._chunks or (
            self._length is not None and self._index >= self._length)

    def _advance(self):
        """Move the next chunk in order to the items; False if not there."""
        outcome = self._chunks.pop(self._index, None)
        if outcome is None:
            return False
        self._index += 1
        ok, value = outcome
        if ok:
            self._items.extend(value)
        else:
            self._items.append(_Failure(value))
        return True

    def _set(self, i, obj):
        with self._cond:
            self._chunks[i] = obj
            self._cond.notify()
            self._check_done()

    def _set_length(self, length):
        with self._cond:
            self._length = length
            self._cond.notify()
            self._check_done()

    def _abort(self, exc):
        """End the iteration with ``exc`` at the first missing position."""
        with self._cond:
            if self._length is not None and (
                    self._index + len(self._chunks) >= self._length):
                return
            gap = self._index
            while gap in self._chunks:
                gap += 1
            for i in [i for i in self._chunks if i > gap]:
                del self._chunks[i]
            self._chunks[gap] = (False, exc)
            self._length = gap + 1
            self._cond.notify_all()
            self._cache.pop(self._job, None)

    def _check_done(self):
        if self._length is not None and (
                self._index + len(self._chunks) >= self._length):
            self._cache.pop(self._job, None)


class IMapUnorderedIterator(IMapIterator):
    """Results of ``imap_unordered``, in completion order."""

    def _set(self, i, obj):
        with self._cond:
            ok, value = obj
            if ok:
                self._items.extend(value)
            else:
                self._items.append(_Failure(value))
            self._index += 1
            self._cond.notify()
            self._check_done()

    def _advance(self):
        return False

    def _abort(self, exc):
        with self._cond:
            if self._length is not None and self._index >= self._length:
                return
            self._items.append(_Failure(exc))
            self._index += 1
            self._length = self._index
            self._cond.notify_all()
            self._cache.pop(self._job, None)

    def _advance_possible(self):
        return bool(self._items) or (
            self._length is not None and self._index >= self._length)


# ------------------------------------------------------------------- jobs

class _Job:
    """Work submitted by one call: a result object and a lazy task source.

    ``next_task()`` returns ``(index, kind, data)`` -- for apply jobs
    ``data`` is ``(func, args, kwds)``, for map jobs a list of arguments --
    or None once the source is exhausted.  An exception raised by the
    caller's iterable becomes the outcome of the chunk it interrupted.
    """

    __slots__ = ('id', 'result', 'kind', 'func', 'source', 'count',
                 'done_feeding', 'wire_func', 'sets_length', 'inflight',
                 'chunksize')

    def __init__(self, result, kind, func, source, sets_length, chunksize=1):
        self.chunksize = chunksize
        self.id = result._job
        self.result = result
        self.kind = kind
        self.func = func
        self.source = source
        self.count = 0
        self.done_feeding = False
        self.wire_func = None
        self.sets_length = sets_length
        self.inflight = 0

    def next_task(self):
        if self.done_feeding:
            return None
        if self.kind == _K_APPLY:
            self.done_feeding = True
            self.count = 1
            return 0, self.kind, self.source
        try:
            chunk = next(self.source)
        except StopIteration:
            self._finish(self.count)
            return None
        except Exception as exc:
            index = self.count
            self._finish(index + 1)
            self.result._set(index, (False, exc))
            return None
        index = self.count
        self.count += 1
        return index, self.kind, chunk

    def fail_rest(self, exc):
        """No more tasks: the job's next position fails with ``exc``."""
        index = self.count
        self._finish(index + 1)
        self.result._set(index, (False, exc))

    def _finish(self, length):
        self.done_feeding = True
        self.source = None
        if self.sets_length:
            self.result._set_length(length)


def _chunks(iterable, size):
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


# ---------------------------------------------------------- the facade

class Pool(object):
    """A pool of worker processes running tasks submitted to it.

    ``processes`` defaults to ``os.cpu_count()``; ``initializer(*initargs)``
    runs in each worker when it starts; a worker is replaced after
    ``maxtasksperchild`` tasks when that is set; ``context`` picks the start
    method.  A worker that dies while running a task makes that task fail
    with ``WorkerLostError``; the pool replaces it and carries on.
    """

    # worker tracebacks travel back as text (ThreadPool: False)
    _wrap_exception = True

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None):
        # __del__ looks at these even when the checks below raise
        self._state, self._pool, self._cache = INIT, [], {}
        _check_pool_args(processes, initializer, maxtasksperchild)
        self._processes = processes or os.cpu_count() or 1
        self._initializer, self._initargs = initializer, initargs
        self._maxtasksperchild = maxtasksperchild
        self._ctx = context or _default_context()
        self._engine = self._make_engine()
        self._engine.populate()          # raises after cleaning up on failure
        self._engine.start()
        self._state = RUN
        self._terminate = util.Finalize(self, self._engine.terminate,
                                        exitpriority=15)

    # how workers are made; tests and subclasses replace it
    Process = staticmethod(lambda ctx, *args, **kwds:
                           ctx.Process(*args, **kwds))

    def _make_engine(self):
        # Functions and most arguments go through the reduction layer;
        # imported before the workers exist, forked workers inherit it
        # instead of each importing it while the first task waits.
        from . import reduction     # noqa: F401
        return _Engine(self._ctx, self._pool, self._cache, self._processes,
                       self._initializer, self._initargs,
                       self._maxtasksperchild, self._wrap_exception,
                       self.Process)

    # pathos and the standard library's tests look at these
    @property
    def _worker_handler(self):
        return self._engine.thread

    _task_handler = _result_handler = _worker_handler

    @property
    def _taskqueue(self):
        return self._engine.jobs

    def _repopulate_pool(self):
        return self._engine.repopulate()

    def __repr__(self):
        cls = type(self)
        return (f'<{cls.__module__}.{cls.__qualname__} '
                f'state={self._state} pool_size={len(self._pool)}>')

    def __reduce__(self):
        raise NotImplementedError(
            'pool objects cannot be passed between processes or pickled')

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if getattr(self, '_state', None) == RUN:
            _warn(f"unclosed running {__package__} pool {self!r}",
                  ResourceWarning, source=self)

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- submitting work ------------------------------------------------

    def apply(self, func, args=(), kwds={}):
        """``func(*args, **kwds)`` in a worker; blocks for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None,
                    error_callback=None):
        """Like ``apply`` but returns an ``AsyncResult`` at once."""
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._engine.submit(_Job(result, _K_APPLY, None,
                                 (func, tuple(args), dict(kwds)), False))
        return result

    def map(self, func, iterable, chunksize=None):
        """``list(map(func, iterable))`` computed by the workers."""
        return self._map_async(func, iterable, _K_MAP, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        """Like ``map`` but each item is unpacked: ``func(*item)``."""
        return self._map_async(func, iterable, _K_STARMAP, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None,
                  error_callback=None):
        """Like ``map`` but returns an ``AsyncResult`` at once."""
        return self._map_async(func, iterable, _K_MAP, chunksize, callback,
                               error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        """Like ``starmap`` but returns an ``AsyncResult`` at once."""
        return self._map_async(func, iterable, _K_STARMAP, chunksize,
                               callback, error_callback)

    def _map_async(self, func, iterable, kind, chunksize=None,
                   callback=None, error_callback=None):
        self._check_running()
        if not hasattr(iterable, '__len__'):
            iterable = list(iterable)
        length = len(iterable)
        if chunksize is None:
            # about four chunks per worker: few messages, fair balance
            chunksize, extra = divmod(length, len(self._pool) * 4 or 1)
            if extra:
                chunksize += 1
        if length == 0:
            chunksize = 0
        result = MapResult(self, chunksize, length, callback, error_callback)
        if chunksize:
            self._engine.submit(_Job(result, kind, func,
                                     _chunks(iterable, chunksize), False))
        return result

    def imap(self, func, iterable, chunksize=1):
        """An iterator over ``func(item)`` in order, computed lazily."""
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        """Like ``imap`` but results come in completion order."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(self, cls, func, iterable, chunksize):
        self._check_running()
        if chunksize < 1:
            raise ValueError(
                "Chunksize must be 1+, not {0:n}".format(chunksize))
        result = cls(self)
        self._engine.submit(_Job(result, _K_MAP, func,
                                 _chunks(iterable, chunksize), True,
                                 chunksize))
        return result

    @staticmethod
    def _get_tasks(func, it, size):
        it = iter(it)
        while True:
            chunk = tuple(itertools.islice(it, size))
            if not chunk:
                return
            yield (func, chunk)

    # -- ending ---------------------------------------------------------

    def close(self):
        """No more work will be submitted; workers exit when done."""
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self):
        """Stop the workers now; pending results fail."""
        self._state = TERMINATE
        self._terminate()

    def join(self):
        """Wait for the workers to exit; call ``close`` or ``terminate``
        first."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._engine.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


def _check_pool_args(processes, initializer, maxtasks):
    if processes is not None and processes < 1:
        raise ValueError("Number of processes must be at least 1")
    valid = maxtasks is None or (type(maxtasks) is int and maxtasks > 0)
    if not valid:
        raise ValueError("maxtasksperchild must be a positive int or None")
    if initializer is not None and not callable(initializer):
        raise TypeError('initializer must be a callable')


def _default_context():
    from . import context
    return context._default_context


# ------------------------------------------------------- the process engine

class _Worker:
    """The engine's record of one worker process."""

    __slots__ = ('slot', 'process', 'pid', 'task_fd', 'result_fd',
                 'sentinel', 'jobs', 'forget', 'sent', 'dead', 'quitting',
                 'ack_map', 'lent', 'pidfd')

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
        os.ftruncate(fd, _ACK.size)
        return _PipeEnd(fd), mmap.mmap(fd, _ACK.size)
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


_task_counter = itertools.count(1)


class _Engine:
    """One thread that feeds the workers, reads their results and keeps
    the pool at full strength.  See the diagram at the top of the file."""

    # tasks in flight per worker: one running, the rest queued in its pipe
    DEPTH = 2
    FAST_DEPTH = 16
    # imap look-ahead, in chunks per worker
    LOOKAHEAD = 64

    def __init__(self, ctx, pool, cache, processes, initializer, initargs,
                 maxtasks, wrap_exception, process_factory):
        # pool is Pool._pool (the Process objects), cache Pool._cache
        self.ctx, self.pool, self.cache = ctx, pool, cache
        self.processes, self.maxtasks = processes, maxtasks
        self.initializer, self.initargs = initializer, initargs
        self.wrap_exception = wrap_exception
        self.process_factory = process_factory
        self.state = RUN
        self.lock = threading.RLock()
        self.jobs = collections.deque()     # jobs with tasks still to send
        self.retry = collections.deque()    # tasks of lost workers, unstarted
        self.tasks = {}                     # task id -> _Task, in flight
        self.live_jobs = {}                 # job id -> _Job, tasks in flight
        self.workers = []
        self.by_slot = {}
        self.slot_ids = itertools.count(1)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.core = _native.PoolEngine(self.wake_r)
        self.rate_start = time.monotonic()
        self.rate_count = 0
        self.woken = False
        self.thread = None
        self.init_failures = 0
        self.init_error = None
        self.fast = False
        self.check_exits = False
        self.sentinels = set()
        self.finished = threading.Event()

    # -- workers ----------------------------------------------------------

    def _inherited_fds(self):
        try:
            method = self.ctx.get_start_method()
        except Exception:
            return []
        if method != 'fork':
            return []
        fds = [self.wake_r, self.wake_w]
        timer = getattr(self.core, 'timer_fd', -1)
        if timer >= 0:
            fds.append(timer)
        for w in self.workers:
            fds += [w.task_fd, w.result_fd]
            if w.pidfd is not None:
                fds.append(w.pidfd)
        return fds

    def _spawn(self):
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        inherited = self._inherited_fds()
        if inherited:
            inherited += [task_w, result_r]
        child_ends = (_PipeEnd(task_r), _PipeEnd(result_w))
        ack_end, ack_map = _ack_word()
        try:
            proc = self.process_factory(
                self.ctx, target=_pool_worker_entry,
                args=child_ends + (self.initializer, self.initargs,
                                   self.maxtasks, self.wrap_exception,
                                   inherited, ack_end))
            proc.name = proc.name.replace('Process', 'PoolWorker')
            proc.daemon = True
            proc.start()
        except BaseException:
            for fd in (task_w, result_r):
                os.close(fd)
            raise
        finally:
            for conn in child_ends + (ack_end,):
                if conn is not None:
                    conn.close()
        os.set_blocking(task_w, False)
        os.set_blocking(result_r, False)
        for fd in (task_w, result_r):
            _widen_pipe(fd)
        w = _Worker(next(self.slot_ids), proc, task_w, result_r, ack_map)
        w.pidfd = self._exit_fd(proc)
        self.core.add(w.slot, task_w, result_r,
                      w.sentinel if w.pidfd is None else w.pidfd)
        self.workers.append(w)
        self.by_slot[w.slot] = w
        self.pool.append(proc)
        return w

    def _exit_fd(self, proc):
        """A pidfd for a worker that is our own child (fork, spawn), or
        None.  The engine (and a caller reading a lent result) watches it
        instead of the sentinel.  The sentinel pipe hangs up as soon as the
        dying process's files are closed, ~1 ms before its address space
        is torn down and it can be reaped.  In that window is_alive() is
        still true and a readable sentinel would spin the engine.  A pidfd
        becomes readable exactly when the process can be reaped.  (Under
        forkserver the sentinel fires only after the server reaped it.)"""
        pid = getattr(proc, 'pid', None)
        if not hasattr(os, 'pidfd_open') or type(pid) is not int:
            return None
        try:
            if self.ctx.get_start_method() not in ('fork', 'spawn'):
                return None
            return os.pidfd_open(pid)
        except Exception:
            return None

    def populate(self):
        """Start the first workers; on failure stop those already started
        and re-raise."""
        try:
            for _ in range(self.processes):
                self._spawn()
        except BaseException:
            for w in self.workers:
                w.process.terminate()
            for w in self.workers:
                w.process.join()
                self._close_worker_fds(w)
            self.workers.clear()
            self.pool.clear()
            self._close_wake()
            raise

    def repopulate(self):
        """Bring the pool back to ``processes`` live workers."""
        with self.lock:
            self._bury_exited()
            while len(self.workers) < self.processes and self.state == RUN:
                self._spawn()

    def _close_worker_fds(self, w):
        for fd in (w.task_fd, w.result_fd, w.pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        w.task_fd = w.result_fd = w.pidfd = None
        if w.ack_map is not None:
            w.ack_map.close()
            w.ack_map = None

    def _close_wake(self):
        for fd in (self.wake_r, self.wake_w):
            if fd < 0:
                continue        # closed already (join, then terminate)
            try:
                os.close(fd)
            except OSError:
                pass
        self.wake_r = self.wake_w = -1

    # -- the loop ---------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name='PoolEngine')
        self.thread.start()

    def submit(self, job):
        if self.finished.is_set():
            raise ProcessError("the pool's engine has stopped (see the "
                               "traceback it printed); create a new pool")
        with self.lock:
            if (job.kind == _K_APPLY and not self.jobs
                    and not self.retry and self.state == RUN):
                w = self._idle_worker()
                if w is not None and self._send_direct(w, job):
                    return
            self.jobs.append(job)
        self.wake()

    def _send_direct(self, w, job):
        """The latency path of apply_async: the caller's thread sends the
        task to an idle worker itself, and when the result has no callbacks
        the worker's result pipe is lent to it (see read_lent in
        poolengine.c): get() reads the result without the engine thread
        waking up at all.  Two hand-offs (caller -> worker -> caller)
        instead of four.  False: leave the job to the engine."""
        try:
            payload = _dumps_call(job.source)
        except BaseException as exc:
            job.done_feeding = True
            job.result._set(0, (False, exc))
            return True
        if len(payload) >= 32768:
            return False        # the engine thread moves big ones
        job.done_feeding = True
        job.count = job.inflight = 1
        job.source = None
        self.live_jobs[job.id] = job
        result = job.result
        core = self.core
        lend = (result._callback is None and result._error_callback is None
                and core.lend(w.slot))
        task = _Task(next(_task_counter), job, 0,
                     _K_APPLY_WAITED if lend else _K_APPLY, payload)
        self._send(w, task)
        core.flush()
        if lend:
            w.lent = True
            result._lent = (self, w.slot)
        else:
            # the engine does not watch an idle worker's result pipe yet
            self.wake()
        return True

    def collect(self, slot, timeout):
        """Read the result of a task lent to the calling thread (see
        ApplyResult.get); returns once it was delivered, the time is up, or
        the engine has to take over."""
        try:
            got = self.core.read_lent(slot, timeout, _SPIN)
        except BaseException:
            # (Ctrl-C in get()): the slot is the engine's again, and it
            # does not watch it yet
            with self.lock:
                w = self.by_slot.get(slot)
                if w is not None:
                    w.lent = False
            self.wake()
            raise
        if got is None:
            return      # another thread reads it, or the engine took it
        events, wake = got
        with self.lock:
            w = self.by_slot.get(slot)
            if w is not None:
                w.lent = False
            if events:
                self._handle_events(events)
            wake = wake or self.jobs or self.retry or self.state != RUN
        if wake:
            self.wake()

    def _idle_worker(self):
        for w in self.workers:
            if (not w.dead and not w.quitting and not w.lent
                    and self.core.load(w.slot) == 0 and
                    (self.maxtasks is None or w.sent < self.maxtasks)):
                return w
        return None

    def wake(self):
        if not self.woken and self.wake_w >= 0:
            self.woken = True
            try:
                os.write(self.wake_w, b'x')
            except OSError:
                pass

    def close(self):
        with self.lock:
            if self.state == RUN:
                self.state = CLOSE
        self.wake()

    def _run(self):
        try:
            while self._step():
                pass
        except BaseException:
            # The engine must never die silently: fail what it held.
            util.info('pool engine failed:\n%s', traceback.format_exc())
            self._fail_everything(ProcessError(
                'the pool engine failed:\n' + traceback.format_exc()))
            raise
        finally:
            self.finished.set()

    def _step(self):
        """One turn of the loop; False when the engine is done."""
        if self.state == TERMINATE:
            return False
        # Maintenance only when something calls for it: after a result has
        # been delivered the caller waiting for it needs the GIL, so the
        # way back into wait() (which releases it) must be short.
        if (self.jobs or self.retry or self.check_exits or
                self.state != RUN or len(self.workers) < self.processes):
            with self.lock:
                if self.check_exits:
                    self.check_exits = False
                    self._bury_exited()
                self._keep_strength()
                self._add_work()
            if self._all_done():
                return False
        self._handle(self._wait())
        return True

    def _keep_strength(self):
        """Replace exited workers while there is (or may be) work."""
        if self.state == RUN or (self.state == CLOSE and self._has_work()):
            while len(self.workers) < self.processes:
                if self.init_failures >= self.processes:
                    # the initializer keeps failing: don't spin
                    time.sleep(0.1)
                self._spawn()

    def _has_work(self):
        return bool(self.jobs or self.retry or self.tasks)

    def _next_task(self):
        """The next task to send, or None: first the ones to retry, then
        the jobs in submission order, passing over an imap whose consumer
        is too far behind."""
        if self.retry:
            return self.retry.popleft()
        jobs = self.jobs
        i = 0
        while i < len(jobs):
            job = jobs[i]
            if job.sets_length and self._held_back(job):
                i += 1
                continue
            if job.kind != _K_APPLY and not job.sets_length and \
                    job.id not in self.cache:
                # a map that already failed: the rest would be wasted
                job.done_feeding = True
                job.source = None
            if job.kind != _K_APPLY and job.wire_func is None \
                    and not job.done_feeding:
                try:
                    job.wire_func = _dumps(job.func)
                except BaseException as exc:
                    job.fail_rest(exc)
            try:
                got = job.next_task()
            except BaseException as exc:
                got = None
                job.fail_rest(exc)
            if got is None:
                del jobs[i]
                self._maybe_forget(job)
                continue
            index, kind, data = got
            try:
                if kind == _K_MAP:
                    payload = _dumps_chunk(data)
                elif kind == _K_APPLY:
                    payload = _dumps_call(data)
                else:
                    payload = _dumps(data)
            except BaseException as exc:
                # cannot be sent: that task fails in the caller
                job.result._set(index, (False, exc))
                continue
            if job.sets_length:
                job.result._sent += len(data)
            job.inflight += 1
            self.live_jobs[job.id] = job
            return _Task(next(_task_counter), job, index, kind, payload)
        return None

    def _held_back(self, job):
        res = job.result
        if res._limit is None:
            res._limit = self.LOOKAHEAD * self.processes * job.chunksize
            res._wake = self.wake
        if res._sent - res._yielded < res._limit:
            return False
        res._stalled = True
        # re-check: the consumer may have caught up meanwhile
        if res._sent - res._yielded < res._limit:
            res._stalled = False
            return False
        return True

    def _add_work(self):
        """Give every worker with room as many tasks as it can take."""
        if self.state == TERMINATE:
            return
        core = self.core
        depth = self._depth()
        rooms = []
        for w in sorted(self.workers, key=lambda w: core.load(w.slot)):
            if w.dead or w.quitting or w.lent:
                # (a lent worker's results are read by a caller thread:
                # it must carry that caller's task alone)
                continue
            room = depth - core.load(w.slot)
            if room > 0 and core.unsent(w.slot) >= _BIG_FRAME:
                # a big frame still on its way: pickling the next one now
                # would keep this thread from moving the bytes of both
                continue
            if self.maxtasks is not None:
                room = min(room, self.maxtasks - w.sent)
            if room > 0:
                rooms.append([room, w])
        # One task per worker per round.  A big task is written at once:
        # every worker starts early instead of waiting for the others'
        # pickling.  Small ones go out together at the end, one write()
        # per worker instead of one per task: a write() may have to wake
        # the worker, which costs far more than pickling a small task.
        while rooms:
            for entry in rooms:
                task = self._next_task()
                if task is None:
                    rooms = ()
                    break
                self._send(entry[1], task)
                if len(task.payload) >= _EAGER_SEND:
                    core.flush()
                entry[0] -= 1
            rooms = [entry for entry in rooms if entry[0] > 0]
        if self.state == CLOSE and not self._has_work():
            for w in self.workers:
                if not w.quitting and not w.dead:
                    w.quitting = True
                    core.send(w.slot, _K_QUIT, 0, 0, b'')
        core.flush()

    def _depth(self):
        """Tasks in flight per worker.  Two (one running, one waiting in
        the pipe) keeps slow tasks balanced; when tasks take well under a
        millisecond, more in flight lets each wake-up carry a batch."""
        now = time.monotonic()
        span = now - self.rate_start
        if span > 0.05:
            per_worker = self.rate_count / (span * max(1, len(self.workers)))
            self.fast = per_worker > 1000.0
            self.rate_start, self.rate_count = now, 0
        return self.FAST_DEPTH if self.fast else self.DEPTH

    def _send(self, w, task):
        job = task.job
        core = self.core
        if w.forget:
            ids = w.forget
            core.send(w.slot, _K_FORGET, 0, 0,
                      struct.pack('<%dQ' % len(ids), *ids))
            w.forget = []
        if job.kind != _K_APPLY and job.id not in w.jobs:
            core.send(w.slot, _K_JOBDEF, 0, job.id, job.wire_func)
            w.jobs.add(job.id)
        # registered before the frame can leave: the result may come back
        # to the engine thread before this call returns
        self.tasks[task.id] = task
        w.sent += 1
        core.send(w.slot, task.kind, task.id, job.id, task.payload)

    def _all_done(self):
        if self.state == TERMINATE:
            return True
        if self.state == CLOSE and not self._has_work():
            return not self.workers
        return False

    def _wait(self):
        while True:
            try:
                events = self.core.wait(1.0)
            except InterruptedError:
                continue
            self.woken = False
            if events is None:
                self.check_exits = True     # belt and braces
                return ()
            return events

    def _handle(self, events):
        if events:
            with self.lock:
                self._handle_events(events)

    def _handle_events(self, events):
        for slot, kind, task_id, payload in events:
            w = self.by_slot.get(slot)
            if w is not None and w.lent and kind != -1:
                # the engine took the slot back (nobody came to read it)
                w.lent = False
            if kind == -1:
                self.check_exits = True
                continue
            if kind == _K_INITFAIL:
                self.init_failures += 1
                self.init_error = _decode_error(payload)
                continue
            self.rate_count += 1
            task = self.tasks.pop(task_id, None)
            if task is None:
                continue
            self.init_failures = 0
            if kind == _K_OK:
                try:
                    outcome = (True, _native.loads(payload))
                except BaseException as exc:
                    outcome = (False, MaybeEncodingError(
                        exc, 'a result that could not be unpickled'))
            else:
                outcome = (False, _decode_error(payload))
            self._deliver(task, outcome)

    def _deliver(self, task, outcome):
        job = task.job
        try:
            job.result._set(task.index, outcome)
        except BaseException:
            traceback.print_exc()
        self._task_finished(task)

    def _task_finished(self, task):
        task.job.inflight -= 1
        self._maybe_forget(task.job)

    def _maybe_forget(self, job):
        """Once a job has nothing left to send or receive, workers may drop
        its callable."""
        if not job.done_feeding or job.inflight > 0:
            return
        if self.live_jobs.pop(job.id, None) is None:
            return
        if job.kind == _K_APPLY:
            return
        for w in self.workers:
            if job.id in w.jobs:
                w.jobs.discard(job.id)
                w.forget.append(job.id)

    def _bury_exited(self):
        """Handle breakage: workers whose process has ended."""
        for w in list(self.workers):
            try:
                alive = w.process.is_alive()
            except Exception:
                alive = False
            if not alive:
                self._bury(w)

    def _bury(self, w):
        """A worker ended: fail the task it had started, send the others
        elsewhere, forget it."""
        # results it wrote just before ending are still in the pipe; a
        # caller reading them must be done before we look
        self.core.reclaim(w.slot)
        w.lent = False
        if w.sentinel >= 0:
            self._handle(self.core.wait(0) or ())
        w.dead = True
        exitcode = getattr(w.process, 'exitcode', None)
        owned, acked = self.core.owned(w.slot)
        if w.ack_map is not None:
            acked = _ACK.unpack_from(w.ack_map)[0]
        lost = []
        for task_id in owned:
            task = self.tasks.pop(task_id, None)
            if task is None:
                continue
            if task_id == acked:
                lost.append(task)
            else:
                self.retry.append(task)
        self.core.remove(w.slot)
        self.by_slot.pop(w.slot, None)
        self._close_worker_fds(w)
        self.workers.remove(w)
        try:
            self.pool.remove(w.process)
        except ValueError:
            pass
        if lost:
            util.info('pool worker %s died: %s', w.pid,
                      _exit_description(exitcode))
        for task in lost:
            self._deliver(task, (False, _lost_worker_error(w.pid, exitcode)))
        if self.init_failures >= self.processes and self.init_error is not None:
            self._fail_queued(self.init_error)

    def _fail_queued(self, exc):
        """Fail the work not yet started (the initializer keeps failing)."""
        while self.retry:
            task = self.retry.popleft()
            self._deliver(task, (False, exc))
        while self.jobs:
            job = self.jobs.popleft()
            if not job.done_feeding:
                job.fail_rest(exc)
            self._maybe_forget(job)

    def _fail_everything(self, exc):
        with self.lock:
            self.jobs.clear()
            self.retry.clear()
            self.tasks.clear()
            self.live_jobs.clear()
            for result in list(self.cache.values()):
                try:
                    result._abort(exc)
                except BaseException:
                    traceback.print_exc()
            self.cache.clear()

    # -- ending -----------------------------------------------------------

    def terminate(self):
        """Stop everything now (also the pool's finalizer)."""
        with self.lock:
            self.state = TERMINATE
        self.wake()
        current = threading.current_thread()
        if self.thread is not None and self.thread is not current:
            self.thread.join(5)
        for w in list(self.workers):
            try:
                if w.process.exitcode is None:
                    w.process.terminate()
            except Exception:
                pass
        for w in list(self.workers):
            self._reap(w.process, 1.0)
            try:
                self.core.reclaim(w.slot)   # no reader left on its fds
            except KeyError:
                pass
            self._close_worker_fds(w)
        self.workers.clear()
        self._fail_everything(ProcessError(
            'the pool was terminated before this task completed'))
        self._close_wake()

    @staticmethod
    def _reap(proc, grace):
        try:
            proc.join(grace)
            if proc.exitcode is None and hasattr(proc, 'kill'):
                proc.kill()
                proc.join()
        except Exception:
            pass

    def join(self):
        if self.thread is not None and \
                self.thread is not threading.current_thread():
            self.thread.join()
        for proc in list(self.pool):
            try:
                proc.join()
            except Exception:
                pass
        if self.state != TERMINATE:
            self.pool.clear()
            self._close_wake()


# ----------------------------------------------------------- thread pool

class ThreadPool(Pool):
    """A ``Pool`` whose workers are threads of this process.

    No pickling: arguments, callables and results are passed as they are,
    and exceptions are re-raised without a remote traceback.
    """

    _wrap_exception = False

    def __init__(self, processes=None, initializer=None, initargs=()):
        super().__init__(processes, initializer, initargs)

    def _make_engine(self):
        return _ThreadEngine(self._pool, self._cache, self._processes,
                             self._initializer, self._initargs)

    # the engine starts plain threads; kept for code that builds workers
    Process = staticmethod(lambda ctx, *args, **kwds:
                           _dummy_process(*args, **kwds))


def _dummy_process(*args, **kwds):
    from .dummy import DummyProcess
    return DummyProcess(*args, **kwds)


class _ThreadEngine:
    """Worker threads pulling tasks from a shared job queue."""

    def __init__(self, pool, cache, processes, initializer, initargs):
        self.pool, self.cache, self.processes = pool, cache, processes
        self.initializer, self.initargs = initializer, initargs
        self.state = RUN
        self.cond = threading.Condition(threading.Lock())
        self.jobs = collections.deque()
        self.busy = 0
        self.thread = None

    def _spawn(self):
        t = threading.Thread(target=self._work, daemon=True,
                             name='ThreadPoolWorker-%d' % (len(self.pool) + 1))
        t.pid = None
        self.pool.append(t)
        t.start()

    def populate(self):
        for _ in range(self.processes):
            self._spawn()

    def repopulate(self):
        with self.cond:
            self.pool[:] = [t for t in self.pool if t.is_alive()]
            while len(self.pool) < self.processes and self.state == RUN:
                self._spawn()

    def start(self):
        pass

    def submit(self, job):
        with self.cond:
            self.jobs.append(job)
            self.cond.notify()

    def _take(self):
        """The next (job, index, kind, data) to run, or None to exit."""
        with self.cond:
            while True:
                if self.state == TERMINATE:
                    return None
                while self.jobs:
                    job = self.jobs[0]
                    try:
                        got = job.next_task()
                    except BaseException as exc:
                        got = None
                        job.done_feeding = True
                        job.result._set(job.count, (False, exc))
                    if got is None:
                        self.jobs.popleft()
                        continue
                    return (job,) + got
                job = got = None      # don't keep the last job alive
                if self.state == CLOSE:
                    self.cond.notify_all()
                    return None
                self.cond.wait()

    def _work(self):
        if self.initializer is not None:
            self.initializer(*self.initargs)
        while True:
            got = self._take()
            if got is None:
                return
            job, index, kind, data = got
            try:
                if kind == _K_APPLY:
                    func, args, kwds = data
                    outcome = (True, func(*args, **kwds))
                elif kind == _K_MAP:
                    outcome = (True, list(map(job.func, data)))
                else:
                    outcome = (True, list(itertools.starmap(job.func, data)))
            except Exception as exc:
                outcome = (False, exc)
            if self.state == TERMINATE:
                return
            try:
                job.result._set(index, outcome)
            except BaseException:
                traceback.print_exc()
            got = job = data = outcome = None

    def close(self):
        with self.cond:
            if self.state == RUN:
                self.state = CLOSE
            self.cond.notify_all()

    def terminate(self):
        with self.cond:
            self.state = TERMINATE
            self.jobs.clear()
            self.cond.notify_all()
        # as with processes: what can no longer complete fails, not hangs
        error = ProcessError('the pool was terminated before this task '
                             'completed')
        for result in list(self.cache.values()):
            try:
                result._abort(error)
            except BaseException:
                traceback.print_exc()

    def join(self):
        current = threading.current_thread()
        for t in list(self.pool):
            if t is not current:
                t.join()
