/*
 * poolengine.h -- what the three files of the pool engine share: the
 * pool's wire format, a worker slot and its byte streams (poolslot.c), the
 * engine object and its slots mutex (poolengine.c), and lending a slot's
 * result pipe to a caller thread (poollend.c).  Private to those files.
 */
#ifndef MULTIPROCESS_POOLENGINE_H
#define MULTIPROCESS_POOLENGINE_H

#include "multiprocess.h"
#include "pythread.h"

#include <poll.h>
#include <stdint.h>

/* The pool's wire format, its only definition: module constants POOL_*
 * (see mp_poolengine_exec) hand it to the Python side. */
#define PE_HEADER_FORMAT "<QBQQ"    /* size, kind, task id, job id */
#define PE_HEADER 25
/* parent -> worker */
#define PE_K_APPLY 1            /* pickle of (func, args, kwds) */
#define PE_K_MAP 2              /* pickle of a list of arguments */
#define PE_K_STARMAP 3          /* pickle of a list of argument tuples */
#define PE_K_JOBDEF 4           /* pickle of the job's callable */
#define PE_K_FORGET 5           /* job ids (little-endian u64) to drop */
#define PE_K_QUIT 6
#define PE_K_APPLY_WAITED 7     /* as APPLY; its caller waits (the worker
                                 * spins before sleeping) */
#define PE_K_APPLY_TIMED 8      /* as APPLY, under task_timeout: the worker
                                 * stamps the start of the call */
#define PE_K_JOBDEF_TIMED 9     /* as JOBDEF, under task_timeout: a flag
                                 * byte (1: report each call's result as
                                 * a PART), then the pickle; the worker
                                 * stamps the start of every call */
/* worker -> parent */
#define PE_K_ACK 10             /* the task is starting */
#define PE_K_OK 11              /* pickle of the value */
#define PE_K_ERR 12             /* pickle of (exception pickle, traceback
                                 * text, description) */
#define PE_K_INITFAIL 13        /* the initializer raised; as for ERR */
#define PE_K_PART 14            /* task id 0 (ownership untouched), payload:
                                 * u64 task id, pickle of one call's value */
#define PE_READ_CHUNK (256 * 1024)
#define PE_BIG (64 * 1024)

typedef struct {
    char *data;
    size_t len;     /* bytes held */
    size_t pos;     /* bytes already consumed (written out / parsed) */
    size_t cap;
} pe_buf;

/* A payload written from the caller's buffer: it follows the first `at`
 * bytes of the output buffer (offset adjusted when the buffer compacts). */
typedef struct {
    size_t at;
    size_t pos;
    Py_buffer view;
} pe_big;

typedef struct {
    int used;
    long id;
    int task_fd, result_fd, sentinel;
    int eof;
    pe_buf out, in;
    pe_big *big;            /* payloads in stream order; the first */
    size_t nbig, bigcap;    /* `bigdone` are written, views held */
    size_t bigdone;
    uint64_t *own;          /* ring buffer of owned task ids */
    size_t own_head, own_len, own_cap;
    uint64_t acked;
    /* poollend.c */
    int lent;               /* result pipe left to a caller thread */
    int reader;             /* a caller thread is in read_lent() on it */
    int kick;               /* reclaim() wants the reader out */
    double lent_until;      /* end of the grace period of the lending */
    /* poolengine.c */
    int polled;             /* in the poll set the engine sleeps on */
} pe_slot;

typedef struct {
    PyObject_HEAD
    int wake_fd;
    int timer_fd;               /* lend grace timer, -1 if unavailable */
    int busy;                   /* a thread is inside wait() */
    PyThread_type_lock mutex;   /* guards slots */
    pe_slot *slots;
    size_t nslots;
    struct pollfd *pfds;
    long *pfd_ids;              /* slot id of each group of three pfds */
    size_t pfd_cap;
} pe_engine;

static inline void
pe_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static inline uint64_t
pe_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* poolslot.c: a slot's output/input buffers, owned-task FIFO, pipe I/O. */
int pe_buf_reserve_shift(pe_buf *b, size_t extra, pe_big *big, size_t nbig);
int pe_buf_reserve(pe_buf *b, size_t extra);
void pe_buf_free(pe_buf *b);
int pe_own_push(pe_slot *s, uint64_t id);
void pe_own_remove(pe_slot *s, uint64_t id);
/* Drop the views of payloads already written.  GIL held. */
void pe_release_written(pe_slot *s);
/* Free everything the slot holds and zero it.  GIL held. */
void pe_slot_clear(pe_slot *s);
/* Whether queued output is left; without the GIL too. */
int pe_slot_has_output(pe_slot *s);
/* Write what the task pipe takes; without the GIL too. */
void pe_slot_write(pe_slot *s);
/* Read what the result pipe holds; 0, or an errno value. */
int pe_slot_read(pe_slot *s);
/* Complete result frames into `events` (acks consumed); 0 or -1.  GIL. */
int pe_slot_parse(pe_slot *s, PyObject *events);

/*
 * The slots mutex.  PyThread locks need no GIL; a thread holding the GIL
 * must not block on the mutex with it (the engine thread may need the GIL
 * to let go), hence the try first.
 */
static inline void
pe_lock_nogil(pe_engine *self)
{
    (void)PyThread_acquire_lock(self->mutex, WAIT_LOCK);
}

/* Take the mutex, GIL held, when it is known to exist (taken before). */
static inline void
pe_relock(pe_engine *self)
{
    if (!PyThread_acquire_lock(self->mutex, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        pe_lock_nogil(self);
        Py_END_ALLOW_THREADS
    }
}

/* Take the mutex, GIL held: 0, or -1 with ValueError before __init__. */
static inline int
pe_lock(pe_engine *self)
{
    if (self->mutex == NULL) {
        PyErr_SetString(PyExc_ValueError, "PoolEngine not initialized");
        return -1;
    }
    pe_relock(self);
    return 0;
}

static inline void
pe_unlock(pe_engine *self)
{
    PyThread_release_lock(self->mutex);
}

/* poolengine.c.  The used slot with this id, or NULL; mutex held. */
pe_slot *pe_lookup_slot(pe_engine *self, long id);
/* The prologue of the per-slot methods: parse the slot id, take the mutex
 * and find the slot.  The slot with the mutex held, or NULL with an
 * exception (KeyError for an unknown id) and the mutex not held. */
pe_slot *pe_lock_slot_arg(pe_engine *self, PyObject *arg);

/* poollend.c: the grace timer (self->timer_fd, -1 when there is none). */
void pe_lend_timer_open(pe_engine *self);
void pe_lend_timer_close(pe_engine *self);
void pe_lend_timer_drain(pe_engine *self);
/* Take back a lent slot whose reader did not come within its grace
 * period (the timer woke the engine for it).  `*now`: the monotonic time,
 * read here on first need (< 0 until then).  Mutex held. */
void pe_lend_expire(pe_slot *s, double *now);
/* remove(slot), reclaim(slot): pe_lock_slot_arg() that also waits until
 * the slot has no reader and ends its lending. */
pe_slot *pe_lock_slot_evicted(pe_engine *self, PyObject *arg);
/* The methods lend(slot), read_lent(slot, timeout, spin=0), reclaim(slot). */
PyObject *pe_lend(pe_engine *self, PyObject *arg);
PyObject *pe_read_lent(pe_engine *self, PyObject *args);
PyObject *pe_reclaim(pe_engine *self, PyObject *arg);

#endif /* MULTIPROCESS_POOLENGINE_H */
