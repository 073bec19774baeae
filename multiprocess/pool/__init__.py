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

Where things live (docs/pool.md has the same table)::

    _front     Pool: argument checks, one result object and one job per
               call, states (_state), the surface pathos and CPython use
    _results   ApplyResult, MapResult, IMapIterator, IMapUnorderedIterator:
               ordering, callbacks, timeouts
    _jobs      _Job (a result and a lazy task source), chunking, states
    _engine    _Engine, the process engine: the engine thread above, the
               worker processes and their replacement, the latency path
    _records   the engine's records of a worker process and of a task
    _worker    the loop a worker process runs; the stdlib-protocol worker()
    _wire      frames and kinds (defined by poolengine.c, read from
               _multiprocess.POOL_*), pickling of tasks and results
    _errors    RemoteTraceback, MaybeEncodingError, lost-worker messages
    _progress  the progress= bar and counters (imported on first use)
    _threads   ThreadPool and its engine of threads
    _dask      DaskEngine, the engine of multiprocess.cluster.Pool (tasks
               moved by a Dask cluster; imported only with distributed)

The front knows its engine only through the interface below, so other
back ends (threads here; a cluster, pool features) plug in by returning
their engine from ``Pool._make_engine``::

    populate()    start the workers; on failure stop those started, raise
    start()       begin moving tasks (the process engine starts its thread)
    submit(job)   take a _Job: pull tasks with job.next_task() ->
                  (index, kind, data) or None, run them, and complete the
                  result with job.result._set(index, (ok, value)); an
                  exception raised while pulling goes to job.fail_rest(exc).
                  An imap job (job.sets_length) learns its length from
                  next_task itself; an engine may hold it back while
                  job.result._held_back(limit, wake) says so, counting
                  what it sent with job.result._count_sent(n).
    close()       no more jobs; finish the queued ones, then workers exit
    terminate()   stop now; every result still in the pool's cache ends
                  with result._abort(ProcessError(...))
    join()        wait for the workers (and the engine's threads) to end
    repopulate()  bring the workers back to the pool's size
    thread        the engine's thread or None  (Pool._worker_handler)
    jobs          the queued jobs               (Pool._taskqueue)

Kinds are ``_jobs.APPLY`` (``data`` is ``(func, args, kwds)``), ``MAP`` and
``STARMAP`` (``data`` is a list of arguments, the callable ``job.func``).
An engine appends the workers it starts to ``Pool._pool`` and never calls a
callback itself: the result objects do.
"""

# (the facade re-exports: nothing here is used in this file)
# flake8: noqa: F401
from .. import util
from ..exceptions import ProcessError, TimeoutError, WorkerLostError
from ._errors import (ExceptionWithTraceback, MaybeEncodingError,
                      RemoteTraceback, rebuild_exc)
from ._jobs import CLOSE, INIT, RUN, TERMINATE
from ._results import (ApplyResult, AsyncResult, IMapIterator,
                       IMapUnorderedIterator, MapResult, job_counter)
from ._worker import (_helper_reraises_exception, mapstar, starmapstar,
                      worker)
from ._front import Pool
from ._threads import ThreadPool

# Internal names tests and tools reach for through the public module.
from ._engine import _Engine
from ._wire import _dumps_call, _dumps_chunk, _loads_chunk, _not_by_name

__all__ = ['Pool', 'ThreadPool']

# Public objects say they come from here (reprs, pickles by reference).
for _obj in (ExceptionWithTraceback, MaybeEncodingError, RemoteTraceback,
             ApplyResult, IMapIterator, IMapUnorderedIterator, MapResult,
             mapstar, starmapstar, worker, Pool, ThreadPool):
    _obj.__module__ = __name__
del _obj
