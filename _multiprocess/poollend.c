/*
 * poollend.c -- lending, the latency path of the pool's apply_async().get().
 *
 * On this machine class every hand-off between blocked threads/processes
 * costs tens of microseconds, so a caller whose task went to an idle worker
 * reads the result itself (read_lent) instead of being woken by the engine
 * thread, which would first have to be woken by the worker.  A lent slot's
 * result pipe is left out of the engine's poll set; the engine polls only
 * result pipes of slots that own tasks, so lending an idle slot never races
 * with a poll already in progress.  A caller that never comes to read is
 * covered by a timerfd: lend() arms it, and once a slot's grace period is
 * over the engine takes it back if it has no reader (pe_lend_expire, from
 * the engine's poll set).  Worker deaths stay the engine's business (it
 * always polls the sentinels, which pool/_engine.py makes pidfds where it
 * can); reclaim() waits until a reader has left a slot before the engine
 * inspects it or its fds are closed.
 *
 * The slot fields this file owns: lent, reader, kick, lent_until (and it
 * reads polled, set by the engine's poll loop).  The PoolEngine methods
 * lend/read_lent/reclaim are defined here, listed in poolengine.c's table.
 */
#include "poolengine.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* How long a lent slot may wait for its reader before the engine takes it
 * back: a caller that goes on to get() reads well within it, and a result
 * nobody asks for yet is late by at most this much. */
#define PE_LEND_GRACE_NS (5 * 1000 * 1000)
/* A reader re-checks its slot at least this often (ms), so that reclaim()
 * never waits on a poll() that nothing will end. */
#define PE_READER_SLICE_MS 50

/* ------------------------------------------------------ the grace timer */

void
pe_lend_timer_open(pe_engine *self)
{
    /* without a timer nothing is ever lent (lend() says no) */
    self->timer_fd = timerfd_create(CLOCK_MONOTONIC,
                                    TFD_NONBLOCK | TFD_CLOEXEC);
}

void
pe_lend_timer_close(pe_engine *self)
{
    if (self->timer_fd >= 0) {
        close(self->timer_fd);
        self->timer_fd = -1;
    }
}

void
pe_lend_timer_drain(pe_engine *self)
{
    uint64_t expirations;
    if (read(self->timer_fd, &expirations, sizeof(expirations)) < 0) {
        /* EAGAIN: disarmed or re-armed meanwhile; nothing to drain */
    }
}

void
pe_lend_expire(pe_slot *s, double *now)
{
    if (s->lent && !s->reader) {
        /* the timer was armed by the latest lend(), so it fires at or
         * after every lent slot's deadline */
        if (*now < 0) {
            *now = mp_monotonic();
        }
        if (*now >= s->lent_until) {
            s->lent = 0;
        }
    }
}

/* ------------------------------------------------- readers and eviction */

/* End the lending of slot `id`, first making its reader (if any) leave and
 * waiting until it has: the engine is about to read the slot's pipe, or
 * its fds are about to be closed.  Mutex and GIL held on entry and exit;
 * slots may move in memory meanwhile (add() grows the array), hence the
 * lookup by id.  Returns the slot, or NULL if there is none. */
static pe_slot *
evict_reader(pe_engine *self, long id)
{
    pe_slot *s = pe_lookup_slot(self, id);
    while (s != NULL && s->reader) {
        s->kick = 1;
        pe_unlock(self);
        /* a reader re-checks within PE_READER_SLICE_MS, at once when the
         * worker ended (it watches the sentinel too) */
        Py_BEGIN_ALLOW_THREADS
        (void)poll(NULL, 0, 1);
        Py_END_ALLOW_THREADS
        pe_relock(self);
        s = pe_lookup_slot(self, id);
    }
    if (s != NULL) {
        s->lent = 0;
        s->kick = 0;
    }
    return s;
}

pe_slot *
pe_lock_slot_evicted(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_arg(self, arg);
    if (s == NULL) {
        return NULL;
    }
    s = evict_reader(self, s->id);
    if (s == NULL) {
        pe_unlock(self);
        PyErr_SetString(PyExc_KeyError, "pool worker slot went away");
    }
    return s;
}

/* ------------------------------------------------------------ methods */

PyObject *
pe_reclaim(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_evicted(self, arg);
    if (s == NULL) {
        return NULL;
    }
    pe_unlock(self);
    Py_RETURN_NONE;
}

PyObject *
pe_lend(pe_engine *self, PyObject *arg)
{
    pe_slot *s = pe_lock_slot_arg(self, arg);
    if (s == NULL) {
        return NULL;
    }
    /* only an idle slot that the engine's current poll() does not watch:
     * then its next frames can reach nobody but the reader */
    int ok = self->timer_fd >= 0 && !s->lent && !s->reader && !s->polled
             && s->own_len == 0 && s->sentinel >= 0 && !s->eof;
    if (ok) {
        struct itimerspec grace;
        memset(&grace, 0, sizeof(grace));
        grace.it_value.tv_nsec = PE_LEND_GRACE_NS;
        /* deadline first: the timer, armed after, cannot fire before it */
        s->lent_until = mp_monotonic() + PE_LEND_GRACE_NS * 1e-9;
        ok = timerfd_settime(self->timer_fd, 0, &grace, NULL) == 0;
        s->lent = ok;
    }
    pe_unlock(self);
    return PyBool_FromLong(ok);
}

PyObject *
pe_read_lent(pe_engine *self, PyObject *args)
{
    long id;
    PyObject *arg;
    double spin = 0;
    if (!PyArg_ParseTuple(args, "lO|d:read_lent", &id, &arg, &spin)) {
        return NULL;
    }
    struct timespec deadline;
    int forever = mp_timeout_deadline(arg, &deadline);
    if (forever < 0) {
        return NULL;
    }
    PyObject *events = PyList_New(0);
    if (events == NULL) {
        return NULL;
    }
    if (pe_lock(self) < 0) {
        Py_DECREF(events);
        return NULL;
    }
    pe_slot *s = pe_lookup_slot(self, id);
    if (s == NULL || !s->lent || s->reader) {
        pe_unlock(self);
        Py_DECREF(events);
        Py_RETURN_NONE;
    }
    s->reader = 1;
    const int rfd = s->result_fd, sfd = s->sentinel;
    int ended = 0, last = 0, failed = 0;
    for (;;) {
        if (pe_slot_parse(s, events) < 0) {
            failed = 1;
            break;
        }
        if (PyList_GET_SIZE(events) > 0 || ended || s->eof || s->kick
                || last) {
            break;
        }
        int ms = PE_READER_SLICE_MS;
        if (!forever) {
            int left = mp_ms_left(&deadline);
            if (left == 0) {
                ms = 0;
                last = 1;
            }
            else if (left < ms) {
                ms = left;
            }
        }
        struct pollfd pf[2];
        pf[0].fd = rfd;
        pf[0].events = POLLIN;
        pf[1].fd = sfd;
        pf[1].events = POLLIN;
        pf[0].revents = pf[1].revents = 0;
        int ready, err = 0, rerr = 0;
        pe_unlock(self);
        Py_BEGIN_ALLOW_THREADS
        ready = 0;
        if (ms != 0 && spin > 0) {
            /* the worker usually answers within the spin: then nobody
             * sleeps, and its write() need not wake us */
            ready = mp_spin_poll(pf, 2, spin);
            spin = 0;
        }
        if (ready == 0) {
            ready = poll(pf, 2, ms);
        }
        if (ready < 0) {
            err = errno;
        }
        pe_lock_nogil(self);
        /* remove() and reclaim() wait for us, so the slot is still there,
         * though maybe elsewhere in memory */
        s = pe_lookup_slot(self, id);
        if (s != NULL && ready > 0) {
            ended = pf[1].revents != 0;
            if (pf[0].revents || ended) {
                rerr = pe_slot_read(s);
            }
        }
        Py_END_ALLOW_THREADS
        if (s == NULL) {
            break;
        }
        if (rerr == ENOMEM) {
            PyErr_NoMemory();
            failed = 1;
            break;
        }
        if (ready < 0) {
            if (err != EINTR) {
                mp_raise_errno(err);
                failed = 1;
                break;
            }
            /* handlers may use the pool: not with the mutex held */
            pe_unlock(self);
            int sig = PyErr_CheckSignals();
            pe_relock(self);
            s = pe_lookup_slot(self, id);
            if (s == NULL || sig < 0) {
                failed = sig < 0;
                break;
            }
        }
    }
    int wake = 1;
    if (s != NULL) {
        wake = failed || ended || s->eof || s->own_len > 0
               || s->in.len > s->in.pos;
        s->reader = 0;
        s->lent = 0;
        s->kick = 0;
    }
    pe_unlock(self);
    if (failed) {
        Py_DECREF(events);
        return NULL;
    }
    return Py_BuildValue("(NO)", events, wake ? Py_True : Py_False);
}
