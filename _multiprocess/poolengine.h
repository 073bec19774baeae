/*
 * poolengine.h -- what the two files of the pool engine share: the pool's
 * wire format, a worker slot and its byte streams (poolslot.c), and the
 * engine object (poolengine.c).  Private to those two files.
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
/* How long a lent slot may wait for its reader before the engine takes it
 * back: a caller that goes on to get() reads well within it, and a result
 * nobody asks for yet is late by at most this much. */
#define PE_LEND_GRACE_NS (5 * 1000 * 1000)
/* A reader re-checks its slot at least this often (ms), so that reclaim()
 * never waits on a poll() that nothing will end. */
#define PE_READER_SLICE_MS 50

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
    int lent;               /* result pipe left to a caller thread */
    int reader;             /* a caller thread is in read_lent() on it */
    int kick;               /* reclaim() wants the reader out */
    int polled;             /* in the poll set the engine sleeps on */
    double lent_until;      /* end of the grace period of the lending */
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

#endif /* MULTIPROCESS_POOLENGINE_H */
