/*
 * endpoint.c -- Endpoint, the C base of multiprocess.connection.Connection:
 * send()/recv() of one pickled object as one frame (frameio.c) in one C
 * call, pickled by the connection's Codec (codec.c).
 */
#include "multiprocess.h"
#include "structmember.h"

/* ------------------------------------------------------------------ */
/* Endpoint: send()/recv() of pickled objects without a Python frame      */

/*
 * Endpoint is the C base of multiprocess.connection.Connection.  It holds
 * the two fast-path fds (`_rfd`, `_wfd`: the fd when that direction is
 * usable, -1 otherwise; the Python layer keeps them in step) and does the
 * per-message work of send() and recv() in one C call: a small message
 * costs one Python-to-C call per side instead of a Python frame making ten.
 *
 * The pickling policy stays in Python (multiprocess/_pickling.py); its
 * Codec (codec.c), assigned to `_codec` once per connection, pickles each
 * message: send() writes the parts it returns as one frame with writev.
 */

typedef struct {
    PyObject_HEAD
    int rfd;
    int wfd;
    PyObject *codec;        /* a Codec (codec.c), or NULL */
    mp_state *state;        /* the module's, found when codec is set */
} endpoint_object;

static PyObject *
endpoint_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
             PyObject *Py_UNUSED(kwds))
{
    endpoint_object *self = (endpoint_object *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->rfd = -1;
        self->wfd = -1;
    }
    return (PyObject *)self;
}

static int
endpoint_traverse(endpoint_object *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->codec);
    return 0;
}

static int
endpoint_clear(endpoint_object *self)
{
    Py_CLEAR(self->codec);
    return 0;
}

static void
endpoint_dealloc(endpoint_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    (void)endpoint_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
endpoint_get_codec(endpoint_object *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->codec != NULL ? self->codec : Py_None);
}

static int
endpoint_set_codec(endpoint_object *self, PyObject *value,
                   void *Py_UNUSED(closure))
{
    if (value == NULL || value == Py_None) {
        Py_CLEAR(self->codec);
        return 0;
    }
    /* once per connection, not per message */
    if (self->state == NULL &&
        (self->state = mp_state_from_type(Py_TYPE(self))) == NULL) {
        return -1;
    }
    if (!mp_codec_check(self->state, value)) {
        PyErr_SetString(PyExc_TypeError,
                        "_codec must be a _multiprocess.Codec");
        return -1;
    }
    Py_XSETREF(self->codec, Py_NewRef(value));
    return 0;
}

/* The fast fd is -1: let the Python layer say why (closed, read-only,
 * write-only).  Always NULL with an exception. */
static PyObject *
endpoint_refuse(endpoint_object *self, int writing)
{
    PyObject *r = PyObject_CallMethod((PyObject *)self, "_refuse", "O",
                                      writing ? Py_True : Py_False);
    if (r != NULL) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_OSError, "handle is closed");
    }
    return NULL;
}

/* What send() (writing) and recv() start with: the fd of that direction
 * in *fd and a new reference to the codec; NULL with the exception when
 * the direction is not usable or the connection has no codec. */
static PyObject *
endpoint_begin(endpoint_object *self, int writing, int *fd)
{
    *fd = writing ? self->wfd : self->rfd;
    if (*fd < 0) {
        return endpoint_refuse(self, writing);
    }
    if (self->codec == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "connection was not initialised (no codec)");
        return NULL;
    }
    return Py_NewRef(self->codec);
}

PyDoc_STRVAR(endpoint_send_doc,
"send($self, obj, /)\n--\n\n"
"Pickle obj and send it as one message.  If pickling fails the exception\n"
"propagates and nothing at all is written.");

static PyObject *
endpoint_send(endpoint_object *self, PyObject *obj)
{
    /* The codec is held for the whole call: pickling runs Python code,
     * which might replace this connection's codec. */
    int fd;
    PyObject *codec = endpoint_begin(self, 1, &fd);
    if (codec == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    mp_pickled pickled;
    if (mp_codec_pickle(codec, obj, &pickled) == 0) {
        if (mp_write_frame(fd, pickled.parts, pickled.count) == 0) {
            result = Py_NewRef(Py_None);
        }
        if (mp_codec_release(codec, &pickled) < 0) {
            Py_CLEAR(result);
        }
    }
    Py_DECREF(codec);
    return result;
}

PyDoc_STRVAR(endpoint_recv_doc,
"recv($self, /)\n--\n\n"
"Receive one message and unpickle it.  EOFError when the peer has closed\n"
"its end.");

static PyObject *
endpoint_recv(endpoint_object *self, PyObject *Py_UNUSED(ignored))
{
    int fd;
    PyObject *codec = endpoint_begin(self, 0, &fd);
    if (codec == NULL) {
        return NULL;
    }
    PyObject *result = NULL, *data = mp_read_frame(self->state, fd, -1);
    if (data != NULL) {
        result = mp_codec_loads(codec, data);
        Py_DECREF(data);
    }
    Py_DECREF(codec);
    return result;
}

static PyMethodDef endpoint_methods[] = {
    {"send", (PyCFunction)endpoint_send, METH_O, endpoint_send_doc},
    {"recv", (PyCFunction)endpoint_recv, METH_NOARGS, endpoint_recv_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef endpoint_members[] = {
    {"_rfd", T_INT, offsetof(endpoint_object, rfd), 0,
     "the fd while this end may receive, else -1"},
    {"_wfd", T_INT, offsetof(endpoint_object, wfd), 0,
     "the fd while this end may send, else -1"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef endpoint_getset[] = {
    {"_codec", (getter)endpoint_get_codec, (setter)endpoint_set_codec,
     "the pickling callables send() and recv() use", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(endpoint_doc,
"Endpoint()\n--\n\n"
"C base of multiprocess.connection.Connection: send() and recv() of\n"
"pickled objects on the fds in _wfd/_rfd (-1: not usable).");

static PyType_Slot endpoint_slots[] = {
    {Py_tp_doc, (void *)endpoint_doc},
    {Py_tp_new, endpoint_new},
    {Py_tp_dealloc, endpoint_dealloc},
    {Py_tp_traverse, endpoint_traverse},
    {Py_tp_clear, endpoint_clear},
    {Py_tp_methods, endpoint_methods},
    {Py_tp_members, endpoint_members},
    {Py_tp_getset, endpoint_getset},
    {0, NULL},
};

static PyType_Spec endpoint_spec = {
    .name = "_multiprocess.Endpoint",
    .basicsize = sizeof(endpoint_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = endpoint_slots,
};

int
mp_endpoint_exec(PyObject *module)
{
    PyObject *endpoint = PyType_FromModuleAndSpec(module, &endpoint_spec,
                                                  NULL);
    if (endpoint == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "Endpoint", endpoint);
    Py_DECREF(endpoint);
    return rc;
}
