"""Jobs: the unit a pool's front hands to its engine.

A job is the work of one call (``apply_async``, ``map_async``, ``imap``...):
its result object and a lazy source of tasks.  Chunking happens here, as
the engine pulls tasks, so an ``imap`` over an endless iterable only ever
holds the chunks in flight.
"""


# The job kinds are the task kinds of the wire format (an engine sending
# them to processes uses them as they are).
from ._wire import _K_APPLY, _K_MAP, _K_STARMAP

# Pool._state (and an engine's state) takes these values; pathos compares
# against the strings.
RUN, CLOSE, TERMINATE = 'RUN', 'CLOSE', 'TERMINATE'
INIT = 'INIT'       # only while Pool.__init__ runs

APPLY, MAP, STARMAP = _K_APPLY, _K_MAP, _K_STARMAP


class _Job:
    """Work submitted by one call: a result object and a lazy task source.

    ``next_task()`` returns ``(index, kind, data)`` -- for apply jobs
    ``data`` is ``(func, args, kwds)``, for map jobs a list of arguments --
    or None once the source is exhausted.  An exception raised by the
    caller's iterable becomes the outcome of the chunk it interrupted.
    ``sets_length``: the result is an iterator told the number of chunks
    (and of items) once the source is exhausted (``_set_length``).
    ``timeout``: the limit in seconds of each call (``task_timeout``), or
    None; an engine that cannot enforce it must refuse the job.
    """

    __slots__ = ('id', 'result', 'kind', 'func', 'source', 'count',
                 'done_feeding', 'wire_func', 'sets_length', 'inflight',
                 'chunksize', 'items', 'timeout')

    def __init__(self, result, kind, func, source, sets_length, chunksize=1,
                 timeout=None):
        self.chunksize = chunksize
        self.timeout = timeout
        self.items = 0              # items pulled from the source so far
        self.id = result._job
        self.result = result
        self.kind = kind
        self.func = func
        self.source = source
        self.count = 0
        self.done_feeding = False
        self.wire_func = None       # the pickled func, for process engines
        self.sets_length = sets_length
        self.inflight = 0           # tasks sent and not yet answered

    def next_task(self):
        if self.done_feeding:
            return None
        if self.kind == APPLY:
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
        self.items += len(chunk)
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
            self.result._set_length(length, self.items)


def _map_chunksize(length, workers):
    """The chunk size of a map given none: about four chunks per worker,
    few messages and a fair balance; 0 for an empty input."""
    if length == 0:
        return 0
    chunksize, extra = divmod(length, workers * 4 or 1)
    if extra:
        chunksize += 1
    return chunksize
