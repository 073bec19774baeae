/*
 * semlock.c -- SemLock, the cross-process lock/semaphore primitive under
 * multiprocess.synchronize.
 *
 * A SemLock wraps one POSIX named semaphore (sem_open).  The semaphore lives
 * in shared memory, so a forked child can keep using the same sem_t pointer
 * and a spawned child reaches it again through its name.
 *
 * Two kinds:
 *   RECURSIVE_MUTEX  a 0/1 semaphore whose owning thread may acquire it
 *                    again; re-entry is counted here, not in the semaphore.
 *   SEMAPHORE        a counting semaphore; release() refuses to go above
 *                    maxvalue (maxvalue 1 makes a plain Lock).
 *
 * Ownership (thread ident + acquisition count) is per process bookkeeping:
 * a child inherits a stale copy, hence _after_fork().  All bookkeeping is
 * touched with the GIL held only, so it needs no lock of its own.
 *
 * Python-visible API: see docs/architecture.md, "semlock.c".
 */
#include "multiprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

#include "structmember.h"

#define MP_RECURSIVE_MUTEX 0
#define MP_SEMAPHORE 1

/* sem_clockwait lets the deadline live on CLOCK_MONOTONIC, immune to
 * wall-clock jumps; it appeared in glibc 2.30. */
#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#define MP_HAVE_SEM_CLOCKWAIT 1
#endif

typedef struct {
    PyObject_HEAD
    sem_t *sem;
    int kind;
    int maxvalue;
    int count;              /* acquisitions by `owner` not yet released */
    unsigned long owner;    /* thread ident of the last acquirer */
    int closes_handle;      /* 0 for objects borrowing an inherited handle */
    PyObject *name;         /* str, or None once unlinked */
} semlock_object;

#define SEMLOCK(op) ((semlock_object *)(op))

/* The calling thread, as `owner` records it.  The value is only ever
 * compared with itself, so any identity that lasts a thread's life will do;
 * pthread_self() is what PyThread_get_thread_ident() returns on POSIX, and
 * calling it directly saves a call and a check on every acquire and release
 * of a recursive lock. */
static inline unsigned long
caller_thread(void)
{
    return (unsigned long)pthread_self();
}

static inline int
held_by_caller(semlock_object *self)
{
    return self->count > 0 && self->owner == caller_thread();
}

/* ------------------------------------------------------------------ */
/* time helpers                                                         */

/*
 * Wait until `deadline` (CLOCK_MONOTONIC).  Called without the GIL.
 * Returns 0 or -1 with errno set (ETIMEDOUT, EINTR, ...).
 */
static int
sem_wait_until(sem_t *sem, const struct timespec *deadline)
{
#ifdef MP_HAVE_SEM_CLOCKWAIT
    return sem_clockwait(sem, CLOCK_MONOTONIC, deadline);
#else
    /* sem_timedwait only knows CLOCK_REALTIME: translate what is left of
     * the monotonic deadline onto the wall clock for this one try. */
    struct timespec now_mono, wall;
    if (clock_gettime(CLOCK_MONOTONIC, &now_mono) < 0 ||
        clock_gettime(CLOCK_REALTIME, &wall) < 0) {
        return -1;
    }
    long long left_ns =
        (long long)(deadline->tv_sec - now_mono.tv_sec) * 1000000000LL +
        (deadline->tv_nsec - now_mono.tv_nsec);
    if (left_ns <= 0) {
        return sem_trywait(sem) == 0 ? 0 : (errno = ETIMEDOUT, -1);
    }
    wall.tv_sec += (time_t)(left_ns / 1000000000LL);
    wall.tv_nsec += (long)(left_ns % 1000000000LL);
    if (wall.tv_nsec >= 1000000000L) {
        wall.tv_sec += 1;
        wall.tv_nsec -= 1000000000L;
    }
    return sem_timedwait(sem, &wall);
#endif
}

/* ------------------------------------------------------------------ */
/* construction                                                          */

static PyObject *
semlock_wrap(PyTypeObject *type, sem_t *sem, int kind, int maxvalue,
             PyObject *name, int closes_handle)
{
    semlock_object *self = (semlock_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->sem = sem;
    self->kind = kind;
    self->maxvalue = maxvalue;
    self->count = 0;
    self->owner = 0;
    self->closes_handle = closes_handle;
    self->name = Py_NewRef(name);
    return (PyObject *)self;
}

/* The name as a C string; a NUL inside would silently truncate it. */
static const char *
utf8_name(PyObject *name)
{
    Py_ssize_t size;
    const char *cname = PyUnicode_AsUTF8AndSize(name, &size);

    if (cname != NULL && strlen(cname) != (size_t)size) {
        PyErr_SetString(PyExc_ValueError, "embedded null character");
        return NULL;
    }
    return cname;
}

static int
check_kind(int kind)
{
    if (kind != MP_RECURSIVE_MUTEX && kind != MP_SEMAPHORE) {
        PyErr_SetString(PyExc_ValueError, "unrecognized kind");
        return -1;
    }
    return 0;
}

static PyObject *
semlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind", "value", "maxvalue", "name", "unlink",
                             NULL};
    int kind, value, maxvalue, unlink;
    const char *cname;
    PyObject *name_obj;
    sem_t *sem;
    int saved_errno;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiiUp:SemLock", kwlist,
                                     &kind, &value, &maxvalue, &name_obj,
                                     &unlink)) {
        return NULL;
    }
    if (check_kind(kind) < 0) {
        return NULL;
    }
    cname = utf8_name(name_obj);
    if (cname == NULL) {
        return NULL;
    }

    /* O_EXCL: names are random and must be fresh; an existing semaphore
     * under this name belongs to someone else. */
    sem = sem_open(cname, O_CREAT | O_EXCL, 0600, (unsigned int)value);
    if (sem == SEM_FAILED) {
        return mp_raise_errno(errno);
    }
    if (unlink && sem_unlink(cname) < 0) {
        saved_errno = errno;
        (void)sem_close(sem);
        return mp_raise_errno(saved_errno);
    }

    PyObject *self = semlock_wrap(type, sem, kind, maxvalue,
                                  unlink ? Py_None : name_obj, 1);
    if (self == NULL) {
        (void)sem_close(sem);
    }
    return self;
}

/*
 * _rebuild(handle, kind, maxvalue, name): the unpickling side.  With a name
 * (spawn, forkserver) the semaphore is opened again; without one the handle
 * is a pointer inherited through fork and is borrowed, not closed, because
 * the object it was copied from still owns it.
 */
static PyObject *
semlock_rebuild(PyObject *cls, PyObject *args)
{
    PyObject *handle_obj, *name_obj;
    int kind, maxvalue;
    sem_t *sem;

    if (!PyArg_ParseTuple(args, "OiiO:_rebuild", &handle_obj, &kind,
                          &maxvalue, &name_obj)) {
        return NULL;
    }
    if (check_kind(kind) < 0) {
        return NULL;
    }
    if (name_obj != Py_None && !PyUnicode_Check(name_obj)) {
        PyErr_Format(PyExc_TypeError,
                     "_rebuild() name must be str or None, not %.100s",
                     Py_TYPE(name_obj)->tp_name);
        return NULL;
    }
    if (name_obj == Py_None) {
        sem = (sem_t *)PyLong_AsVoidPtr(handle_obj);
        if (sem == NULL && PyErr_Occurred()) {
            return NULL;
        }
        return semlock_wrap((PyTypeObject *)cls, sem, kind, maxvalue,
                            Py_None, 0);
    }

    const char *cname = utf8_name(name_obj);
    if (cname == NULL) {
        return NULL;
    }
    sem = sem_open(cname, 0);
    if (sem == SEM_FAILED) {
        return mp_raise_errno(errno);
    }
    PyObject *self = semlock_wrap((PyTypeObject *)cls, sem, kind, maxvalue,
                                  name_obj, 1);
    if (self == NULL) {
        (void)sem_close(sem);
    }
    return self;
}

static void
semlock_dealloc(PyObject *op)
{
    semlock_object *self = SEMLOCK(op);
    PyTypeObject *tp = Py_TYPE(op);

    if (self->closes_handle && self->sem != NULL && self->sem != SEM_FAILED) {
        (void)sem_close(self->sem);
    }
    Py_CLEAR(self->name);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* ------------------------------------------------------------------ */
/* acquire / release                                                     */

/*
 * Parse (block=True, timeout=None) by hand: acquire() is on the hot path of
 * every Lock, and the common call has no arguments at all.
 */
static int
parse_acquire_args(PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, int *blocking, PyObject **timeout)
{
    PyObject *block_obj = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);

    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "acquire() takes at most 2 arguments (%zd given)",
                     nargs + nkw);
        return -1;
    }
    if (nargs >= 1) {
        block_obj = args[0];
    }
    if (nargs == 2) {
        *timeout = args[1];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *value = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(key, "block") == 0 &&
            nargs < 1 && block_obj == NULL) {
            block_obj = value;
        }
        else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0 &&
                 nargs < 2 && *timeout == Py_None) {
            *timeout = value;
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "acquire() got an unexpected or repeated keyword "
                         "argument '%U'", key);
            return -1;
        }
    }
    if (block_obj != NULL) {
        int truth = PyObject_IsTrue(block_obj);
        if (truth < 0) {
            return -1;
        }
        *blocking = truth;
    }
    return 0;
}

static void
semlock_took_it(semlock_object *self)
{
    self->count++;
    self->owner = caller_thread();
}

#define MP_WAIT_AGAIN 2

/*
 * What a sem_*wait() that returned `rc` with errno `err` means: 1 taken,
 * 0 not (err is `miss`: EAGAIN for a try, ETIMEDOUT for a timed wait), -1
 * with an exception, MP_WAIT_AGAIN after a signal whose Python handlers
 * ran without raising (Ctrl-C raises here).
 */
static int
wait_outcome(semlock_object *self, int rc, int err, int miss)
{
    if (rc == 0) {
        semlock_took_it(self);
        return 1;
    }
    if (err == miss) {
        return 0;
    }
    if (err != EINTR) {
        mp_raise_errno(err);
        return -1;
    }
    return PyErr_CheckSignals() < 0 ? -1 : MP_WAIT_AGAIN;
}

/* semlock_try() after sem_trywait() failed with errno: 0 when the
 * semaphore is not free, else after a signal try again. */
static int
semlock_try_failed(semlock_object *self)
{
    int rc, outcome = wait_outcome(self, -1, errno, EAGAIN);

    while (outcome == MP_WAIT_AGAIN) {
        rc = sem_trywait(self->sem);
        outcome = wait_outcome(self, rc, rc < 0 ? errno : 0, EAGAIN);
    }
    return outcome;
}

/* The semaphore without blocking: 1 taken, 0 not free, -1 with an
 * exception.  Small, to be inlined: every acquire comes here. */
static inline int
semlock_try_sem(semlock_object *self)
{
    /* With the GIL held: an uncontended semaphore is one atomic operation
     * in userspace, far cheaper than a GIL round trip. */
    if (sem_trywait(self->sem) == 0) {
        semlock_took_it(self);
        return 1;
    }
    return semlock_try_failed(self);
}

/* A recursive mutex this thread holds is re-entered (1). */
static inline int
semlock_reenter(semlock_object *self)
{
    if (self->kind == MP_RECURSIVE_MUTEX && held_by_caller(self)) {
        self->count++;
        return 1;
    }
    return 0;
}

/* Block, without the GIL, until taken (1) or `deadline` (NULL: none) has
 * passed (0); -1 with an exception, a signal handler's included. */
static int
semlock_block(semlock_object *self, const struct timespec *deadline)
{
    int rc, err, outcome;

    /* The deadline is absolute, so retrying after EINTR automatically waits
     * only for what is left of the timeout. */
    do {
        Py_BEGIN_ALLOW_THREADS
        if (deadline != NULL) {
            rc = sem_wait_until(self->sem, deadline);
        }
        else {
            rc = sem_wait(self->sem);
        }
        err = rc < 0 ? errno : 0;
        Py_END_ALLOW_THREADS
        outcome = wait_outcome(self, rc, err, ETIMEDOUT);
    } while (outcome == MP_WAIT_AGAIN);
    return outcome;
}

/* The other half: 0, or -1 with an exception. */
static inline int
semlock_give(semlock_object *self)
{
    if (self->kind == MP_RECURSIVE_MUTEX) {
        if (!held_by_caller(self)) {
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned "
                            "by thread");
            return -1;
        }
        if (self->count > 1) {
            self->count--;
            return 0;
        }
    }
    else if (self->maxvalue < SEM_VALUE_MAX) {
        /* Bounded: refuse to exceed maxvalue.  Check-then-post races with
         * a concurrent release elsewhere, as it does in the stdlib; the
         * check is there to catch programming errors, not to arbitrate. */
        int value;
        if (sem_getvalue(self->sem, &value) < 0) {
            mp_raise_errno(errno);
            return -1;
        }
        if (value >= self->maxvalue) {
            PyErr_SetString(PyExc_ValueError,
                            "semaphore or lock released too many times");
            return -1;
        }
    }

    if (sem_post(self->sem) < 0) {
        mp_raise_errno(errno);
        return -1;
    }
    self->count--;
    return 0;
}

static PyObject *
semlock_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    semlock_object *self = SEMLOCK(op);
    int blocking = 1;
    PyObject *timeout_obj = Py_None;
    double timeout = -1.0;          /* < 0 here means "no deadline" */
    struct timespec deadline;

    if ((nargs != 0 || kwnames != NULL) &&
        parse_acquire_args(args, nargs, kwnames, &blocking,
                           &timeout_obj) < 0) {
        return NULL;
    }
    /* Re-entry succeeds whatever the timeout says, even a malformed one. */
    if (semlock_reenter(self)) {
        Py_RETURN_TRUE;
    }
    if (timeout_obj != Py_None) {
        int forever = mp_parse_timeout(timeout_obj, &timeout);
        if (forever < 0) {
            return NULL;
        }
        if (forever) {
            timeout = -1.0;
        }
    }

    /* The clock is read only when the semaphore is not free at once. */
    int rc = semlock_try_sem(self);
    if (rc == 0 && blocking && timeout != 0.0) {
        if (timeout > 0.0 && mp_deadline_after(&deadline, timeout) < 0) {
            return mp_raise_errno(errno);
        }
        rc = semlock_block(self, timeout > 0.0 ? &deadline : NULL);
    }
    if (rc < 0) {
        return NULL;
    }
    return Py_NewRef(rc ? Py_True : Py_False);
}

static PyObject *
semlock_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (semlock_give(SEMLOCK(op)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ */
/* the C API for the rest of the core (multiprocess.h)                 */

PyObject *
mp_semlock_method_self(mp_state *st, PyObject *method, int which)
{
    PyCFunction want = which == MP_SEMLOCK_ACQUIRE
        ? (PyCFunction)(void (*)(void))semlock_acquire
        : semlock_release;

    if (!PyCFunction_Check(method) ||
        PyCFunction_GET_FUNCTION(method) != want) {
        return NULL;
    }
    PyObject *self = PyCFunction_GET_SELF(method);
    if (self == NULL || !PyObject_TypeCheck(self, st->semlock_type)) {
        return NULL;
    }
    return self;
}

int
mp_semlock_acquire(PyObject *op, int blocking,
                   const struct timespec *deadline)
{
    semlock_object *self = SEMLOCK(op);
    if (semlock_reenter(self)) {
        return 1;
    }
    int rc = semlock_try_sem(self);
    if (rc == 0 && blocking) {
        rc = semlock_block(self, deadline);
    }
    return rc;
}

int
mp_semlock_release(PyObject *op)
{
    return semlock_give(SEMLOCK(op));
}

static PyObject *
semlock_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return semlock_acquire(op, NULL, 0, NULL);
}

/* METH_FASTCALL: `with lock:` should not build an argument tuple. */
static PyObject *
semlock_exit(PyObject *op, PyObject *const *Py_UNUSED(args),
             Py_ssize_t Py_UNUSED(nargs))
{
    return semlock_release(op, NULL);
}

/* ------------------------------------------------------------------ */
/* introspection used by synchronize.py and the tests                   */

static PyObject *
semlock_count(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(SEMLOCK(op)->count);
}

static PyObject *
semlock_is_mine(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(held_by_caller(SEMLOCK(op)));
}

static int
read_value(semlock_object *self, int *value)
{
    if (sem_getvalue(self->sem, value) < 0) {
        mp_raise_errno(errno);
        return -1;
    }
    /* POSIX allows a negative value meaning "this many waiters". */
    if (*value < 0) {
        *value = 0;
    }
    return 0;
}

static PyObject *
semlock_get_value(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    int value;
    if (read_value(SEMLOCK(op), &value) < 0) {
        return NULL;
    }
    return PyLong_FromLong(value);
}

static PyObject *
semlock_is_zero(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    int value;
    if (read_value(SEMLOCK(op), &value) < 0) {
        return NULL;
    }
    return PyBool_FromLong(value == 0);
}

static PyObject *
semlock_after_fork(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    /* The child's threads are not the parent's: whatever the parent held
     * is not held by anyone here. */
    SEMLOCK(op)->count = 0;
    Py_RETURN_NONE;
}

static PyObject *
semlock_get_handle(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromVoidPtr(SEMLOCK(op)->sem);
}

static PyMethodDef semlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))semlock_acquire,
     METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, /, block=True, timeout=None)\n--\n\n"
     "Take the lock/semaphore; return False if it could not be taken\n"
     "(non-blocking call or timeout expired)."},
    {"release", semlock_release, METH_NOARGS,
     "release($self, /)\n--\n\nGive the lock/semaphore back."},
    {"__enter__", semlock_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nacquire() with the defaults."},
    {"__exit__", (PyCFunction)(void (*)(void))semlock_exit, METH_FASTCALL,
     "__exit__($self, /, *args)\n--\n\nrelease()."},
    {"_count", semlock_count, METH_NOARGS,
     "_count($self, /)\n--\n\nAcquisitions by this process not yet released."},
    {"_is_mine", semlock_is_mine, METH_NOARGS,
     "_is_mine($self, /)\n--\n\nWhether the calling thread holds it."},
    {"_get_value", semlock_get_value, METH_NOARGS,
     "_get_value($self, /)\n--\n\nCurrent value of the semaphore."},
    {"_is_zero", semlock_is_zero, METH_NOARGS,
     "_is_zero($self, /)\n--\n\nWhether the semaphore's value is 0."},
    {"_after_fork", semlock_after_fork, METH_NOARGS,
     "_after_fork($self, /)\n--\n\nForget ownership inherited from the "
     "parent."},
    {"_rebuild", semlock_rebuild, METH_VARARGS | METH_CLASS,
     "_rebuild($type, handle, kind, maxvalue, name, /)\n--\n\n"
     "Recreate a SemLock in a child: by name if given, else from an\n"
     "inherited handle."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef semlock_members[] = {
    {"kind", T_INT, offsetof(semlock_object, kind), READONLY, NULL},
    {"maxvalue", T_INT, offsetof(semlock_object, maxvalue), READONLY, NULL},
    {"name", T_OBJECT, offsetof(semlock_object, name), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef semlock_getset[] = {
    {"handle", semlock_get_handle, NULL,
     "Address of the sem_t, valid in this process and its forked children.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(semlock_doc,
"SemLock(kind, value, maxvalue, name, unlink)\n--\n\n"
"A POSIX named semaphore used as a recursive mutex (kind 0) or as a\n"
"bounded counting semaphore (kind 1).  With unlink true the name is\n"
"removed right away and the semaphore lives on through its handle.");

static PyType_Slot semlock_slots[] = {
    {Py_tp_new, semlock_new},
    {Py_tp_dealloc, semlock_dealloc},
    {Py_tp_methods, semlock_methods},
    {Py_tp_members, semlock_members},
    {Py_tp_getset, semlock_getset},
    {Py_tp_doc, (void *)semlock_doc},
    {0, NULL},
};

static PyType_Spec semlock_spec = {
    .name = "_multiprocess.SemLock",
    .basicsize = sizeof(semlock_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = semlock_slots,
};

/* ------------------------------------------------------------------ */
/* module-level                                                          */

static PyObject *
mp_sem_unlink(PyObject *Py_UNUSED(module), PyObject *arg)
{
    const char *cname;

    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError,
                     "sem_unlink() argument must be str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    cname = utf8_name(arg);
    if (cname == NULL) {
        return NULL;
    }
    if (sem_unlink(cname) < 0) {
        return mp_raise_errno(errno);
    }
    Py_RETURN_NONE;
}

static PyMethodDef semlock_module_functions[] = {
    {"sem_unlink", mp_sem_unlink, METH_O,
     "sem_unlink($module, name, /)\n--\n\n"
     "Remove the named semaphore `name` (open handles stay valid)."},
    {NULL, NULL, 0, NULL},
};

static int
add_flags(PyObject *module)
{
    /* Another mechanism may have created the dict first: extend it. */
    PyObject *flags = PyObject_GetAttrString(module, "flags");
    if (flags == NULL) {
        PyErr_Clear();
        flags = PyDict_New();
        if (flags == NULL) {
            return -1;
        }
        if (PyModule_AddObjectRef(module, "flags", flags) < 0) {
            Py_DECREF(flags);
            return -1;
        }
    }
    PyObject *one = PyLong_FromLong(1);
    int rc = one == NULL ||
             PyDict_SetItemString(flags, "HAVE_SEM_OPEN", one) < 0 ||
             PyDict_SetItemString(flags, "HAVE_SEM_TIMEDWAIT", one) < 0;
    Py_XDECREF(one);
    Py_DECREF(flags);
    return rc ? -1 : 0;
}

int
mp_semlock_exec(PyObject *module)
{
    mp_state *state = mp_get_state(module);
    PyObject *type;

    type = PyType_FromModuleAndSpec(module, &semlock_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    state->semlock_type = (PyTypeObject *)type;   /* the state's reference */

    /* synchronize.py reads SEM_VALUE_MAX off the class, as in the stdlib. */
    PyObject *vmax = PyLong_FromLong(SEM_VALUE_MAX);
    if (vmax == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(((PyTypeObject *)type)->tp_dict,
                                  "SEM_VALUE_MAX", vmax);
    if (rc == 0) {
        PyType_Modified((PyTypeObject *)type);
        rc = PyModule_AddObjectRef(module, "SEM_VALUE_MAX", vmax);
    }
    Py_DECREF(vmax);
    if (rc < 0) {
        return -1;
    }

    if (PyModule_AddType(module, (PyTypeObject *)type) < 0 ||
        PyModule_AddIntConstant(module, "RECURSIVE_MUTEX",
                                MP_RECURSIVE_MUTEX) < 0 ||
        PyModule_AddIntConstant(module, "SEMAPHORE", MP_SEMAPHORE) < 0 ||
        PyModule_AddFunctions(module, semlock_module_functions) < 0 ||
        add_flags(module) < 0) {
        return -1;
    }
    return 0;
}
