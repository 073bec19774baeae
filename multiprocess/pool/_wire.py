"""The process pool's wire format: frames, and how tasks and results are
pickled into them.

One frame is a header (payload size, kind, task id, job id) and the
payload.  Both ends of every pipe are ours, so the format is private; its
one definition is the native core's (poolengine.c, which writes the
parent's frames and reads the workers'), handed over as the ``POOL_*``
constants of ``_multiprocess``.  This module is what the worker side and
the engine's Python half need of it.
"""

import os
import pickle
import struct
import types
import weakref

import _multiprocess as _native

from .._pickling import MAIN_NAMES, PLAIN_TYPES, protocol
from ..reduction import CODEC
from ._errors import MaybeEncodingError, _text_of, _with_remote_tb

_HEADER = struct.Struct(_native.POOL_HEADER_FORMAT)
_HSIZE = _HEADER.size
if _HSIZE != _native.POOL_HEADER:
    raise ImportError('the pool frame header of _multiprocess (%d bytes) '
                      'does not match its format %r'
                      % (_native.POOL_HEADER, _native.POOL_HEADER_FORMAT))

# parent -> worker
_K_APPLY = _native.POOL_K_APPLY          # (func, args, kwds)
_K_MAP = _native.POOL_K_MAP              # a list of arguments
_K_STARMAP = _native.POOL_K_STARMAP      # a list of argument tuples
_K_JOBDEF = _native.POOL_K_JOBDEF        # the job's callable
_K_FORGET = _native.POOL_K_FORGET        # job ids (little-endian u64) to drop
_K_QUIT = _native.POOL_K_QUIT
_K_APPLY_WAITED = _native.POOL_K_APPLY_WAITED   # its caller waits for it
_K_APPLY_TIMED = _native.POOL_K_APPLY_TIMED     # under task_timeout
_K_JOBDEF_TIMED = _native.POOL_K_JOBDEF_TIMED   # flag byte, callable
# worker -> parent
_K_ACK = _native.POOL_K_ACK              # the task is starting
_K_OK = _native.POOL_K_OK                # the value
_K_ERR = _native.POOL_K_ERR              # see _error_payload
_K_INITFAIL = _native.POOL_K_INITFAIL    # the initializer raised; as _K_ERR
_K_PART = _native.POOL_K_PART            # u64 task id, one call's value

# Frames at least this large are read by the worker into a buffer of their
# own size (see _FrameReader.big_frame) and sent by the parent from the
# pickled buffer itself.
_BIG_FRAME = _native.POOL_BIG

# The word a worker writes the id of the task it starts into (see
# _Engine's ack map and the worker loop).
_ACK = struct.Struct('<Q')
# Under task_timeout the worker also stamps, behind it, each call it starts:
# a sequence byte (odd while it writes) then (task id, index of the call in
# the chunk, CLOCK_MONOTONIC ns at its start), read by the engine only when
# the byte is even and unchanged across the read.
_STAMP_SEQ = 8
_STAMP_AT = 16
_STAMP = struct.Struct('<QQQ')
_ACK_SIZE = _STAMP_AT + _STAMP.size
_PART_ID = struct.Struct('<Q')


def _frame(kind, task=0, job=0, payload=b''):
    return _HEADER.pack(len(payload), kind, task, job) + payload


# Pickling follows the package's one policy (_pickling.py): results and
# most payloads are pickled as Connection.send pickles a message.
_dumps = CODEC.dumps


# Calls of a function found again by name, with plain arguments: see
# _dumps_call.  Functions pickle.dumps refused are not tried again.
_BY_NAME = (types.FunctionType, types.BuiltinFunctionType)
_not_by_name = weakref.WeakSet()


def _dumps_call(call, _plain=PLAIN_TYPES, _fast=pickle.dumps):
    """An apply task's payload: pickle of (func, args, kwds).  A function
    found again by its module and qualified name, called with plain data,
    is pickled by reference both by the C pickler and by the reduction
    layer, so the C pickler does it alone (no reducer_override call per
    object).  pickle.dumps checks that the name leads back to the very
    object and raises otherwise; the reduction layer then decides (nested
    functions, lambdas, dill's reach)."""
    func, args, kwds = call
    if (type(func) in _BY_NAME
            and getattr(func, '__module__', None) not in MAIN_NAMES
            and all(type(x) in _plain for x in args)
            and (not kwds or all(type(x) in _plain
                                 for x in kwds.values()))
            and func not in _not_by_name):
        try:
            return _fast(call, protocol())
        except Exception:
            try:
                _not_by_name.add(func)
            except TypeError:
                pass
    return _dumps(call)


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


def _dumps_chunk(items, _plain=PLAIN_TYPES, _fast=pickle.dumps):
    """A task's payload: like _dumps, except that a short chunk of plain
    data holding big bytes objects becomes a tuple of parts (a header, the
    pickle, the bytes objects) so that nobody copies those in this process:
    the engine writes them straight to the pipe."""
    kind = type(items)
    if (kind is list or kind is tuple) and len(items) <= 32:
        big = False
        for x in items:
            if type(x) is bytes and len(x) >= _BIG_FRAME:
                big = True
            elif type(x) not in _plain:
                return _dumps(items)
        if not big:
            return _dumps(items)
        stand_ins = {}      # one per object: repeats stay one object
        wrapped = []
        for x in items:
            if type(x) is bytes and len(x) >= _BIG_FRAME:
                x = stand_ins.get(id(x)) or stand_ins.setdefault(
                    id(x), _OutOfBand(x))
            wrapped.append(x)
        bufs = []
        # (protocol 5 whatever the policy's: only it has out-of-band
        # buffers, and only our worker reads this)
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


def _error_payload(exc, tb_text):
    """Pickle an exception for the parent so that something always arrives.

    The exception is pickled on its own and nested as bytes next to its
    traceback text and its repr: if it cannot be pickled here, or cannot be
    rebuilt over there, the text still makes it.
    """
    described = '%s: %s' % (type(exc).__qualname__, _text_of(exc, str))
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


class _FrameReader:
    """Splits a byte stream into frames (the worker's side)."""

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
