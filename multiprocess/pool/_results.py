"""Result objects: what ``apply_async``, ``map_async`` and ``imap`` return.

An engine completes them through ``_set(index, (ok, value))`` (and, for
the iterators, ``_set_length(n)`` once the number of chunks is known) and
ends them early through ``_abort(exc)``; ordering and callbacks are theirs.
"""

import collections
import itertools
import sys
import threading
import time
import types
from _thread import allocate_lock as _new_lock

from ..exceptions import ProcessError, TimeoutError
from ._errors import traceback

# How long a waiter holds out on an ApplyResult's gate before it looks at
# the flag again (see ApplyResult._block).
_GATE_SLICE = 0.5

job_counter = itertools.count()     # ids of result objects (and jobs)


class ApplyResult(object):
    """The future of one ``apply_async`` call (alias ``AsyncResult``)."""

    def __init__(self, pool, callback, error_callback):
        self._pool = pool           # keeps the pool alive until we're done
        # Completion is a flag and a lock held until the outcome is set;
        # a waiter takes the lock and hands it straight on (_block).  A
        # threading.Event would do, but one is made per apply_async and
        # creating one (a Condition and its lock) costs about 8 us on 3.11,
        # half the Python work of a round trip.
        self._done = False
        self._gate = _new_lock()
        self._gate.acquire()
        self._callback, self._error_callback = callback, error_callback
        self._success = self._value = None
        self._lent = None       # (engine, slot) whose result we may read
        self._job = next(job_counter)
        self._cache = pool._cache
        self._cache[self._job] = self

    def ready(self):
        """Whether the call has completed, successfully or not."""
        if self._lent is not None and not self._done:
            self._collect(0)
        return self._done

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
        if self._lent is not None and not self._done:
            if timeout is None:
                self._collect(None)
            else:
                deadline = time.monotonic() + timeout
                self._collect(timeout)
                timeout = max(0.0, deadline - time.monotonic())
        return self._block(timeout)

    def _block(self, timeout):
        """Wait until the outcome is set (as Event.wait would)."""
        if self._done:
            return True
        gate = self._gate
        deadline = None if timeout is None else time.monotonic() + timeout
        # The gate is taken in slices, the flag looked at between them: a
        # waiter interrupted (KeyboardInterrupt) after taking the gate and
        # before handing it on leaves it held, and the others must still
        # see the outcome rather than wait on the gate for ever.
        while not self._done:
            if deadline is None:
                piece = _GATE_SLICE
            else:
                piece = min(_GATE_SLICE, deadline - time.monotonic())
                if piece <= 0:
                    break
            if gate.acquire(True, piece):
                try:
                    gate.release()      # to the next waiter
                except RuntimeError:
                    pass    # (see _mark_done)
                break
        return self._done

    def _mark_done(self):
        if self._done:
            return
        self._done = True
        try:
            self._gate.release()
        except RuntimeError:
            pass    # two threads marked it at once: the other released

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
        if self._done:
            return          # aborted by terminate() before it came back
        self._success, self._value = obj
        _run_callback(self._callback if self._success
                      else self._error_callback, self._value)
        self._mark_done()
        self._retire()

    def _retire(self):
        self._cache.pop(self._job, None)
        self._pool = self._lent = None

    __class_getitem__ = classmethod(types.GenericAlias)

    def _abort(self, exc):
        if not self._done:
            self._set(0, (False, exc))


AsyncResult = ApplyResult


def _abort_all(results, exc=None):
    """End every result in `results` with `exc` (default: the pool was
    terminated), whatever their callbacks do: one that raises is
    reported and the rest still end."""
    if exc is None:
        exc = ProcessError('the pool was terminated before this task '
                           'completed')
    for result in list(results):
        try:
            result._abort(exc)
        except BaseException:
            traceback.print_exc()


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
    """The future of a ``map_async``/``starmap_async`` call.

    ``done`` is the number of calls completed so far, ``total`` the number
    of calls (both plain attributes, read at any time).
    """

    def __init__(self, pool, chunksize, length, callback, error_callback,
                 progress=None):
        super().__init__(pool, callback, error_callback)
        # filled slice by slice as chunks arrive; chunks still to come
        self._success, self._value = True, [None] * length
        self._chunksize = chunksize
        self._number_left = -(-length // chunksize) if chunksize > 0 else 0
        self._chunk_count = self._number_left
        self._slots = self._value
        if length:
            # tells whether the (short) last chunk arrived, for `done`
            self._slots[-1] = _NOT_YET
        self.total = length
        self._progress = progress       # a _progress reporter, or None
        if not self._number_left:      # nothing to wait for (empty input)
            if progress is not None:
                progress.finish(0, 0)
            self._mark_done()
            self._retire()

    def _set(self, i, success_result):
        if self._done:
            return                      # already failed: drop the rest
        ok, value = success_result
        if not ok:
            self._success = False
            self._value = value
            if self._progress is not None:
                self._progress.finish(self.done, self.total)
            _run_callback(self._error_callback, value)
            self._mark_done()
            self._retire()
            return
        start = i * self._chunksize
        self._value[start:start + len(value)] = value
        self._number_left -= 1
        if self._progress is not None:
            self._report()
        if self._number_left == 0:
            _run_callback(self._callback, self._value)
            self._mark_done()
            self._retire()

    @property
    def done(self):
        """Calls completed so far (of a failed map: those before the
        failure arrived)."""
        chunks = self._chunk_count - self._number_left
        done = chunks * self._chunksize
        if chunks and self._slots[-1] is not _NOT_YET:
            done -= self._chunk_count * self._chunksize - self.total
        return done

    def _report(self):
        if self._number_left == 0:
            self._progress.finish(self.total, self.total)
        else:
            self._progress.update(self.done, self.total)


_NOT_YET = object()


class _Failure:
    """Marks, in the values of an imap chunk, a call that failed (only a
    chunk of a job with task_timeout has such values)."""
    __slots__ = ('exc',)

    def __init__(self, exc):
        self.exc = exc


def _runs(values):
    """A chunk's values as outcomes, in order: a run of plain values, or
    (False, exc) for each _Failure among them."""
    run = []
    for value in values:
        if type(value) is _Failure:
            if run:
                yield True, run
                run = []
            yield False, value.exc
        else:
            run.append(value)
    if run:
        yield True, run


# an exhausted iterator: stays so, whoever asks it
_NOTHING_LEFT = iter(())


class IMapIterator(object):
    """Results of ``imap``, in order, as they arrive.

    Chunks are handed over whole: a consumer takes the next chunk under
    the lock and then its items one by one without it, from the chunk's
    list iterator (in a for loop, without a Python call per item).  A failed chunk raises its exception
    once, at its position.  ``done`` is the number of results arrived so
    far, ``total`` the number of items of the input once it has been read
    to its end (None until then).
    """

    def __init__(self, pool, buffersize=None, progress=None):
        self._pool = pool
        # taken as `with self._lock` (the lock's own C context manager; a
        # Condition's __enter__ is a Python call on top, paid per result)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._job = next(job_counter)
        self._cache = pool._cache
        self._ready = collections.deque()    # outcomes to hand over, in order
        self._chunk = _NOTHING_LEFT          # iterator of the chunk handed
        self._take = _NOTHING_LEFT.__next__  # and its __next__
        self._handed = 0                     # that chunk's length
        self._chunks = {}                    # chunk index -> (ok, value)
        self._index = 0                      # next chunk index to hand out
        self._waiting = 0                    # consumer threads in wait()
        # notified, and no waiter has woken since: the results that come
        # meanwhile need no notify() of their own (the one woken takes
        # them all, or hands on to the next waiter)
        self._signalled = False
        self._length = None                  # number of chunks, once known
        # Chunks may hold _Failure values (set by the pool for a job with
        # task_timeout): they are split into runs as they become ready.
        self._mixed = False
        # Look-ahead bound: the engine stops pulling from the caller's
        # iterable while `_sent - _yielded` items are out (_held_back), and
        # the consumer wakes it up again once it caught up by half.  A
        # chunk counts as yielded once its last item was taken.
        self._sent = 0
        self._yielded = 0
        self._limit = None
        self._resume = 0
        self._stalled = False
        self._wake = None
        # imap(buffersize=): the bound in items (chunks x chunksize), which
        # replaces the engine's look-ahead; pulling resumes at once when a
        # chunk's worth of room is free
        self._buffer = buffersize
        self.total = None
        self._progress = progress
        self._cache[self._job] = self

    def __iter__(self):
        # A for loop takes the items through a generator: one resume of it
        # per item, which hands on the chunk iterator's item in C, where a
        # call of next() would cost a Python frame.  It shares next()'s
        # position: both take from the same chunk iterator.
        return self._each()

    def _each(self):
        while True:
            chunk = self._chunk
            yield from chunk
            try:
                value = self._next_chunk(None, chunk)
            except StopIteration:
                return
            yield value

    def next(self, timeout=None):
        used = self._chunk
        try:
            return self._take()
        except StopIteration:
            return self._next_chunk(timeout, used)

    __next__ = next

    def _next_chunk(self, timeout, used):
        """The first item of the next chunk; ``used``: the chunk iterator
        the caller found exhausted."""
        wake = None
        try:
            with self._lock:
                while True:
                    if self._chunk is not used:
                        # another thread handed a chunk meanwhile
                        try:
                            return self._take()
                        except StopIteration:
                            pass
                        used = self._chunk
                    if self._handed:
                        self._yielded += self._handed
                        self._handed = 0
                        if self._stalled and (self._sent - self._yielded
                                              <= self._resume):
                            self._stalled = False
                            wake = self._wake
                    ready = self._ready
                    if ready or self._advance():
                        ok, value = ready.popleft()
                        if not ok:
                            self._yielded += 1
                            raise value
                        if (self._buffer is None and len(value) < self._BATCH
                                and (ready or self._advance())):
                            value = self._batch(value)
                        self._chunk = iter(value)
                        self._take = self._chunk.__next__
                        self._handed = len(value)
                        if ready and self._waiting:
                            # more for another consumer thread
                            self._cond.notify()
                        continue
                    if (self._length is not None
                            and self._index >= self._length):
                        self._pool = None
                        # every other consumer thread ends here too
                        self._cond.notify_all()
                        if self._progress is not None:
                            # the bar is closed before the caller goes on
                            wake = self._finish_progress
                        raise StopIteration from None
                    self._waiting += 1
                    try:
                        woken = self._cond.wait(timeout)
                    finally:
                        self._waiting -= 1
                        self._signalled = False
                    if not woken and not self._advance_possible():
                        raise TimeoutError from None
        finally:
            # outside our lock: an engine of threads takes its own lock to
            # wake up, and may call _set (which takes ours) while holding it
            if wake is not None:
                wake()

    # Chunks of fewer items than this that are ready together are handed
    # over as one (one take of the lock, not one per chunk: with
    # chunksize=1 that was once per item).  Not under buffersize=, whose
    # bound counts chunks as they are used up.
    _BATCH = 64

    def _batch(self, value):
        """``value`` and the successful chunks ready behind it, as one
        list of at most about _BATCH items; a failure stays in place."""
        ready = self._ready
        values = list(value)
        while ready[0][0]:
            values += ready.popleft()[1]
            if len(values) >= self._BATCH or not (ready or self._advance()):
                break
        return values

    def _make_ready(self, outcome):
        if self._mixed and outcome[0]:
            self._ready.extend(_runs(outcome[1]))
        else:
            self._ready.append(outcome)

    # -- flow control, for the engine feeding this iterator's job

    def _count_sent(self, items):
        """``items`` more of the caller's items went out to the workers."""
        self._sent += items

    def _held_back(self, limit, wake):
        """Whether the engine should stop pulling from the caller's
        iterable for now: ``limit`` items are out and not yet consumed.
        Once the consumer caught up by half, ``wake()`` is called."""
        if self._limit is None:
            if self._buffer is not None:
                self._limit = self._buffer
                self._resume = self._buffer - 1
            else:
                self._limit = limit
                self._resume = limit // 2
            self._wake = wake
        if self._sent - self._yielded < self._limit:
            return False
        self._stalled = True
        # re-check: the consumer may have caught up meanwhile
        if self._sent - self._yielded < self._limit:
            self._stalled = False
            return False
        return True

    # -- completion, by the engine

    def _advance_possible(self):
        return bool(self._ready) or self._index in self._chunks or (
            self._length is not None and self._index >= self._length)

    def _advance(self):
        """Make the next chunk in order ready; False if not there."""
        outcome = self._chunks.pop(self._index, None)
        if outcome is None:
            return False
        self._index += 1
        self._make_ready(outcome)
        return True

    def _set(self, i, obj):
        with self._lock:
            self._chunks[i] = obj
            if self._waiting and not self._signalled:
                self._signalled = True
                self._cond.notify()
            complete = self._check_done()
        if self._progress is not None:
            self._report(complete)

    def _set_length(self, length, items=None):
        """The source ended after ``length`` chunks (``items`` items)."""
        with self._lock:
            self._length = length
            if items is not None:
                self.total = items
            self._cond.notify()
            complete = self._check_done()
        if self._progress is not None:
            self._report(complete)

    @property
    def done(self):
        """Results arrived so far (a failed chunk counts as one)."""
        with self._lock:
            return self._yielded + self._handed + sum(
                len(value) if ok else 1
                for outcomes in (self._ready, self._chunks.values())
                for ok, value in outcomes)

    def _finish_progress(self):
        self._progress.finish(self.done, self.total)

    def _report(self, complete):
        if complete:
            self._progress.finish(self.done, self.total)
        else:
            self._progress.update(self.done, self.total)

    def _abort(self, exc):
        """End the iteration with ``exc`` at the first missing position."""
        with self._lock:
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
        if self._progress is not None:
            self._report(True)

    def _check_done(self):
        if self._length is not None and (
                self._index + len(self._chunks) >= self._length):
            self._cache.pop(self._job, None)
            return True
        return False


class IMapUnorderedIterator(IMapIterator):
    """Results of ``imap_unordered``, in completion order."""

    def _set(self, i, obj):
        with self._lock:
            self._make_ready(obj)
            self._index += 1
            if self._waiting and not self._signalled:
                self._signalled = True
                self._cond.notify()
            complete = self._check_done()
        if self._progress is not None:
            self._report(complete)

    def _advance(self):
        return False

    def _abort(self, exc):
        with self._lock:
            if self._length is not None and self._index >= self._length:
                return
            self._ready.append((False, exc))
            self._index += 1
            self._length = self._index
            self._cond.notify_all()
            self._cache.pop(self._job, None)
        if self._progress is not None:
            self._report(True)

    def _advance_possible(self):
        return bool(self._ready) or (
            self._length is not None and self._index >= self._length)
