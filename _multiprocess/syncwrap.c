/*
 * syncwrap.c -- the native synchronized wrappers of multiprocess.sharedctypes.
 *
 * SyncBase / SyncValue / SyncArray
 *     The C core of sharedctypes' Synchronized, SynchronizedArray ...:
 *     `value` and element get/set take the lock, read or write the ctypes
 *     buffer directly for the plain numeric and char types, and release.
 *     The lock's acquire and release are looked up once; when they are a
 *     SemLock's own (every lock of multiprocess.synchronize), the SemLock
 *     is taken and given through semlock.c's C API, else the methods are
 *     called (a lock from elsewhere: a manager's proxy, threading's RLock).
 */
#include "multiprocess.h"

#include <structmember.h>

#include <stdint.h>
#include <string.h>

/*
 * How an element is stored, for the fast path: a native-order integer of
 * 1/2/4/8 bytes (signed or not), a float or double, a char, or a bool.
 * Anything else (structures, wchar, pointers, non-native byte order) goes
 * through the ctypes object's own attribute/item access, still under the
 * lock and still without a Python frame.
 */
enum {
    EK_NONE = 0, EK_SIGNED, EK_UNSIGNED, EK_FLOAT, EK_DOUBLE, EK_CHAR,
    EK_BOOL,
};

typedef struct {
    PyObject_HEAD
    PyObject *obj;              /* the ctypes object */
    PyObject *lock;
    PyObject *acquire;          /* lock.acquire and lock.release, looked */
    PyObject *release;          /* up once */
    /* The SemLocks those are bound to, when they are SemLock's methods
     * (mp_semlock_method_self); borrowed from acquire and release. */
    PyObject *acquire_sem, *release_sem;
    Py_buffer view;             /* obj's memory, while `kind` != EK_NONE */
    int kind;
    Py_ssize_t itemsize, nitems;
} SyncObject;

#define SYNC(op) ((SyncObject *)(op))

static int
element_kind(const Py_buffer *v)
{
    const char *f = v->format;
    if (f == NULL) {
        return EK_NONE;
    }
    switch (*f) {
#if PY_LITTLE_ENDIAN
    case '<':
#else
    case '>':
#endif
    case '@': case '=':
        f++;
        break;
    default:
        break;
    }
    if (f[0] == '\0' || f[1] != '\0') {
        return EK_NONE;
    }
    Py_ssize_t n = v->itemsize;
    int is_int_size = n == 1 || n == 2 || n == 4 || n == 8;
    switch (f[0]) {
    case 'b': case 'h': case 'i': case 'l': case 'q': case 'n':
        return is_int_size ? EK_SIGNED : EK_NONE;
    case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N':
        return is_int_size ? EK_UNSIGNED : EK_NONE;
    case 'f':
        return n == sizeof(float) ? EK_FLOAT : EK_NONE;
    case 'd':
        return n == sizeof(double) ? EK_DOUBLE : EK_NONE;
    case 'c':
        return n == 1 ? EK_CHAR : EK_NONE;
    case '?':
        return n == sizeof(_Bool) ? EK_BOOL : EK_NONE;
    default:
        return EK_NONE;
    }
}

static PyObject *
element_get(const SyncObject *s, const char *p)
{
    switch (s->kind) {
    case EK_SIGNED:
        switch (s->itemsize) {
        case 1: return PyLong_FromLong(*(const int8_t *)p);
        case 2: return PyLong_FromLong(*(const int16_t *)p);
        case 4: return PyLong_FromLong(*(const int32_t *)p);
        default: return PyLong_FromLongLong(*(const int64_t *)p);
        }
    case EK_UNSIGNED:
        switch (s->itemsize) {
        case 1: return PyLong_FromUnsignedLong(*(const uint8_t *)p);
        case 2: return PyLong_FromUnsignedLong(*(const uint16_t *)p);
        case 4: return PyLong_FromUnsignedLong(*(const uint32_t *)p);
        default: return PyLong_FromUnsignedLongLong(*(const uint64_t *)p);
        }
    case EK_FLOAT:
        return PyFloat_FromDouble(*(const float *)p);
    case EK_DOUBLE:
        return PyFloat_FromDouble(*(const double *)p);
    case EK_CHAR:
        return PyBytes_FromStringAndSize(p, 1);
    default:
        return PyBool_FromLong(*(const _Bool *)p);
    }
}

/* Convert `v` the way ctypes' setters do (integers wrap to the field's
 * width, floats are refused for integer fields) into `out`; 0 or -1. */
static int
element_convert(const SyncObject *s, PyObject *v, char out[8])
{
    switch (s->kind) {
    case EK_SIGNED:
    case EK_UNSIGNED: {
        if (PyFloat_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "int expected instead of float");
            return -1;
        }
        /* Most ints fit one digit: read without a call (the cast wraps
         * as the mask does). */
        long long small;
        unsigned long long x;
        if (PyLong_CheckExact(v) && mp_long_compact(v, &small)) {
            x = (unsigned long long)small;
        }
        else {
            x = PyLong_AsUnsignedLongLongMask(v);
            if (x == (unsigned long long)-1 && PyErr_Occurred()) {
                return -1;
            }
        }
        switch (s->itemsize) {
        case 1: { uint8_t y = (uint8_t)x; memcpy(out, &y, 1); break; }
        case 2: { uint16_t y = (uint16_t)x; memcpy(out, &y, 2); break; }
        case 4: { uint32_t y = (uint32_t)x; memcpy(out, &y, 4); break; }
        default: { uint64_t y = (uint64_t)x; memcpy(out, &y, 8); break; }
        }
        return 0;
    }
    case EK_FLOAT:
    case EK_DOUBLE: {
        double d = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v)
                                         : PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        if (s->kind == EK_FLOAT) {
            float f = (float)d;
            memcpy(out, &f, sizeof f);
        }
        else {
            memcpy(out, &d, sizeof d);
        }
        return 0;
    }
    case EK_CHAR:
        if (PyBytes_Check(v) && PyBytes_GET_SIZE(v) == 1) {
            out[0] = PyBytes_AS_STRING(v)[0];
            return 0;
        }
        if (PyByteArray_Check(v) && PyByteArray_GET_SIZE(v) == 1) {
            out[0] = PyByteArray_AS_STRING(v)[0];
            return 0;
        }
        if (PyLong_Check(v)) {
            long c = PyLong_AsLong(v);
            if (c == -1 && PyErr_Occurred()) {
                PyErr_Clear();
            }
            else if (c >= 0 && c < 256) {
                out[0] = (char)c;
                return 0;
            }
        }
        PyErr_SetString(PyExc_TypeError,
                        "one character bytes, bytearray or integer expected");
        return -1;
    default: {
        int t = PyObject_IsTrue(v);
        if (t < 0) {
            return -1;
        }
        _Bool b = t != 0;
        memcpy(out, &b, sizeof b);
        return 0;
    }
    }
}

/* Store a converted element at `p`: a fixed-size copy per width, which the
 * compiler makes one move, where a copy of itemsize bytes is a call. */
static inline void
element_store(const SyncObject *s, char *p, const char raw[8])
{
    switch (s->itemsize) {
    case 1: memcpy(p, raw, 1); break;
    case 2: memcpy(p, raw, 2); break;
    case 4: memcpy(p, raw, 4); break;
    default: memcpy(p, raw, 8); break;
    }
}

static int
sync_not_ready(void)
{
    PyErr_SetString(PyExc_ValueError,
                    "synchronized wrapper is not initialized");
    return -1;
}

/* A lock from elsewhere: call its own method; 0 or -1. */
static int
sync_call(PyObject *method)
{
    if (method == NULL) {
        return sync_not_ready();
    }
    PyObject *r = PyObject_CallNoArgs(method);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static inline int
sync_acquire(SyncObject *s)
{
    if (s->acquire_sem != NULL) {
        return mp_semlock_acquire(s->acquire_sem, 1, NULL) < 0 ? -1 : 0;
    }
    return sync_call(s->acquire);
}

static inline int
sync_give(SyncObject *s)
{
    if (s->release_sem != NULL) {
        return mp_semlock_release(s->release_sem);
    }
    return sync_call(s->release);
}

/* Release the lock after an operation that produced `result` (NULL if it
 * raised).  An exception of the operation wins over one of the release. */
static PyObject *
sync_release(SyncObject *s, PyObject *result)
{
    if (result != NULL) {
        /* The common case: nothing pending to preserve. */
        if (sync_give(s) < 0) {
            Py_DECREF(result);
            return NULL;
        }
        return result;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (sync_give(s) < 0) {
        PyErr_Clear();          /* the operation's error is the one to see */
    }
    PyErr_Restore(type, value, tb);
    return NULL;
}

/* The same for setters: `rc` 0 or -1 in, 0 or -1 out. */
static int
sync_release_rc(SyncObject *s, int rc)
{
    PyObject *res = sync_release(s, rc == 0 ? Py_NewRef(Py_None) : NULL);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static void
sync_drop(SyncObject *s)
{
    if (s->kind != EK_NONE) {
        s->kind = EK_NONE;
        PyBuffer_Release(&s->view);
    }
    s->acquire_sem = s->release_sem = NULL;
    Py_CLEAR(s->obj);
    Py_CLEAR(s->lock);
    Py_CLEAR(s->acquire);
    Py_CLEAR(s->release);
}

static int
sync_init(PyObject *op, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"obj", "lock", "fast", NULL};
    SyncObject *s = SYNC(op);
    PyObject *obj, *lock, *acquire, *release;
    int fast = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|p:SyncBase", kwlist,
                                     &obj, &lock, &fast)) {
        return -1;
    }
    mp_state *st = mp_state_from_type(Py_TYPE(op));
    if (st == NULL) {
        return -1;
    }
    acquire = PyObject_GetAttrString(lock, "acquire");
    if (acquire == NULL) {
        return -1;
    }
    release = PyObject_GetAttrString(lock, "release");
    if (release == NULL) {
        Py_DECREF(acquire);
        return -1;
    }
    sync_drop(s);
    s->obj = Py_NewRef(obj);
    s->lock = Py_NewRef(lock);
    s->acquire = acquire;
    s->release = release;
    s->acquire_sem = mp_semlock_method_self(st, acquire, MP_SEMLOCK_ACQUIRE);
    s->release_sem = mp_semlock_method_self(st, release, MP_SEMLOCK_RELEASE);
    s->itemsize = 0;
    s->nitems = 0;
    if (!fast || !PyObject_CheckBuffer(obj)) {
        return 0;
    }
    if (PyObject_GetBuffer(obj, &s->view, PyBUF_FULL) < 0) {
        PyErr_Clear();          /* no fast path; everything else works */
        return 0;
    }
    int kind = element_kind(&s->view);
    /* ctypes leaves strides NULL for its (contiguous) arrays. */
    int flat = s->view.ndim == 0 ||
               (s->view.ndim == 1 && s->view.shape != NULL &&
                (s->view.strides == NULL ||
                 s->view.strides[0] == s->view.itemsize));
    if (kind == EK_NONE || !flat || s->view.readonly) {
        PyBuffer_Release(&s->view);
        return 0;
    }
    s->kind = kind;
    s->itemsize = s->view.itemsize;
    s->nitems = s->view.ndim == 0 ? 1 : s->view.shape[0];
    return 0;
}

static int
sync_traverse(PyObject *op, visitproc visit, void *arg)
{
    SyncObject *s = SYNC(op);
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(s->obj);
    Py_VISIT(s->lock);
    Py_VISIT(s->acquire);
    Py_VISIT(s->release);
    return 0;
}

static int
sync_clear(PyObject *op)
{
    sync_drop(SYNC(op));
    return 0;
}

static void
sync_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    sync_drop(SYNC(op));
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
ref_or_none(PyObject *obj)
{
    return Py_NewRef(obj != NULL ? obj : Py_None);
}

static PyObject *
sync_get_obj(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return ref_or_none(SYNC(op)->obj);
}

static PyObject *
sync_get_lock(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return ref_or_none(SYNC(op)->lock);
}

/* `with wrapper:` returns what the lock's acquire() returns (True for a
 * SemLock) and __exit__ what its release() returns. */
static PyObject *
sync_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    SyncObject *s = SYNC(op);
    if (s->acquire_sem == NULL && s->acquire != NULL) {
        return PyObject_CallNoArgs(s->acquire);
    }
    return sync_acquire(s) < 0 ? NULL : Py_NewRef(Py_True);
}

static PyObject *
sync_exit(PyObject *op, PyObject *const *Py_UNUSED(args),
          Py_ssize_t Py_UNUSED(nargs))
{
    SyncObject *s = SYNC(op);
    if (s->release_sem == NULL && s->release != NULL) {
        return PyObject_CallNoArgs(s->release);
    }
    return sync_give(s) < 0 ? NULL : Py_NewRef(Py_None);
}

/* T_OBJECT_EX, not T_OBJECT: 3.11 specializes reads of the former only
   (about 10 ns less per read from Python code), and an unset member raises
   AttributeError, as a missing attribute of the stdlib's wrapper does. */
static PyMemberDef sync_members[] = {
    {"_obj", T_OBJECT_EX, offsetof(SyncObject, obj), READONLY, NULL},
    {"_lock", T_OBJECT_EX, offsetof(SyncObject, lock), READONLY, NULL},
    {"acquire", T_OBJECT_EX, offsetof(SyncObject, acquire), READONLY,
     "The lock's acquire method."},
    {"release", T_OBJECT_EX, offsetof(SyncObject, release), READONLY,
     "The lock's release method."},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef sync_methods[] = {
    {"get_obj", sync_get_obj, METH_NOARGS,
     "get_obj($self, /)\n--\n\nThe wrapped ctypes object."},
    {"get_lock", sync_get_lock, METH_NOARGS,
     "get_lock($self, /)\n--\n\nThe lock guarding the object."},
    {"__enter__", sync_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sync_exit, METH_FASTCALL,
     NULL},
    {NULL, NULL, 0, NULL},
};

/* The three types share the layout and how an instance lives and dies. */
#define SYNC_LIFETIME_SLOTS                                                 \
    {Py_tp_traverse, sync_traverse},                                        \
    {Py_tp_clear, sync_clear},                                              \
    {Py_tp_dealloc, sync_dealloc}

#define SYNC_SPEC(NAME, SLOTS) {                                            \
    .name = "_multiprocess." NAME,                                          \
    .basicsize = sizeof(SyncObject),                                        \
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | \
             Py_TPFLAGS_IMMUTABLETYPE,                                      \
    .slots = (SLOTS),                                                       \
}

static PyType_Slot sync_base_slots[] = {
    SYNC_LIFETIME_SLOTS,
    {Py_tp_init, sync_init},
    {Py_tp_members, sync_members},
    {Py_tp_methods, sync_methods},
    {Py_tp_doc, "SyncBase(obj, lock, fast=False)\n--\n\n"
                "Native core of a synchronized ctypes wrapper.  With fast "
                "true, plain numeric and char elements are read and written "
                "in place rather than through the ctypes object."},
    {0, NULL},
};

static PyType_Spec sync_base_spec = SYNC_SPEC("SyncBase", sync_base_slots);

/* -- SyncValue: `value` under the lock */

static PyObject *
syncvalue_get(PyObject *op, void *Py_UNUSED(closure))
{
    SyncObject *s = SYNC(op);
    if (sync_acquire(s) < 0) {
        return NULL;
    }
    PyObject *res;
    if (s->kind != EK_NONE) {
        res = element_get(s, (const char *)s->view.buf);
    }
    else {
        res = PyObject_GetAttrString(s->obj, "value");
    }
    return sync_release(s, res);
}

static int
syncvalue_set(PyObject *op, PyObject *v, void *Py_UNUSED(closure))
{
    SyncObject *s = SYNC(op);
    char raw[8];

    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete attribute");
        return -1;
    }
    if (s->kind != EK_NONE) {
        /* Convert before taking the lock: conversion may run Python code. */
        if (element_convert(s, v, raw) < 0 || sync_acquire(s) < 0) {
            return -1;
        }
        element_store(s, (char *)s->view.buf, raw);
        return sync_give(s);
    }
    if (sync_acquire(s) < 0) {
        return -1;
    }
    return sync_release_rc(s, PyObject_SetAttrString(s->obj, "value", v));
}

static PyGetSetDef syncvalue_getset[] = {
    {"value", syncvalue_get, syncvalue_set,
     "The wrapped object's value, read and written under the lock.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sync_value_slots[] = {
    SYNC_LIFETIME_SLOTS,
    {Py_tp_getset, syncvalue_getset},
    {Py_tp_doc, "Native core of Synchronized (Value)."},
    {0, NULL},
};

static PyType_Spec sync_value_spec = SYNC_SPEC("SyncValue", sync_value_slots);

/* -- SyncArray: len() and items under the lock */

static Py_ssize_t
syncarray_len(PyObject *op)
{
    SyncObject *s = SYNC(op);
    if (s->kind != EK_NONE) {
        return s->nitems;       /* fixed at creation: no lock needed */
    }
    if (sync_acquire(s) < 0) {
        return -1;
    }
    Py_ssize_t n = PyObject_Length(s->obj);
    if (sync_release_rc(s, n < 0 ? -1 : 0) < 0) {
        return -1;
    }
    return n;
}

/* Bring `*i` into [0, nitems) or raise IndexError as ctypes does. */
static int
syncarray_index(SyncObject *s, Py_ssize_t *i)
{
    if (*i < 0) {
        *i += s->nitems;
    }
    if (*i < 0 || *i >= s->nitems) {
        PyErr_SetString(PyExc_IndexError, "invalid index");
        return -1;
    }
    return 0;
}

/* Element `i` of an array on the fast path (kind != EK_NONE). */
static PyObject *
syncarray_item(PyObject *op, Py_ssize_t i)
{
    SyncObject *s = SYNC(op);

    if (syncarray_index(s, &i) < 0 || sync_acquire(s) < 0) {
        return NULL;
    }
    PyObject *res = element_get(s, (const char *)s->view.buf +
                                   i * s->itemsize);
    return sync_release(s, res);
}

/* Store `v` (not NULL) as element `i`, on the fast path. */
static int
syncarray_ass_item(PyObject *op, Py_ssize_t i, PyObject *v)
{
    SyncObject *s = SYNC(op);
    char raw[8];

    /* Convert before taking the lock: conversion may run Python code. */
    if (syncarray_index(s, &i) < 0 || element_convert(s, v, raw) < 0 ||
        sync_acquire(s) < 0) {
        return -1;
    }
    element_store(s, (char *)s->view.buf + i * s->itemsize, raw);
    return sync_give(s);
}

static PyObject *
syncarray_subscript(PyObject *op, PyObject *key)
{
    SyncObject *s = SYNC(op);
    if (s->kind != EK_NONE && PyLong_CheckExact(key)) {
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            return NULL;
        }
        return syncarray_item(op, i);
    }
    if (sync_acquire(s) < 0) {
        return NULL;
    }
    return sync_release(s, PyObject_GetItem(s->obj, key));
}

static int
syncarray_ass_subscript(PyObject *op, PyObject *key, PyObject *v)
{
    SyncObject *s = SYNC(op);
    if (s->kind != EK_NONE && v != NULL && PyLong_CheckExact(key)) {
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            return -1;
        }
        return syncarray_ass_item(op, i, v);
    }
    if (sync_acquire(s) < 0) {
        return -1;
    }
    int rc = v == NULL ? PyObject_DelItem(s->obj, key)
                       : PyObject_SetItem(s->obj, key, v);
    return sync_release_rc(s, rc);
}

static PyType_Slot sync_array_slots[] = {
    SYNC_LIFETIME_SLOTS,
    {Py_sq_length, syncarray_len},
    {Py_mp_length, syncarray_len},
    {Py_mp_subscript, syncarray_subscript},
    {Py_mp_ass_subscript, syncarray_ass_subscript},
    {Py_tp_doc, "Native core of SynchronizedArray."},
    {0, NULL},
};

static PyType_Spec sync_array_spec = SYNC_SPEC("SyncArray", sync_array_slots);

/* ---------------------------------------------------------------- init */

/* Make the type of `spec` (on `base`) and add it to the module: the
 * module state's reference, or NULL. */
static PyTypeObject *
sync_add_type(PyObject *module, PyType_Spec *spec, PyTypeObject *base)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, spec, (PyObject *)base);
    if (tp != NULL && PyModule_AddType(module, tp) < 0) {
        Py_CLEAR(tp);
    }
    return tp;
}

int
mp_syncwrap_exec(PyObject *module)
{
    mp_state *st = mp_get_state(module);

    st->sync_base_type = sync_add_type(module, &sync_base_spec, NULL);
    if (st->sync_base_type == NULL) {
        return -1;
    }
    st->sync_value_type = sync_add_type(module, &sync_value_spec,
                                        st->sync_base_type);
    if (st->sync_value_type == NULL) {
        return -1;
    }
    st->sync_array_type = sync_add_type(module, &sync_array_spec,
                                        st->sync_base_type);
    return st->sync_array_type == NULL ? -1 : 0;
}
