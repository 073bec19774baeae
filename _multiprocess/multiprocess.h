/*
 * multiprocess.h -- the one internal header of the native core.
 *
 * The extension module `_multiprocess` is built from one C file per
 * mechanism.  module.c owns initialisation and the per-module state; every
 * other file owns one mechanism and exposes a single `*_exec` hook that
 * module.c calls during multi-phase init (Py_mod_exec).  A hook adds the
 * mechanism's types/functions/constants to the module and fills its slots
 * in the module state.
 *
 *   semlock.c     SemLock: POSIX named semaphores as locks/semaphores
 *   spinwait.c    waiting for fds: spin-before-sleep, ppoll with timeout,
 *                 poll()/wait_fds()
 *   frameio.c     framed send/recv on file descriptors
 *   endpoint.c    Endpoint: send()/recv() of pickled objects in one C call
 *   codec.c       Codec: pickling a message with the Python policy's
 *                 callables (plain data in C, reused picklers, fallback)
 *   arena.c       shared memory arenas and the block allocator (sharedctypes)
 *   syncwrap.c    SyncBase/SyncValue/SyncArray: sharedctypes' synchronized
 *                 wrappers (lock, then read/write the ctypes buffer)
 *   deadline.c    timeouts read one way; deadlines on CLOCK_MONOTONIC
 *   shm.c         shm_open/shm_unlink for multiprocess.shared_memory
 *   poolengine.c  the Pool's engine: slots, sending, the poll loop
 *                 (poolengine.h: its wire format and shared declarations)
 *   poolslot.c    a pool worker slot's buffers, pipe I/O, frame parsing
 *   poollend.c    lending a slot's result pipe to the caller waiting on it
 *   plainpickle.c pickles of plain data (lists, dicts, numbers, strings)
 *                 written without the general pickler
 *   plainunpickle.c  and read without the general unpickler
 *
 * compat.h holds every difference between the Python versions the core
 * builds for (3.10 to 3.13, free-threaded builds); the .c files have no
 * version tests of their own.
 */
#ifndef MULTIPROCESS_NATIVE_H
#define MULTIPROCESS_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "compat.h"     /* what differs between Python versions */

#include <poll.h>
#include <time.h>

/*
 * Per-module state.  RULE: only `PyObject *` / `PyTypeObject *` members, so
 * module.c can traverse and clear the whole struct as an array of object
 * pointers.  Each mechanism keeps its members in its own section.
 */
typedef struct {
    /* semlock.c */
    PyTypeObject *semlock_type;
    /* codec.c */
    PyTypeObject *codec_type;
    /* frameio.c */
    PyObject *recv_kept;            /* a large received frame, for reuse */
    /* arena.c */
    PyTypeObject *arena_type;
    PyTypeObject *arena_block_type;
    /* syncwrap.c */
    PyTypeObject *sync_base_type;
    PyTypeObject *sync_value_type;
    PyTypeObject *sync_array_type;
    /* poolengine.c */
    PyTypeObject *poolengine_type;
    /* plainpickle.c */
    PyObject *plain_kept;           /* an output buffer kept for reuse */
    /* plainunpickle.c */
    PyObject *pickle_loads;         /* where anything not plain goes */
} mp_state;

typedef struct mp_codec mp_codec;

static inline mp_state *
mp_get_state(PyObject *module)
{
    return (mp_state *)PyModule_GetState(module);
}

/* Find the module state from a heap type defined by this module. */
mp_state *mp_state_from_type(PyTypeObject *tp);

/*
 * Raise OSError (or the errno-specific subclass) from `err`; returns NULL.
 * Callers save errno before any cleanup and pass the saved value.
 */
PyObject *mp_raise_errno(int err);

/* CLOCK_MONOTONIC in seconds (0.0 should the clock ever fail). */
static inline double
mp_monotonic(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * Timeouts (deadline.c).  Beyond MP_FOREVER_SECONDS a timeout waits
 * forever: a deadline that far out could overflow time_t arithmetic, and
 * nobody can tell the difference.
 */
#define MP_FOREVER_SECONDS 1e12

/* Read a timeout argument: 1 for "wait forever" (None or beyond
 * MP_FOREVER_SECONDS), 0 with *seconds >= 0 (a negative one is 0), -1 with
 * an exception (not a number; NaN is a ValueError). */
int mp_parse_timeout(PyObject *obj, double *seconds);

/* mp_parse_timeout() then mp_deadline_after(): 1 for "wait forever", 0
 * with *deadline set, -1 with an exception. */
int mp_timeout_deadline(PyObject *timeout, struct timespec *deadline);

/* *deadline = now + seconds on CLOCK_MONOTONIC; 0, or -1 with errno. */
int mp_deadline_after(struct timespec *deadline, double seconds);

/* Time left until `deadline`, never negative; 0, or -1 with errno. */
int mp_time_left(const struct timespec *deadline, struct timespec *left);

/* Milliseconds left until `deadline` for poll(), rounded up, never
 * negative, at most INT_MAX. */
int mp_ms_left(const struct timespec *deadline);

/*
 * SemLock for the rest of the core (semlock.c), so that a mechanism that
 * holds a SemLock (syncwrap.c's wrappers) takes and gives it without a
 * Python-level call.  GIL held on entry and on return.
 */
enum { MP_SEMLOCK_ACQUIRE, MP_SEMLOCK_RELEASE };

/* When `method` is SemLock's own acquire (MP_SEMLOCK_ACQUIRE) or release
 * method bound to a SemLock, that SemLock (borrowed, alive as long as
 * `method`); else NULL, with no exception: the caller calls `method`. */
PyObject *mp_semlock_method_self(mp_state *st, PyObject *method, int which);

/*
 * acquire() of the SemLock `op` (from mp_semlock_method_self): 1 taken (a
 * recursive mutex held by this thread is re-entered), 0 not taken, -1 with
 * an exception.  Not free at once and `blocking`: waits with the GIL
 * released until `deadline` on CLOCK_MONOTONIC (mp_deadline_after; NULL:
 * forever), 0 when it passes.  A signal interrupting the wait runs its
 * Python handler; an exception from it ends the wait with -1, otherwise the
 * wait goes on for what is left.
 */
int mp_semlock_acquire(PyObject *op, int blocking,
                       const struct timespec *deadline);

/* release() of the SemLock `op`: 0, or -1 with the exception release()
 * raises (AssertionError: a recursive mutex not held by this thread;
 * ValueError: a bounded semaphore at its maximum). */
int mp_semlock_release(PyObject *op);

/*
 * Whether a spin could pay now: 0 while the CPUs look oversubscribed (more
 * runnable tasks than CPUs for us, a spin lately pre-empted, or spins in a
 * row in vain); see spinwait.c, "When a spin can pay".  No GIL needed.
 */
int mp_spin_worthwhile(void);

/*
 * Busy-wait, without the GIL, for one of `pfds` to become ready: poll
 * them without sleeping, giving the CPU to any other runnable task between
 * looks, for at most `seconds`; at once when mp_spin_worthwhile() says no
 * or another task turns out to want this CPU.  Returns what poll() returned last: > 0
 * ready, 0 still nothing, -1 with errno (EINTR included: the caller must
 * let signal handlers run before it blocks).  spinwait.c.
 */
int mp_spin_poll(struct pollfd *pfds, nfds_t n, double seconds);

/* Without the GIL: block until `fd` is ready for `events` (used when an
 * fd turns out to be non-blocking).  0, or -1 with errno.  spinwait.c. */
int mp_await_fd(int fd, short events);

/* Whether another Python thread could be waiting for the GIL (GIL held).
 * spinwait.c. */
int mp_other_threads_exist(void);

/* "O&" converter: any object with a file descriptor to an int.  spinwait.c. */
int mp_fd_converter(PyObject *obj, void *out);

/* One whole frame from fd as bytes; None when maxlength >= 0 and the
 * frame is longer (its payload is left unread); NULL with an exception.
 * frameio.c. */
PyObject *mp_read_frame(mp_state *st, int fd, long long maxlength);

/* Write the buffers items[0..count) to fd as ONE frame.  0, or -1 with an
 * exception; nothing is written when a piece is not a buffer.  frameio.c. */
int mp_write_frame(int fd, PyObject *const *items, Py_ssize_t count);

/*
 * The pickle of obj written without the pickler, as a new bytes, when obj
 * is plain data and protocol is 4 or 5; a new reference to None when not;
 * NULL with an exception (memory) on failure.  `st` (or NULL) is where a
 * large output buffer is kept for the next call.  plainpickle.c.
 */
PyObject *mp_plain_dumps(mp_state *st, PyObject *obj, int protocol);

/*
 * The object pickle.loads would build from data[0:size], when that is a
 * pickle of plain data: 1 and a new reference in *result.  Otherwise 0,
 * with no exception set (malformed data included: pickle.loads is the one
 * to raise).  plainunpickle.c.
 */
int mp_plain_loads(const char *data, Py_ssize_t size, PyObject **result);

/*
 * A message pickled by a Codec (codec.c): `count` buffer objects at
 * `parts`, to be written back to back, valid until mp_codec_release().
 */
typedef struct {
    PyObject *const *parts;
    Py_ssize_t count;
    PyObject *single;       /* owned: the one part, when there is one */
    PyObject *entry;        /* owned: the pickler whose chunks are parts */
} mp_pickled;

/* Whether obj is a Codec of this module. */
int mp_codec_check(mp_state *st, PyObject *obj);

/*
 * Pickle obj as the codec says (plain data in C, else a reused pickler,
 * else the codec's fallback, at most once): 0 and *out filled, or -1 with
 * an exception.  codec must have passed mp_codec_check.
 */
int mp_codec_pickle(PyObject *codec, PyObject *obj, mp_pickled *out);

/* Give *out's pickler back to the codec (keeps any pending exception);
 * 0, or -1 with an exception when there was none before. */
int mp_codec_release(PyObject *codec, mp_pickled *out);

/* The codec's loads(data): a new reference, or NULL. */
PyObject *mp_codec_loads(PyObject *codec, PyObject *data);

/* Mechanism hooks, called in this order by module.c. Return 0 or -1. */
int mp_semlock_exec(PyObject *module);
int mp_codec_exec(PyObject *module);
int mp_spinwait_exec(PyObject *module);
int mp_frameio_exec(PyObject *module);
int mp_endpoint_exec(PyObject *module);
int mp_arena_exec(PyObject *module);
int mp_syncwrap_exec(PyObject *module);
int mp_shm_exec(PyObject *module);
int mp_poolengine_exec(PyObject *module);
int mp_plainpickle_exec(PyObject *module);
int mp_plainunpickle_exec(PyObject *module);

#endif /* MULTIPROCESS_NATIVE_H */
