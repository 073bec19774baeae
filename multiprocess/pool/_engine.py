"""The process engine: one thread that feeds the worker processes, reads
their results and keeps the pool at full strength (the picture is in the
package docstring).  Its waiting and pipe I/O are done by the native core,
``_multiprocess.PoolEngine`` (poolengine.c); the steps and the bookkeeping
are here.

Every task is owned by exactly one worker from the moment it is sent, and
the worker acknowledges it when it starts running it, so the death of a
worker touches only that worker's tasks.  The callable of a ``map`` is sent
once per worker and job (``_K_JOBDEF``), then each chunk carries only its
arguments.
"""

import collections
import itertools
import os
import struct
import threading
import time

import _multiprocess as _native

from .. import util
from ..exceptions import ProcessError, TaskTimeoutError
from . import _worker
from ._errors import (MaybeEncodingError, _exit_description,
                      _lost_worker_error, traceback)
from ._jobs import CLOSE, RUN, TERMINATE
from ._results import _Failure, _abort_all
from ._records import (_TimedTask, _Task, _Worker, _ack_word, _read_stamp,
                       _task_counter, _widen_pipe)
from ._wire import (_ACK, _BIG_FRAME, _K_APPLY, _K_APPLY_TIMED,
                    _K_APPLY_WAITED, _K_FORGET, _K_INITFAIL, _K_JOBDEF,
                    _K_JOBDEF_TIMED, _K_MAP, _K_OK, _K_PART, _K_QUIT,
                    _PART_ID, _decode_error, _dumps, _dumps_call,
                    _dumps_chunk)
from ._worker import _PipeEnd, _pool_worker_entry

# A task payload at least this large is written as soon as it is pickled
# (see _Engine._add_work), smaller ones are batched.
_EAGER_SEND = 8 * 1024


class _Engine:
    """One thread that feeds the workers, reads their results and keeps
    the pool at full strength.  See the package docstring for the
    picture and the interface every engine offers the front."""

    # Tasks in flight per worker: one running, the rest queued in its pipe.
    # At least DEPTH, so that slow tasks stay balanced; beyond that as
    # many as the worker gets through in QUEUED_SECONDS at the rate its
    # results come back, up to MAX_DEPTH: the more tasks one write() to a
    # sleeping worker carries, the fewer wake-ups per task, while the work
    # a worker holds that another could have taken stays that short.
    DEPTH = 2
    MAX_DEPTH = 64
    QUEUED_SECONDS = 0.002
    # the rate is judged over RATE_WINDOW seconds or RATE_SAMPLE results
    # per worker, whichever comes first (see _depth)
    RATE_WINDOW = 0.05
    RATE_SAMPLE = 16
    # imap look-ahead, in chunks per worker
    LOOKAHEAD = 64

    def __init__(self, ctx, pool, cache, processes, initializer, initargs,
                 maxtasks, wrap_exception, process_factory,
                 max_memory=None):
        # pool is Pool._pool (the Process objects), cache Pool._cache
        self.ctx, self.pool, self.cache = ctx, pool, cache
        self.processes, self.maxtasks = processes, maxtasks
        self.initializer, self.initargs = initializer, initargs
        self.wrap_exception = wrap_exception
        self.process_factory = process_factory
        self.max_memory = max_memory
        self.timed = set()      # ids of the timed tasks in flight
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
        self.depth = self.DEPTH
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
                                   inherited, ack_end, self.max_memory))
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
            if (job.kind == _K_APPLY and job.timeout is None
                    and not self.jobs and not self.retry
                    and self.state == RUN):
                w = self._idle_worker()
                if w is not None and self._send_direct(w, job):
                    return
            self.jobs.append(job)
        self.wake()

    def _send_direct(self, w, job):
        """The latency path of apply_async: the caller's thread sends the
        task to an idle worker itself, and when the result has no callbacks
        the worker's result pipe is lent to it (see read_lent in
        poollend.c): get() reads the result without the engine thread
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
            got = self.core.read_lent(slot, timeout, _worker._SPIN)
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
                    if job.timeout is not None:
                        # flag: the worker reports each value of an imap's
                        # chunks as it comes (see _TimedTask)
                        job.wire_func = bytes(
                            [job.sets_length and job.chunksize > 1]
                        ) + job.wire_func
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
                job.result._count_sent(len(data))
            job.inflight += 1
            self.live_jobs[job.id] = job
            if job.timeout is not None:
                return _TimedTask(
                    next(_task_counter), job, index,
                    _K_APPLY_TIMED if kind == _K_APPLY else kind, payload,
                    data if job.sets_length and len(data) > 1 else None)
            return _Task(next(_task_counter), job, index, kind, payload)
        return None

    def _held_back(self, job):
        """An imap whose consumer is too far behind waits (see
        IMapIterator._held_back)."""
        return job.result._held_back(
            self.LOOKAHEAD * self.processes * job.chunksize, self.wake)

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
        """Tasks in flight per worker (see DEPTH), from the rate at which
        results came back over the last RATE_WINDOW seconds or RATE_SAMPLE
        results per worker, whichever came first: results of short tasks
        come in by the hundred within a millisecond, so a map of short
        tasks goes deep after a few dozen of them instead of spending its
        first 50 ms (the whole of a map of a few thousand items) two deep."""
        workers = max(1, len(self.workers))
        count = self.rate_count
        now = time.monotonic()
        span = now - self.rate_start
        if count < self.RATE_SAMPLE * workers and span <= self.RATE_WINDOW:
            return self.depth
        per_worker = count / (max(span, 1e-6) * workers)
        self.depth = max(self.DEPTH, min(self.MAX_DEPTH, int(
            per_worker * self.QUEUED_SECONDS)))
        self.rate_start, self.rate_count = now, 0
        return self.depth

    def _send(self, w, task):
        job = task.job
        core = self.core
        if w.forget:
            ids = w.forget
            core.send(w.slot, _K_FORGET, 0, 0,
                      struct.pack('<%dQ' % len(ids), *ids))
            w.forget = []
        if job.kind != _K_APPLY and job.id not in w.jobs:
            core.send(w.slot, _K_JOBDEF if job.timeout is None
                      else _K_JOBDEF_TIMED, 0, job.id, job.wire_func)
            w.jobs.add(job.id)
        # registered before the frame can leave: the result may come back
        # to the engine thread before this call returns
        self.tasks[task.id] = task
        if job.timeout is not None:
            self.timed.add(task.id)
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
                events = self.core.wait(
                    self._check_deadlines() if self.timed else 1.0)
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
            if kind == _K_PART:
                self._take_part(payload)
                continue
            self.rate_count += 1
            task = self.tasks.pop(task_id, None)
            if task is None:
                continue
            self.init_failures = 0
            if self.timed:
                self.timed.discard(task_id)
            if kind == _K_OK:
                try:
                    outcome = (True, _native.loads(payload))
                except BaseException as exc:
                    outcome = (False, MaybeEncodingError(
                        exc, 'a result that could not be unpickled'))
            else:
                outcome = (False, _decode_error(payload))
            if type(task) is _TimedTask and outcome[0] and (
                    task.parts or task.prefix):
                outcome = (True, (task.prefix or []) + task.parts
                           + outcome[1])
            # _deliver, inline: this runs once per result
            job = task.job
            try:
                job.result._set(task.index, outcome)
            except BaseException:
                traceback.print_exc()
            job.inflight -= 1
            if job.done_feeding and job.inflight <= 0:
                self._maybe_forget(job)

    # -- task_timeout -------------------------------------------------------
    # A worker stamps each timed call as it starts (_worker._stamp); while
    # timed tasks are in flight the engine wakes at the nearest deadline it
    # knows and at least once per shortest timeout (so that a call started
    # since the last look is seen before its own deadline), and kills the
    # worker of a call past it.  _bury then settles the task.

    def _check_deadlines(self):
        """Kill the workers of calls past their limit; returns how long
        wait() may sleep."""
        with self.lock:     # (a caller collecting a result edits self.timed)
            return self._check_deadlines_locked()

    def _check_deadlines_locked(self):
        now = time.monotonic()
        now_ns = time.monotonic_ns()
        nearest = now + 1.0
        for task_id in list(self.timed):
            task = self.tasks.get(task_id)
            if task is None:
                self.timed.discard(task_id)
            elif now + task.timeout < nearest:
                nearest = now + task.timeout
        for w in self.workers:
            if w.dead or w.expired is not None:
                continue
            acked = _ACK.unpack_from(w.ack_map)[0] if w.ack_map is not None \
                else None
            if acked is not None:
                task = self.tasks.get(acked)
                if task is None or type(task) is not _TimedTask:
                    continue
                stamp = _read_stamp(w.ack_map)
                if stamp is None or stamp[0] != acked:
                    # acknowledged, not stamped yet: look again soon
                    nearest = min(nearest, now + 0.005)
                    continue
                index = stamp[1]
                deadline = now + (stamp[2] + task.timeout * 1e9
                                  - now_ns) / 1e9
            else:
                # no shared word: measured from the send (coarser)
                owned = self.core.owned(w.slot)[0]
                task = self.tasks.get(owned[0]) if owned else None
                if task is None or type(task) is not _TimedTask:
                    continue
                index = 0
                deadline = task.sent_at + task.timeout
            if deadline <= now:
                if acked is not None and _read_stamp(w.ack_map) != stamp:
                    # it moved on meanwhile (or a read raced with a
                    # write on a CPU that reorders stores): look again
                    nearest = min(nearest, now + 0.005)
                    continue
                self._expire(w, task, index)
            elif deadline < nearest:
                nearest = deadline
        return max(0.0, nearest - time.monotonic())

    def _expire(self, w, task, index):
        """Call ``index`` of ``task`` ran past its limit: kill its worker
        (its end is handled by _bury, like any death)."""
        w.expired = (task.id, index)
        w.quitting = True       # nothing more is sent to it
        util.info('pool worker %s killed: a call ran longer than '
                  'task_timeout=%gs', w.pid, task.timeout)
        try:
            w.process.kill()
        except Exception:
            pass
        self.check_exits = True

    def _take_part(self, payload):
        """One value of a timed imap chunk, ahead of the rest."""
        task_id, = _PART_ID.unpack_from(payload)
        task = self.tasks.get(task_id)
        if task is None:
            return
        try:
            task.parts.append(_native.loads(memoryview(payload)[8:]))
        except BaseException as exc:
            task.parts.append(_Failure(MaybeEncodingError(
                exc, 'a result that could not be unpickled')))

    def _timed_out(self, w, task, index):
        """Settle the task whose call ``index`` timed out on worker ``w``
        (dead by now): an apply or map fails; an imap chunk keeps the
        values before that call, fails at it, and its later calls are sent
        to another worker."""
        exc = TaskTimeoutError(
            'a call ran longer than task_timeout=%gs; worker process %s '
            'was killed and replaced' % (task.timeout, w.pid),
            task.timeout, w.pid)
        job = task.job
        if task.kind == _K_APPLY_TIMED or not job.sets_length:
            self._deliver(task, (False, exc))
            return
        done = (task.prefix or []) + task.parts[:index] + [_Failure(exc)]
        rest = task.data[index + 1:] if task.data is not None else []
        if not rest:
            self._deliver(task, (True, done))
            return
        try:
            payload = _dumps_chunk(rest)
        except BaseException as why:
            self._deliver(task, (False, why))
            return
        self.retry.appendleft(_TimedTask(next(_task_counter), job,
                                         task.index, task.kind, payload,
                                         rest, done))

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
        expired = w.expired
        if w.ack_map is not None:
            acked = _ACK.unpack_from(w.ack_map)[0]
            if expired is not None:
                # the values it reported before being killed
                for _ in range(64):
                    events = self.core.wait(0)
                    if not events:
                        break
                    self._handle(events)
                self.woken = False      # (a wake-up byte may be gone)
                stamp = _read_stamp(w.ack_map)
                if stamp is not None and stamp[0] == expired[0]:
                    expired = (expired[0], stamp[1])
        lost = []
        timed_out = None
        for task_id in owned:
            task = self.tasks.pop(task_id, None)
            if task is None:
                continue
            self.timed.discard(task_id)
            if task_id == acked:
                if expired is not None and expired[0] == task_id:
                    timed_out = task
                else:
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
        if timed_out is not None:
            self._timed_out(w, timed_out, expired[1])
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
            self.timed.clear()
            self.live_jobs.clear()
            _abort_all(self.cache.values(), exc)
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
        self._fail_everything(None)     # the pool was terminated
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
