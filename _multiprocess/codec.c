/*
 * codec.c -- the mechanics of pickling a message, for every sender.
 *
 * The policy is Python's (multiprocess/_pickling.py decides what is plain,
 * the protocol, the dill fallback); it is handed over once as a Codec,
 * whose named fields are the callables to use.  This file is the one place
 * that turns an object into the bytes of a message with them:
 *
 *   1. plain data (plainpickle.c) is written without a pickler;
 *   2. anything else goes to a reused pickler taken from the codec's idle
 *      list (building a ForkingPickler costs several times more than
 *      pickling a small message with it), writing into a plain list of
 *      chunks that the caller writes out as they are (one writev);
 *   3. if that pickler fails with an Exception, the codec's `fallback`
 *      gets (obj, protocol, error) and returns the payload or raises: the
 *      object is pickled once more at most (by dill), never by the same
 *      pickler again.
 *
 * Connection.send (endpoint.c) and Codec.dumps (the queues, the pool and
 * ForkingPickler.dumps) both go through mp_codec_pickle().
 *
 * Python API:
 *   Codec(*, new_pickler, dump, clear_memo, fallback, loads, protocol)
 *       new_pickler(protocol) -> (pickler, list its output goes to)
 *       dump(pickler, obj), clear_memo(pickler): the C pickler's own
 *       fallback(obj, protocol, error) -> bytes-like, or raises
 *       loads(data) -> object
 *       protocol() -> the protocol to pickle with now
 *   Codec.dumps(obj) -> bytes-like pickle of obj
 *   the fields, read-only, under the same names
 */
#include "multiprocess.h"
#include "structmember.h"

#include <string.h>

struct mp_codec {
    PyObject_HEAD
    PyObject *new_pickler;
    PyObject *dump;
    PyObject *clear_memo;
    PyObject *fallback;
    PyObject *loads;
    PyObject *protocol;
    PyObject *idle;         /* list of (pickler, chunks, protocol) */
    mp_state *state;        /* the module's, for plainpickle's buffer */
};

static int
codec_init(mp_codec *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"new_pickler", "dump", "clear_memo", "fallback",
                            "loads", "protocol", NULL};
    PyObject *field[6];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OOOOOO:Codec", names,
                                     &field[0], &field[1], &field[2],
                                     &field[3], &field[4], &field[5])) {
        return -1;
    }
    if (PyTuple_GET_SIZE(args) != 0 || kwds == NULL
        || PyDict_GET_SIZE(kwds) != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "Codec() takes exactly the keyword arguments "
                        "new_pickler, dump, clear_memo, fallback, loads "
                        "and protocol");
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        if (!PyCallable_Check(field[i])) {
            PyErr_Format(PyExc_TypeError, "Codec: %s must be callable",
                         names[i]);
            return -1;
        }
    }
    PyObject *idle = PyList_New(0);
    if (idle == NULL) {
        return -1;
    }
    if (self->state == NULL &&
        (self->state = mp_state_from_type(Py_TYPE(self))) == NULL) {
        Py_DECREF(idle);
        return -1;
    }
    Py_XSETREF(self->new_pickler, Py_NewRef(field[0]));
    Py_XSETREF(self->dump, Py_NewRef(field[1]));
    Py_XSETREF(self->clear_memo, Py_NewRef(field[2]));
    Py_XSETREF(self->fallback, Py_NewRef(field[3]));
    Py_XSETREF(self->loads, Py_NewRef(field[4]));
    Py_XSETREF(self->protocol, Py_NewRef(field[5]));
    Py_XSETREF(self->idle, idle);
    return 0;
}

static int
codec_traverse(mp_codec *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->new_pickler);
    Py_VISIT(self->dump);
    Py_VISIT(self->clear_memo);
    Py_VISIT(self->fallback);
    Py_VISIT(self->loads);
    Py_VISIT(self->protocol);
    Py_VISIT(self->idle);
    return 0;
}

static int
codec_clear(mp_codec *self)
{
    Py_CLEAR(self->new_pickler);
    Py_CLEAR(self->dump);
    Py_CLEAR(self->clear_memo);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->idle);
    return 0;
}

static void
codec_dealloc(mp_codec *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    (void)codec_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

int
mp_codec_check(mp_state *st, PyObject *obj)
{
    return st->codec_type != NULL
        && PyObject_TypeCheck(obj, st->codec_type);
}

static int
codec_ready(mp_codec *self)
{
    if (self->idle == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Codec was not initialised");
        return -1;
    }
    return 0;
}

/* An idle (pickler, chunks, protocol) entry made for `protocol`, or a new
 * one.  New reference, or NULL. */
static PyObject *
take_pickler(mp_codec *self, PyObject *protocol)
{
    PyObject *idle = self->idle;
    Py_ssize_t n = PyList_GET_SIZE(idle);
    if (n > 0) {
        PyObject *entry = Py_NewRef(PyList_GET_ITEM(idle, n - 1));
        if (PyList_SetSlice(idle, n - 1, n, NULL) < 0) {
            Py_DECREF(entry);
            return NULL;
        }
        PyObject *made_for = PyTuple_GET_ITEM(entry, 2);
        int same = made_for == protocol ? 1 :
            PyObject_RichCompareBool(made_for, protocol, Py_EQ);
        if (same > 0) {
            return entry;
        }
        Py_DECREF(entry);
        if (same < 0) {
            return NULL;
        }
    }
    PyObject *made = PyObject_CallOneArg(self->new_pickler, protocol);
    if (made == NULL) {
        return NULL;
    }
    if (!PyTuple_Check(made) || PyTuple_GET_SIZE(made) != 2
        || !PyList_Check(PyTuple_GET_ITEM(made, 1))) {
        Py_DECREF(made);
        PyErr_SetString(PyExc_TypeError,
                        "the codec's new_pickler must return "
                        "(pickler, list)");
        return NULL;
    }
    PyObject *entry = PyTuple_Pack(3, PyTuple_GET_ITEM(made, 0),
                                   PyTuple_GET_ITEM(made, 1), protocol);
    Py_DECREF(made);
    return entry;
}

/* Clear a pickler after use (so it keeps nothing of the message alive)
 * and put it back on the idle list.  Steals `entry`.  0, or -1. */
static int
give_back(mp_codec *self, PyObject *entry)
{
    PyObject *chunks = PyTuple_GET_ITEM(entry, 1);
    PyObject *pickler = PyTuple_GET_ITEM(entry, 0);
    int rc = -1;
    if (PyList_SetSlice(chunks, 0, PyList_GET_SIZE(chunks), NULL) == 0) {
        PyObject *r = PyObject_CallOneArg(self->clear_memo, pickler);
        if (r != NULL) {
            Py_DECREF(r);
            rc = PyList_Append(self->idle, entry);
        }
    }
    Py_DECREF(entry);
    return rc;
}

int
mp_codec_pickle(PyObject *codec, PyObject *obj, mp_pickled *out)
{
    mp_codec *self = (mp_codec *)codec;
    out->single = out->entry = NULL;
    out->parts = NULL;
    out->count = 0;
    if (codec_ready(self) < 0) {
        return -1;
    }
    PyObject *protocol = PyObject_CallNoArgs(self->protocol);
    if (protocol == NULL) {
        return -1;
    }
    /* Plain data is written by plainpickle.c, without the pickler (the
     * same result: a pickler's reducers never apply to exact builtins). */
    int overflow = 0;
    long proto = PyLong_CheckExact(protocol)
        ? PyLong_AsLongAndOverflow(protocol, &overflow) : -1;
    if (proto == 4 || proto == 5) {
        PyObject *plain = mp_plain_dumps(self->state, obj, (int)proto);
        if (plain == NULL) {
            goto fail;
        }
        if (plain != Py_None) {
            out->single = plain;
            goto single;
        }
        Py_DECREF(plain);
    }
    PyObject *entry = take_pickler(self, protocol);
    if (entry == NULL) {
        goto fail;
    }
    PyObject *args[2] = {PyTuple_GET_ITEM(entry, 0), obj};
    PyObject *r = PyObject_Vectorcall(self->dump, args, 2, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        Py_DECREF(protocol);
        PyObject *chunks = PyTuple_GET_ITEM(entry, 1);
        out->entry = entry;
        /* The list is ours alone (taken off the idle list) and taking a
         * bytes buffer runs no Python code, so its items cannot change
         * until mp_codec_release(). */
        out->parts = &PyList_GET_ITEM(chunks, 0);
        out->count = PyList_GET_SIZE(chunks);
        return 0;
    }
    /* The pickler may be left in any state: drop it.  KeyboardInterrupt
     * and the like propagate; a pickling error goes to the fallback, with
     * the error, which decides (dill, or raise it). */
    Py_DECREF(entry);
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        goto fail;
    }
    PyObject *type, *error, *tb;
    PyErr_Fetch(&type, &error, &tb);
    PyErr_NormalizeException(&type, &error, &tb);
    if (tb != NULL && error != NULL) {
        (void)PyException_SetTraceback(error, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (error == NULL) {
        goto fail;      /* (normalizing failed and set its own error) */
    }
    PyObject *fargs[3] = {obj, protocol, error};
    out->single = PyObject_Vectorcall(self->fallback, fargs, 3, NULL);
    Py_DECREF(error);
    if (out->single == NULL) {
        goto fail;
    }
single:
    Py_DECREF(protocol);
    out->parts = &out->single;
    out->count = 1;
    return 0;
fail:
    Py_DECREF(protocol);
    return -1;
}

int
mp_codec_release(PyObject *codec, mp_pickled *out)
{
    int rc = 0;
    if (out->entry != NULL) {
        /* Given back even when the caller failed; an error here must not
         * hide the caller's. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        rc = give_back((mp_codec *)codec, out->entry);
        if (type != NULL) {
            if (rc < 0) {
                PyErr_Clear();
            }
            PyErr_Restore(type, value, tb);
            rc = 0;
        }
    }
    Py_CLEAR(out->single);
    out->entry = NULL;
    out->parts = NULL;
    out->count = 0;
    return rc;
}

PyObject *
mp_codec_loads(PyObject *codec, PyObject *data)
{
    mp_codec *self = (mp_codec *)codec;
    if (codec_ready(self) < 0) {
        return NULL;
    }
    return PyObject_CallOneArg(self->loads, data);
}

/* The parts of a pickle as one new bytes object.  NULL on failure. */
static PyObject *
join_parts(PyObject *const *parts, Py_ssize_t count)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyBytes_CheckExact(parts[i])) {
            total += PyBytes_GET_SIZE(parts[i]);
            continue;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(parts[i], &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        total += view.len;
        PyBuffer_Release(&view);
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL) {
        return NULL;
    }
    char *at = PyBytes_AS_STRING(joined);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(parts[i], &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(joined);
            return NULL;
        }
        memcpy(at, view.buf, (size_t)view.len);
        at += view.len;
        PyBuffer_Release(&view);
    }
    return joined;
}

PyDoc_STRVAR(codec_dumps_doc,
"dumps($self, obj, /)\n--\n\n"
"The pickle of obj as a bytes-like object, made as Connection.send makes\n"
"it: plain data in C, else a reused pickler, else the codec's fallback.");

static PyObject *
codec_dumps(mp_codec *self, PyObject *obj)
{
    mp_pickled out;
    if (mp_codec_pickle((PyObject *)self, obj, &out) < 0) {
        return NULL;
    }
    PyObject *result = out.count == 1 ? Py_NewRef(out.parts[0])
                                      : join_parts(out.parts, out.count);
    if (mp_codec_release((PyObject *)self, &out) < 0) {
        Py_CLEAR(result);
    }
    return result;
}

static PyMethodDef codec_methods[] = {
    {"dumps", (PyCFunction)codec_dumps, METH_O, codec_dumps_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef codec_members[] = {
    {"new_pickler", T_OBJECT, offsetof(mp_codec, new_pickler), READONLY,
     "protocol -> (pickler, list its output goes to)"},
    {"dump", T_OBJECT, offsetof(mp_codec, dump), READONLY,
     "the C pickler's dump(pickler, obj)"},
    {"clear_memo", T_OBJECT, offsetof(mp_codec, clear_memo), READONLY,
     "the C pickler's clear_memo(pickler)"},
    {"fallback", T_OBJECT, offsetof(mp_codec, fallback), READONLY,
     "(obj, protocol, error) -> payload, after the pickler failed"},
    {"loads", T_OBJECT, offsetof(mp_codec, loads), READONLY,
     "bytes-like -> object"},
    {"protocol", T_OBJECT, offsetof(mp_codec, protocol), READONLY,
     "() -> the protocol to pickle with"},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(codec_doc,
"Codec(*, new_pickler, dump, clear_memo, fallback, loads, protocol)\n--\n\n"
"The pickling policy of multiprocess, as the native core uses it (see\n"
"multiprocess/_pickling.py).");

static PyType_Slot codec_slots[] = {
    {Py_tp_doc, (void *)codec_doc},
    {Py_tp_init, codec_init},
    {Py_tp_dealloc, codec_dealloc},
    {Py_tp_traverse, codec_traverse},
    {Py_tp_clear, codec_clear},
    {Py_tp_methods, codec_methods},
    {Py_tp_members, codec_members},
    {0, NULL},
};

static PyType_Spec codec_spec = {
    .name = "_multiprocess.Codec",
    .basicsize = sizeof(mp_codec),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = codec_slots,
};

int
mp_codec_exec(PyObject *module)
{
    mp_state *st = mp_get_state(module);
    PyObject *tp = PyType_FromModuleAndSpec(module, &codec_spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    st->codec_type = (PyTypeObject *)tp;
    return PyModule_AddObjectRef(module, "Codec", tp);
}
