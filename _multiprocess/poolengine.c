/*
 * poolengine.c -- the I/O core of multiprocess.pool's engine: the slots
 * table, sending, and the poll loop.
 *
 * A PoolEngine multiplexes the pipes of one process pool.  Each worker is a
 * "slot" with three descriptors: the task pipe (we write), the result pipe
 * (we read) and the process sentinel (readable once the process ended).
 * Frames (the private format of multiprocess.pool, defined in
 * poolengine.h and read by multiprocess/pool/_wire.py from the POOL_*
 * constants: little-endian u64 payload size, u8 kind, u64 task id, u64
 * job id, then the payload) are
 * queued per slot and written without blocking; wait() releases the GIL,
 * polls every descriptor plus a wake-up pipe, moves bytes in both
 * directions, and returns what the Python side must act on.
 *
 * The engine also keeps task ownership: every task frame sent to a slot is
 * remembered in that slot's FIFO until its result comes back, and the
 * worker's acknowledgement frame (sent when it starts a task) is consumed
 * here, so when a worker dies Python can ask which task it was running
 * (owned()) without ever seeing the acks.
 *
 * Large payloads (PE_BIG bytes and more) are not copied: the frame's header
 * goes to the output buffer and the slot keeps a buffer view of the
 * caller's object, written with writev() in stream order.  Views are
 * released with the GIL held once written (pe_release_written()).
 *
 * Threads: wait() is for the pool's engine thread alone; the other methods
 * may also be called by caller threads (apply_async sends its task itself
 * when a worker is idle).  A mutex guards the slots; wait() drops it while
 * it sleeps in poll().
 *
 * Lending (the latency path of apply_async().get(): a caller reads its
 * result from the worker's pipe itself) is poollend.c's; this file leaves
 * lent slots out of its poll set and takes them back when their grace
 * period is over.
 *
 * Python API:
 *   PoolEngine(wake_fd)
 *   add(slot, task_fd, result_fd, sentinel)   sentinel may be -1
 *   remove(slot)                              the fds stay open (Python's)
 *   send(slot, kind, task, job, payload)      queue a frame; kinds 1-3 and
 *                                             7 are tasks, become owned; the
 *                                             payload may be a tuple of
 *                                             buffers, sent back to back
 *   flush()                                   write what can be written now
 *   wait(timeout)  -> list of (slot, kind, task, payload) for result frames
 *                     and (slot, -1, 0, None) when a slot's process ended or
 *                     its result pipe closed; [] on a wake-up, None on
 *                     timeout.  Acks alone do not end the wait.
 *   owned(slot)    -> (list of task ids in send order, acked task id or 0)
 *   load(slot)     -> number of owned tasks
 *   unsent(slot)   -> bytes queued, not yet written to the pipe
 *   lend(slot)     -> True if the idle slot is now lent to the calling
 *                     thread's result object (then send its one task)
 *   read_lent(slot, timeout, spin=0) -> None if the slot is not lent or has
 *                     a reader; else (events, wake): the result frames read
 *                     (as wait() returns them) and whether the engine must
 *                     look at the slot (tasks left, ended, timed out).  The
 *                     slot is no longer lent afterwards.
 *   reclaim(slot)  -> end any lending of the slot, waiting for its reader
 *   timer_fd          the grace timer's fd (forked workers close it)
 *   PoolEngine.spin_wait(fd, seconds) -> whether fd became readable while
 *                     polled without sleeping (the worker's side of the
 *                     spin; see read_lent's `spin`)
 */
#include "poolengine.h"
#include "structmember.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

/* ----------------------------------------------------------------- slots */

/* pe_lookup_slot() that raises KeyError for an unknown id.  GIL held. */
static pe_slot *
find_slot(pe_engine *self, long id)
{
    pe_slot *s = pe_lookup_slot(self, id);
    if (s == NULL) {
        PyErr_Format(PyExc_KeyError, "no pool worker slot %ld", id);
    }
    return s;
}

pe_slot *
pe_lookup_slot(pe_engine *self, long id)
{
    for (size_t i = 0; i < self->nslots; i++) {
        if (self->slots[i].used && self->slots[i].id == id) {
            return &self->slots[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ the type */

static int
pe_init(pe_engine *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"wake_fd", NULL};
    int wake_fd;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i:PoolEngine", kwlist,
                                     &wake_fd)) {
        return -1;
    }
    self->wake_fd = wake_fd;
    if (self->mutex == NULL) {
        pe_lend_timer_open(self);
        self->mutex = PyThread_allocate_lock();
        if (self->mutex == NULL) {
            pe_lend_timer_close(self);
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static int
pe_traverse(pe_engine *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void
pe_dealloc(pe_engine *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    for (size_t i = 0; i < self->nslots; i++) {
        pe_slot_clear(&self->slots[i]);
    }
    PyMem_RawFree(self->slots);
    PyMem_RawFree(self->pfds);
    PyMem_RawFree(self->pfd_ids);
    if (self->mutex != NULL) {       /* pe_init() ran: the timer is ours */
        pe_lend_timer_close(self);
        PyThread_free_lock(self->mutex);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
pe_add(pe_engine *self, PyObject *args)
{
    long id;
    int task_fd, result_fd, sentinel;
    if (!PyArg_ParseTuple(args, "liii:add", &id, &task_fd, &result_fd,
                          &sentinel)) {
        return NULL;
    }
    if (pe_lock(self) < 0) {
        return NULL;
    }
    pe_slot *s = NULL;
    for (size_t i = 0; i < self->nslots; i++) {
        if (!self->slots[i].used) {
            s = &self->slots[i];
            break;
        }
    }
    if (s == NULL) {
        size_t n = self->nslots ? self->nslots * 2 : 8;
        pe_slot *p = PyMem_RawRealloc(self->slots, n * sizeof(pe_slot));
        if (p == NULL) {
            pe_unlock(self);
            return PyErr_NoMemory();
        }
        memset(p + self->nslots, 0, (n - self->nslots) * sizeof(pe_slot));
        s = p + self->nslots;
        self->slots = p;
        self->nslots = n;
    }
    s->used = 1;
    s->id = id;
    s->task_fd = task_fd;
    s->result_fd = result_fd;
    s->sentinel = sentinel;
    pe_unlock(self);
    Py_RETURN_NONE;
}

pe_slot *
pe_lock_slot_arg(pe_engine *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (pe_lock(self) < 0) {
        return NULL;
    }
    pe_slot *s = find_slot(self, id);
    if (s == NULL) {
        pe_unlock(self);
    }
    return s;
}

static PyObject *
pe_remove(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_evicted(self, arg);
    if (s == NULL) {
        return NULL;
    }
    pe_slot_clear(s);
    pe_unlock(self);
    Py_RETURN_NONE;
}

#define PE_MAX_PARTS 64

static PyObject *
pe_send(pe_engine *self, PyObject *args)
{
    long id;
    int kind;
    unsigned long long task, job;
    PyObject *obj, *res = NULL;
    if (!PyArg_ParseTuple(args, "liKKO:send", &id, &kind, &task, &job,
                          &obj)) {
        return NULL;
    }
    /* the payload: one bytes-like object, or a tuple of them sent back to
     * back as one frame (a pickle and its out-of-band buffers) */
    Py_buffer parts[PE_MAX_PARTS];
    Py_ssize_t nparts = 0;
    int tuple = PyTuple_Check(obj);
    Py_ssize_t want = tuple ? PyTuple_GET_SIZE(obj) : 1;
    if (want > PE_MAX_PARTS) {
        PyErr_SetString(PyExc_ValueError, "too many payload parts");
        return NULL;
    }
    size_t total = 0, copied = 0, nref = 0;
    for (; nparts < want; nparts++) {
        PyObject *part = tuple ? PyTuple_GET_ITEM(obj, nparts) : obj;
        if (PyObject_GetBuffer(part, &parts[nparts], PyBUF_SIMPLE) < 0) {
            goto release;
        }
        size_t len = (size_t)parts[nparts].len;
        total += len;
        if (len >= PE_BIG) {
            nref++;
        }
        else {
            copied += len;
        }
    }
    if (pe_lock(self) < 0) {
        goto release;
    }
    pe_slot *s = find_slot(self, id);
    if (s == NULL) {
        goto done;
    }
    pe_release_written(s);
    if (s->nbig + nref > s->bigcap) {
        size_t cap = s->bigcap ? s->bigcap : 4;
        while (cap < s->nbig + nref) {
            cap *= 2;
        }
        pe_big *q = PyMem_RawRealloc(s->big, cap * sizeof(pe_big));
        if (q == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        s->big = q;
        s->bigcap = cap;
    }
    if (pe_buf_reserve_shift(&s->out, PE_HEADER + copied, s->big, s->nbig) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if ((kind >= PE_K_APPLY && kind <= PE_K_STARMAP)
            || kind == PE_K_APPLY_WAITED || kind == PE_K_APPLY_TIMED) {
        if (pe_own_push(s, (uint64_t)task) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    unsigned char *p = (unsigned char *)s->out.data + s->out.len;
    pe_put_u64(p, (uint64_t)total);
    p[8] = (unsigned char)kind;
    pe_put_u64(p + 9, (uint64_t)task);
    pe_put_u64(p + 17, (uint64_t)job);
    s->out.len += PE_HEADER;
    for (Py_ssize_t i = 0; i < nparts; i++) {
        if ((size_t)parts[i].len >= PE_BIG) {
            pe_big *b = &s->big[s->nbig++];
            b->at = s->out.len;
            b->pos = 0;
            b->view = parts[i];     /* the slot owns the view now */
            parts[i].obj = NULL;
        }
        else {
            memcpy(s->out.data + s->out.len, parts[i].buf,
                   (size_t)parts[i].len);
            s->out.len += (size_t)parts[i].len;
        }
    }
    res = Py_None;
    Py_INCREF(res);
done:
    pe_unlock(self);
release:
    for (Py_ssize_t i = 0; i < nparts; i++) {
        if (parts[i].obj != NULL) {
            PyBuffer_Release(&parts[i]);
        }
    }
    return res;
}

static PyObject *
pe_flush(pe_engine *self, PyObject *Py_UNUSED(ignored))
{
    if (pe_lock(self) < 0) {
        return NULL;
    }
    int pending = 0;
    for (size_t i = 0; i < self->nslots && !pending; i++) {
        pending = self->slots[i].used && pe_slot_has_output(&self->slots[i]);
    }
    if (pending) {
        /* A write() that wakes a sleeping worker costs tens of
         * microseconds on a VM, and the woken worker may take this CPU
         * before write() returns: the GIL is let go meanwhile, so that
         * the caller's other threads (an imap consumer) keep running.
         * The mutex keeps the slots where they are. */
        Py_BEGIN_ALLOW_THREADS
        for (size_t i = 0; i < self->nslots; i++) {
            pe_slot *s = &self->slots[i];
            if (s->used && pe_slot_has_output(s)) {
                pe_slot_write(s);
            }
        }
        Py_END_ALLOW_THREADS
    }
    for (size_t i = 0; i < self->nslots; i++) {
        if (self->slots[i].used) {
            pe_release_written(&self->slots[i]);
        }
    }
    pe_unlock(self);
    Py_RETURN_NONE;
}

/* pollfd layout: the wake-up pipe, the lend timer, then three per slot */
#define PE_FIRST_SLOT 2

/* Fill the poll set: per used slot result / sentinel / task.  A slot's
 * result pipe is watched only while it owns tasks (nothing else arrives
 * there; a dying worker's last frames are read when its sentinel fires)
 * and is not lent.  Lent slots whose reader never came are taken back
 * here, which is what the lend timer's wake-up is for.
 * Called with the mutex held.  Returns the number of pollfds, or -1. */
static Py_ssize_t
build_pollset(pe_engine *self)
{
    size_t need = PE_FIRST_SLOT + 3 * self->nslots;
    if (need > self->pfd_cap) {
        struct pollfd *p = PyMem_RawRealloc(self->pfds,
                                            need * sizeof(struct pollfd));
        if (p == NULL) {
            return -1;
        }
        self->pfds = p;
        long *q = PyMem_RawRealloc(self->pfd_ids, need * sizeof(long));
        if (q == NULL) {
            return -1;
        }
        self->pfd_ids = q;
        self->pfd_cap = need;
    }
    struct pollfd *pf = self->pfds;
    size_t n = 0;
    double now = -1;
    pf[n].fd = self->wake_fd;
    pf[n].events = POLLIN;
    pf[n].revents = 0;
    n++;
    pf[n].fd = self->timer_fd;
    pf[n].events = POLLIN;
    pf[n].revents = 0;
    n++;
    for (size_t i = 0; i < self->nslots; i++) {
        pe_slot *s = &self->slots[i];
        if (!s->used) {
            continue;
        }
        pe_lend_expire(s, &now);
        s->polled = !s->eof && !s->lent &&
                    (s->own_len > 0 || s->sentinel < 0);
        self->pfd_ids[n] = s->id;
        pf[n].fd = s->polled ? s->result_fd : -1;
        pf[n].events = POLLIN;
        pf[n + 1].fd = s->sentinel;
        pf[n + 1].events = POLLIN;
        pf[n + 2].fd = pe_slot_has_output(s) ? s->task_fd : -1;
        pf[n + 2].events = POLLOUT;
        pf[n].revents = pf[n + 1].revents = pf[n + 2].revents = 0;
        n += 3;
    }
    return (Py_ssize_t)n;
}

/* After poll(): move bytes.  Mutex held, GIL not needed.  A slot removed
 * or replaced while we slept is recognised by its id and fds. */
static int
move_bytes(pe_engine *self, size_t n)
{
    struct pollfd *pf = self->pfds;
    int err = 0;
    if (pf[0].revents) {
        char drain[256];
        while (read(self->wake_fd, drain, sizeof(drain)) > 0) {
        }
    }
    if (pf[1].revents) {
        pe_lend_timer_drain(self);
    }
    for (size_t k = PE_FIRST_SLOT; k < n; k += 3) {
        pe_slot *s = pe_lookup_slot(self, self->pfd_ids[k]);
        if (s == NULL) {
            continue;
        }
        /* a worker that ended may have written frames first (results,
         * INITFAIL) to a pipe we were not watching: take them now, unless
         * a reader is on it (it reads them) */
        int ended = pf[k + 1].fd >= 0 && pf[k + 1].fd == s->sentinel
                    && pf[k + 1].revents;
        int readable = pf[k].fd >= 0 && pf[k].fd == s->result_fd
                       && pf[k].revents;
        if (readable || (ended && !s->eof && !s->reader)) {
            if (pe_slot_read(s) == ENOMEM) {
                err = ENOMEM;
            }
        }
        if (pf[k + 2].fd >= 0 && pf[k + 2].revents) {
            pe_slot_write(s);
        }
    }
    return err;
}

/* Sleep in poll() until a descriptor is ready, a signal comes or the
 * deadline (NULL: none) passes, then move bytes.  Mutex held on entry and
 * on return, dropped while asleep so that callers may send meanwhile.
 * Returns the number of pollfds with *ready and *err as poll() and the
 * moves left them, or -1 with MemoryError. */
static Py_ssize_t
poll_and_move(pe_engine *self, const struct timespec *deadline, int *ready,
              int *err)
{
    Py_ssize_t n = build_pollset(self);
    if (n < 0) {
        PyErr_NoMemory();
        return -1;
    }
    pe_unlock(self);
    int ms = deadline == NULL ? -1 : mp_ms_left(deadline);
    int r, e = 0;
    Py_BEGIN_ALLOW_THREADS
    r = poll(self->pfds, (nfds_t)n, ms);
    if (r < 0) {
        e = errno;
    }
    pe_lock_nogil(self);
    for (size_t i = 0; i < self->nslots; i++) {
        self->slots[i].polled = 0;
    }
    if (r > 0) {
        e = move_bytes(self, (size_t)n);
    }
    Py_END_ALLOW_THREADS
    *ready = r;
    *err = e;
    return n;
}

/* After a poll() that found something: the result frames and ended slots
 * among the first `n` pollfds, as a new list (maybe empty), or NULL. */
static PyObject *
collect_events(pe_engine *self, Py_ssize_t n)
{
    PyObject *events = PyList_New(0);
    if (events == NULL) {
        return NULL;
    }
    struct pollfd *pf = self->pfds;
    for (Py_ssize_t k = PE_FIRST_SLOT; k < n; k += 3) {
        pe_slot *s = pe_lookup_slot(self, self->pfd_ids[k]);
        if (s == NULL) {
            continue;
        }
        pe_release_written(s);
        /* a reader parses what it read itself, under this mutex */
        if (!s->reader && pe_slot_parse(s, events) < 0) {
            goto fail;
        }
        int ended = (pf[k + 1].fd >= 0 && pf[k + 1].fd == s->sentinel
                     && pf[k + 1].revents) || s->eof;
        if (ended) {
            /* the pipe's last bytes were read above */
            PyObject *ev = Py_BuildValue("(liKO)", s->id, -1, 0ULL, Py_None);
            if (ev == NULL) {
                goto fail;
            }
            int rc = PyList_Append(events, ev);
            Py_DECREF(ev);
            if (rc < 0) {
                goto fail;
            }
        }
    }
    return events;
fail:
    Py_DECREF(events);
    return NULL;
}

/* wait()'s loop, mutex held on entry and on return. */
static PyObject *
wait_events(pe_engine *self, const struct timespec *deadline)
{
    for (;;) {
        int ready, err;
        Py_ssize_t n = poll_and_move(self, deadline, &ready, &err);
        if (n < 0) {
            return NULL;
        }
        if (ready < 0 && err == EINTR) {
            /* handlers may use the pool: not with the mutex held */
            pe_unlock(self);
            int sig = PyErr_CheckSignals();
            pe_relock(self);
            if (sig < 0) {
                return NULL;
            }
            continue;
        }
        if (ready < 0 || err == ENOMEM) {
            return err == ENOMEM ? PyErr_NoMemory() : mp_raise_errno(err);
        }
        if (ready == 0) {
            Py_RETURN_NONE;             /* timed out */
        }
        PyObject *events = collect_events(self, n);
        if (events == NULL || PyList_GET_SIZE(events) > 0 ||
                self->pfds[0].revents) {
            return events;
        }
        /* only acknowledgements or partial frames: nothing for Python */
        Py_DECREF(events);
    }
}

static PyObject *
pe_wait(pe_engine *self, PyObject *arg)
{
    struct timespec deadline;
    int forever = mp_timeout_deadline(arg, &deadline);
    if (forever < 0) {
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "PoolEngine.wait() called from two threads at once");
        return NULL;
    }
    if (pe_lock(self) < 0) {
        return NULL;
    }
    self->busy = 1;
    PyObject *res = wait_events(self, forever ? NULL : &deadline);
    pe_unlock(self);
    self->busy = 0;
    return res;
}

static PyObject *
pe_owned(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_arg(self, arg);
    if (s == NULL) {
        return NULL;
    }
    PyObject *ids = PyList_New((Py_ssize_t)s->own_len);
    for (size_t i = 0; ids != NULL && i < s->own_len; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(
            s->own[(s->own_head + i) % s->own_cap]);
        if (v == NULL) {
            Py_CLEAR(ids);
            break;
        }
        PyList_SET_ITEM(ids, (Py_ssize_t)i, v);
    }
    unsigned long long acked = s->acked;
    pe_unlock(self);
    if (ids == NULL) {
        return NULL;
    }
    return Py_BuildValue("(NK)", ids, acked);
}

static PyObject *
pe_load(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_arg(self, arg);
    if (s == NULL) {
        return NULL;
    }
    size_t load = s->own_len;
    pe_unlock(self);
    return PyLong_FromSize_t(load);
}

/* Bytes queued for a slot that its pipe has not taken yet. */
static PyObject *
pe_unsent(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_arg(self, arg);
    if (s == NULL) {
        return NULL;
    }
    size_t n = s->out.len - s->out.pos;
    for (size_t i = s->bigdone; i < s->nbig; i++) {
        n += (size_t)s->big[i].view.len - s->big[i].pos;
    }
    pe_unlock(self);
    return PyLong_FromSize_t(n);
}

/* The worker's side of the spin: before it blocks on an empty task pipe,
 * a worker polls it for a moment, so that a caller sending its next task
 * right after reading a result finds it awake (a sleeping peer costs the
 * sender a cross-CPU wake-up inside write()). */
static PyObject *
pe_spin_wait(PyObject *Py_UNUSED(cls), PyObject *args)
{
    int fd;
    double seconds;
    if (!PyArg_ParseTuple(args, "id:spin_wait", &fd, &seconds)) {
        return NULL;
    }
    struct pollfd pf;
    pf.fd = fd;
    pf.events = POLLIN;
    int ready, err = 0;
    Py_BEGIN_ALLOW_THREADS
    ready = mp_spin_poll(&pf, 1, seconds);
    if (ready < 0) {
        err = errno;
    }
    Py_END_ALLOW_THREADS
    if (ready < 0 && err != EINTR) {
        return mp_raise_errno(err);
    }
    if (PyErr_CheckSignals() < 0) {
        return NULL;
    }
    return PyBool_FromLong(ready > 0);
}

static PyMethodDef pe_methods[] = {
    {"spin_wait", (PyCFunction)pe_spin_wait,
     METH_VARARGS | METH_STATIC,
     "spin_wait(fd, seconds) -> whether fd became readable while polling "
     "it without sleeping for at most that long."},
    {"add", (PyCFunction)pe_add, METH_VARARGS,
     "add(slot, task_fd, result_fd, sentinel): manage a worker's pipes."},
    {"remove", (PyCFunction)pe_remove, METH_O,
     "remove(slot): forget a worker (its fds are not closed)."},
    {"send", (PyCFunction)pe_send, METH_VARARGS,
     "send(slot, kind, task, job, payload): queue one frame."},
    {"flush", (PyCFunction)pe_flush, METH_NOARGS,
     "flush(): write queued frames as far as the pipes take them."},
    {"wait", (PyCFunction)pe_wait, METH_O,
     "wait(timeout): poll, move bytes, return result and exit events."},
    {"owned", (PyCFunction)pe_owned, METH_O,
     "owned(slot) -> (task ids in send order, acknowledged task id or 0)."},
    {"load", (PyCFunction)pe_load, METH_O,
     "load(slot) -> number of tasks the worker owns."},
    {"unsent", (PyCFunction)pe_unsent, METH_O,
     "unsent(slot) -> bytes queued that the pipe has not taken yet."},
    {"lend", (PyCFunction)pe_lend, METH_O,
     "lend(slot) -> whether the idle slot's next result is left to a "
     "caller thread (read_lent)."},
    {"read_lent", (PyCFunction)pe_read_lent, METH_VARARGS,
     "read_lent(slot, timeout, spin=0) -> (events, wake), or None if the "
     "slot is not lent or has a reader; polls without sleeping for up to "
     "`spin` seconds first; ends the lending."},
    {"reclaim", (PyCFunction)pe_reclaim, METH_O,
     "reclaim(slot): end the slot's lending, waiting for its reader."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef pe_members[] = {
    {"timer_fd", T_INT, offsetof(pe_engine, timer_fd), READONLY,
     "fd of the lend grace timer (-1 if none)"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot pe_slots[] = {
    {Py_tp_members, pe_members},
    {Py_tp_doc, "The pipes and task ownership of one process pool."},
    {Py_tp_init, pe_init},
    {Py_tp_dealloc, pe_dealloc},
    {Py_tp_traverse, pe_traverse},
    {Py_tp_methods, pe_methods},
    {0, NULL},
};

static PyType_Spec pe_spec = {
    .name = "_multiprocess.PoolEngine",
    .basicsize = sizeof(pe_engine),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = pe_slots,
};

int
mp_poolengine_exec(PyObject *module)
{
    mp_state *st = mp_get_state(module);
    PyObject *tp = PyType_FromModuleAndSpec(module, &pe_spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    st->poolengine_type = (PyTypeObject *)tp;
    if (PyModule_AddObjectRef(module, "PoolEngine", tp) < 0 ||
        PyModule_AddStringConstant(module, "POOL_HEADER_FORMAT",
                                   PE_HEADER_FORMAT) < 0) {
        return -1;
    }
    static const struct { const char *name; long value; } wire[] = {
        {"POOL_HEADER", PE_HEADER},
        {"POOL_BIG", PE_BIG},
        {"POOL_K_APPLY", PE_K_APPLY},
        {"POOL_K_MAP", PE_K_MAP},
        {"POOL_K_STARMAP", PE_K_STARMAP},
        {"POOL_K_JOBDEF", PE_K_JOBDEF},
        {"POOL_K_FORGET", PE_K_FORGET},
        {"POOL_K_QUIT", PE_K_QUIT},
        {"POOL_K_APPLY_WAITED", PE_K_APPLY_WAITED},
        {"POOL_K_APPLY_TIMED", PE_K_APPLY_TIMED},
        {"POOL_K_JOBDEF_TIMED", PE_K_JOBDEF_TIMED},
        {"POOL_K_ACK", PE_K_ACK},
        {"POOL_K_OK", PE_K_OK},
        {"POOL_K_ERR", PE_K_ERR},
        {"POOL_K_INITFAIL", PE_K_INITFAIL},
        {"POOL_K_PART", PE_K_PART},
    };
    for (size_t i = 0; i < sizeof(wire) / sizeof(wire[0]); i++) {
        if (PyModule_AddIntConstant(module, wire[i].name,
                                    wire[i].value) < 0) {
            return -1;
        }
    }
    return 0;
}
