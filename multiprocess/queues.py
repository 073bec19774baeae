"""Queues between processes: ``Queue``, ``JoinableQueue``, ``SimpleQueue``.

Data flow of a ``Queue`` (one pipe, shared by every process that holds the
queue)::

    put() --append--> _buffer (deque) --feeder thread: pickle, frame--> pipe
                                                                         |
    get() <--unpickle-- recv_bytes() under _rlock <----------------------+

* ``_sem`` counts free slots (``maxsize``); ``put`` takes one, ``get`` gives
  it back once the item has left the pipe, so ``qsize``/``full`` see items
  still sitting in a writer's buffer.
* The feeder thread is started lazily by the first ``put`` of a process.
  It sleeps on ``_wakeup``, a plain lock used as a binary "work pending"
  flag: ``put`` appends and then releases it, the feeder takes it and then
  drains the buffer, so a wakeup is never lost and a burst of puts costs a
  single wakeup.
* Everything the feeder finds already buffered is pickled and written as one
  ``os.writev`` of back-to-back frames (same wire format as
  ``Connection.send_bytes``) under one hold of the cross-process ``_wlock``,
  instead of one lock round trip and one syscall per item.  Batches are
  capped in items and bytes so the first item of a burst is not held back.
* Items that fail to pickle (or to be written) are handed to
  ``_on_queue_feeder_error`` and their slot is given back; the feeder keeps
  running.
* ``close()`` (or garbage collection, or interpreter exit) appends a
  sentinel; the feeder flushes what precedes it and exits.  At exit the
  feeder is joined, so buffered data reaches the pipe, unless
  ``cancel_join_thread()`` was called.
"""

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue']

import errno
import io
import os
import struct
import sys
import threading
import time
import types
import weakref
from collections import deque
from queue import Empty, Full

from . import connection
from . import context
from .reduction import ForkingPickler as _ForkingPickler
from .util import debug, info, Finalize, register_after_fork, is_exiting

# Frame headers, as connection.send_bytes writes them: a signed 32-bit
# big-endian length, or -1 followed by an unsigned 64-bit length.
_put_small_header = struct.Struct('!i').pack_into
_HEADER_GAP = bytes(4)
_large_header = struct.Struct('!iQ').pack
_LARGE_FRAME = 0x7fffffff

# Caps on one feeder batch, so that a long burst is written in slices the
# pipe can take and the first items of the burst are not held back long.
_BATCH_ITEMS = 256
_BATCH_BYTES = 1 << 16


def _finish_frames(view, frames):
    """Fill in the frame headers of a feeder batch.

    ``view`` holds the batch: every payload preceded by a 4-byte gap;
    ``frames`` lists (gap offset, payload size).  Returns the buffers to
    write, in order, and their total size.  Normally that is ``view`` alone;
    a payload over 2 GiB needs a 12-byte header, which is written from a
    separate buffer instead of the gap.
    """
    segments = []
    run_from = 0
    extra = 0
    for offset, size in frames:
        if size <= _LARGE_FRAME:
            _put_small_header(view, offset, size)
            continue
        if offset > run_from:
            segments.append(view[run_from:offset])
        segments.append(_large_header(-1, size))
        run_from = offset + 4
        extra += 8
    segments.append(view[run_from:] if run_from else view)
    return segments, len(view) + extra


def _write_all(fd, iov, total):
    """writev() the whole of ``iov``, resuming after short writes."""
    written = os.writev(fd, iov)
    if written == total:
        return
    # Short write (a signal interrupted a large transfer): carry on from
    # where the kernel stopped.
    views = [memoryview(b).cast('B') for b in iov]
    while True:
        total -= written
        while written and written >= len(views[0]):
            written -= len(views[0])
            del views[0]
        if written:
            views[0] = views[0][written:]
        if not views:
            return
        written = os.writev(fd, views)
        if written == total:
            return


def _closed_error(queue):
    return ValueError(f"Queue {queue!r} is closed")


class Queue(object):

    # What travels to a spawned child, in this order.
    _SHARED_FIELDS = ('_ignore_epipe', '_maxsize', '_reader', '_writer',
                      '_rlock', '_wlock', '_sem', '_opid')

    def __init__(self, maxsize=0, *, ctx):
        if maxsize <= 0:
            # Can raise ImportError where sem_open is unusable (issue 3770).
            from .synchronize import SEM_VALUE_MAX as maxsize
        self._sem = ctx.BoundedSemaphore(maxsize)
        self._maxsize = maxsize
        self._rlock, self._wlock = ctx.Lock(), ctx.Lock()
        self._reader, self._writer = connection.Pipe(duplex=False)
        self._opid = os.getpid()
        # Set by concurrent.futures-style owners that close the reading end
        # on purpose: a broken pipe then silently stops the feeder.
        self._ignore_epipe = False
        self._reset()
        register_after_fork(self, Queue._after_fork)

    # -- the hot paths ------------------------------------------------------

    def put(self, obj, block=True, timeout=None):
        if self._closed:
            raise _closed_error(self)
        if not self._sem.acquire(block, timeout):
            raise Full
        if self._thread is None:
            self._start_thread_once()
        self._buffer.append(obj)
        self._notify_feeder()

    def get(self, block=True, timeout=None):
        if self._closed:
            raise _closed_error(self)
        rlock = self._rlock
        if not block or timeout is not None:
            data = self._get_bounded(rlock, block, timeout)
        else:
            rlock.acquire()
            try:
                data = self._recv_bytes()
            finally:
                rlock.release()
        self._sem.release()
        # Unpickle outside the lock so other readers are not held up.
        return _ForkingPickler.loads(data)

    def _notify_feeder(self):
        wakeup = self._wakeup
        if wakeup.locked():
            try:
                wakeup.release()
            except RuntimeError:
                # Another putter raised the flag first; one is enough.
                pass

    def _get_bounded(self, rlock, block, timeout):
        if block:
            deadline = time.monotonic() + timeout
            got_lock = rlock.acquire(True, timeout)
        else:
            got_lock = rlock.acquire(False)
        if not got_lock:
            raise Empty
        try:
            left = max(deadline - time.monotonic(), 0.0) if block else 0.0
            if self._poll(left):
                return self._recv_bytes()
        finally:
            rlock.release()
        raise Empty

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    # -- inspection ---------------------------------------------------------

    def qsize(self):
        # Slots taken = items buffered, in the pipe or being written.
        free = self._sem._semlock._get_value()
        return self._maxsize - free

    def full(self):
        return self._sem._semlock._is_zero()

    def empty(self):
        return not self._poll()

    # -- process life cycle -------------------------------------------------

    def __getstate__(self):
        context.assert_spawning(self)
        return tuple([getattr(self, name) for name in self._SHARED_FIELDS])

    def __setstate__(self, state):
        for name, value in zip(self._SHARED_FIELDS, state):
            setattr(self, name, value)
        self._reset()

    def _after_fork(self):
        debug('Queue._after_fork()')
        self._reset(after_fork=True)

    def _reset(self, after_fork=False):
        # A forked child starts with an empty buffer and no feeder: what the
        # parent had buffered is the parent's to send.  Fresh locks, since
        # the parent's may have been held by a thread that does not exist
        # here (after_fork is accepted for interface compatibility).
        self._closed = False
        self._buffer = deque()
        self._wakeup = threading.Lock()
        self._wakeup.acquire()
        self._start_lock = threading.Lock()
        self._thread = self._jointhread = self._close = None
        self._joincancelled = False
        writer, reader = self._writer, self._reader
        self._send_bytes = writer.send_bytes
        self._recv_bytes, self._poll = reader.recv_bytes, reader.poll

    # -- shutting down ------------------------------------------------------

    def close(self):
        self._closed = True
        finalizer, self._close = self._close, None
        if finalizer:
            finalizer()

    def cancel_join_thread(self):
        debug('Queue.cancel_join_thread()')
        self._joincancelled = True
        joiner = self._jointhread
        if joiner is not None:
            joiner.cancel()

    def join_thread(self):
        debug('Queue.join_thread()')
        assert self._closed, "Queue {0!r} not closed".format(self)
        joiner = self._jointhread
        if joiner:
            joiner()

    def _start_thread_once(self):
        with self._start_lock:
            if self._thread is None:
                self._start_thread()

    def _start_thread(self):
        debug('Queue._start_thread()')
        feeder = threading.Thread(
            target=Queue._feed,
            args=(self._buffer, self._wakeup, self._writer, self._wlock,
                  self._reader.close, self._writer.close, self._ignore_epipe,
                  self._on_queue_feeder_error, self._sem),
            name='QueueFeederThread', daemon=True)
        feeder.start()
        if not self._joincancelled:
            # Runs after the close finalizer below (lower priority), so the
            # sentinel is queued before we wait for the feeder to drain.
            self._jointhread = Finalize(
                feeder, Queue._finalize_join, [weakref.ref(feeder)],
                exitpriority=-5)
        # Garbage collection or exit of the queue tells the feeder to stop.
        self._close = Finalize(
            self, Queue._finalize_close, [self._buffer, self._wakeup],
            exitpriority=10)
        # Published last: other threads' put() skip the start lock once
        # they see it, and close() must then find the finalizer in place.
        self._thread = feeder

    @staticmethod
    def _finalize_join(thread_ref):
        thread = thread_ref()
        if thread is None:
            debug('... queue thread already dead')
            return
        debug('joining queue thread')
        thread.join()
        debug('... queue thread joined')

    @staticmethod
    def _finalize_close(buffer, wakeup):
        debug('telling queue thread to quit')
        buffer.append(_sentinel)
        if wakeup.locked():
            try:
                wakeup.release()
            except RuntimeError:
                pass

    @staticmethod
    def _feed(buffer, wakeup, writer, writelock, reader_close, writer_close,
              ignore_epipe, onerror, queue_sem):
        # Runs in the feeder thread.  It must not refer to the Queue itself,
        # or the queue could never be garbage collected (and closed).
        debug('starting thread to feed data to pipe')
        take = buffer.popleft
        sleep = wakeup.acquire
        lock, unlock = writelock.acquire, writelock.release
        sentinel = _sentinel

        def failed(exc, obj):
            # Called from inside an ``except`` block, so that the default
            # hook can print the traceback.  True means: stop feeding.
            if ignore_epipe and getattr(exc, 'errno', 0) == errno.EPIPE:
                return True
            if is_exiting():
                # Interpreter teardown may already have broken what we use.
                info('error in queue thread: %s', exc)
                return True
            # The item never reached the pipe: free its slot, as if a
            # reader had taken it.
            queue_sem.release()
            onerror(exc, obj)
            return False

        while True:
            sleep()
            finished = False
            while buffer and not finished:
                # One pickler and one buffer per batch: each item is dumped
                # behind a 4-byte gap that later receives its frame header.
                sink = io.BytesIO()
                pickler = _ForkingPickler(sink)
                objs = []
                frames = []
                end = 0
                while buffer and end < _BATCH_BYTES \
                        and len(objs) < _BATCH_ITEMS:
                    obj = take()
                    if obj is sentinel:
                        finished = True
                        break
                    sink.write(_HEADER_GAP)
                    try:
                        pickler.dump(obj)
                    except Exception as exc:
                        # Drop whatever the failed dump wrote; its memo is
                        # suspect too.
                        sink.seek(end)
                        sink.truncate()
                        pickler = _ForkingPickler(sink)
                        if failed(exc, obj):
                            return
                        continue
                    pickler.clear_memo()
                    start, end = end, sink.tell()
                    frames.append((start, end - start - 4))
                    objs.append(obj)
                obj = None
                if not objs:
                    continue
                segments = None
                try:
                    segments, total = _finish_frames(sink.getbuffer(), frames)
                    fd = writer.fileno()
                    lock()
                    try:
                        _write_all(fd, segments, total)
                    finally:
                        unlock()
                except Exception as exc:
                    for obj in objs:
                        if failed(exc, obj):
                            return
                segments = objs = None
            if finished:
                debug('feeder thread got sentinel -- exiting')
                reader_close()
                writer_close()
                return

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        """Report an item the feeder thread could not send.

        Called in the feeder thread, inside the ``except`` block that caught
        ``e`` while pickling or writing ``obj``.  Subclasses (e.g. the one in
        concurrent.futures) override it; the default prints the traceback.
        """
        import traceback
        traceback.print_exc()


_sentinel = object()


class JoinableQueue(Queue):
    """A Queue whose consumers acknowledge items with ``task_done()``.

    ``_unfinished_tasks`` counts items put but not yet acknowledged; ``join``
    waits on ``_cond`` until it drops to zero.
    """

    def __init__(self, maxsize=0, *, ctx):
        Queue.__init__(self, maxsize, ctx=ctx)
        self._unfinished_tasks = ctx.Semaphore(0)
        self._cond = ctx.Condition()

    _SHARED_FIELDS = Queue._SHARED_FIELDS + ('_cond', '_unfinished_tasks')

    def put(self, obj, block=True, timeout=None):
        if self._closed:
            raise _closed_error(self)
        if not self._sem.acquire(block, timeout):
            raise Full
        if self._thread is None:
            self._start_thread_once()
        # Count the task before the item can possibly be consumed, so a
        # fast task_done() never sees the counter at zero.
        self._unfinished_tasks.release()
        self._buffer.append(obj)
        self._notify_feeder()

    def task_done(self):
        cond, unfinished = self._cond, self._unfinished_tasks
        with cond:
            if not unfinished.acquire(False):
                raise ValueError('task_done() called too many times')
            if unfinished._semlock._is_zero():
                cond.notify_all()

    def join(self):
        cond = self._cond
        with cond:
            if self._unfinished_tasks._semlock._is_zero():
                return
            cond.wait()


class SimpleQueue(object):
    """A pipe with a lock at each end: no buffer, no thread, no size."""

    def __init__(self, *, ctx):
        self._rlock, self._wlock = ctx.Lock(), ctx.Lock()
        self._reader, self._writer = connection.Pipe(duplex=False)
        self._poll = self._reader.poll

    def put(self, obj):
        # Pickle before taking the lock: other writers only wait for the
        # write itself.
        data = _ForkingPickler.dumps(obj)
        wlock = self._wlock
        wlock.acquire()
        try:
            self._writer.send_bytes(data)
        finally:
            wlock.release()

    def get(self):
        rlock = self._rlock
        rlock.acquire()
        try:
            data = self._reader.recv_bytes()
        finally:
            rlock.release()
        return _ForkingPickler.loads(data)

    def empty(self):
        return not self._poll()

    def close(self):
        # Idempotent: Connection.close() ignores an already closed end.
        for end in (self._reader, self._writer):
            end.close()

    def __getstate__(self):
        context.assert_spawning(self)
        return self._reader, self._writer, self._rlock, self._wlock

    def __setstate__(self, state):
        self._reader, self._writer, self._rlock, self._wlock = state
        self._poll = self._reader.poll

    __class_getitem__ = classmethod(types.GenericAlias)
