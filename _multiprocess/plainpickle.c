/*
 * plainpickle.c -- pickles of plain data, written without the pickler.
 *
 * Most messages between processes are plain data: numbers, strings, bytes
 * and the lists, tuples and dicts that hold them.  For those the general
 * pickler's machinery (reducer lookups, per-object dispatch through the
 * Pickler object, frame bookkeeping, a file object to write to) is most of
 * the cost.  `dumps_plain(obj, protocol)` walks such a graph once and
 * writes the pickle straight into the bytes object it returns.
 *
 * Scope.  Only exact None, bool, int (up to 64 bits), float, str, bytes,
 * list, tuple and dict, and only protocols 4 and 5 (the default and the
 * highest; the opcodes used are the same for both).  Anything else -- a
 * subclass, another type, an int beyond 64 bits, a str that is not valid
 * UTF-8 even with surrogates passed, an object over 4 GiB, a tuple that
 * contains itself through a list or dict, nesting deeper than
 * MP_PLAIN_MAX_DEPTH -- makes it return None, and the caller pickles the
 * whole object the general way.  No Python code can run during the walk
 * (no __reduce__, __hash__ or __eq__ of exact builtins is called), so the
 * graph cannot change under it.
 *
 * Equivalence.  pickle.loads of the result builds a graph equal to the
 * one the C pickler's output builds, with the same sharing: every str,
 * bytes, list, dict and non-empty tuple is memoized the first time it is
 * written, and written as a memo reference after that.  The bytes differ
 * in small ways (no FRAME opcodes, which are optional), so the result is
 * not byte-identical to pickle.dumps.
 */
#include "multiprocess.h"
#include "pickleops.h"

#include <stdint.h>
#include <string.h>

#define MP_PLAIN_MAX_DEPTH 200
#define MP_PLAIN_BATCH 1000        /* items per APPENDS / SETITEMS, as pickle */
#define MP_PLAIN_FIRST_SIZE 256

/* An output of this size or more is kept (in the module state) after it
 * is returned, and written over by the next call once nobody else holds
 * it: a large message sent again and again then reuses pages already in
 * memory, where a fresh buffer of that size costs a page fault for every
 * 4 KiB written (glibc gives big freed blocks back to the system).  Up to
 * MP_PLAIN_KEEP_MAX bytes stay allocated for that. */
#define MP_PLAIN_KEEP_MIN (128 * 1024)
#define MP_PLAIN_KEEP_MAX (4 * 1024 * 1024)

/* What a writer returns besides 0 (done): -1 with an exception set, or
 * NOT_PLAIN (no exception) when the graph is outside this file's scope. */
#define NOT_PLAIN 1

/* Memo entries: object address -> memo index, or IN_PROGRESS for a tuple
 * whose items are being written (tuples are memoized after their items). */
#define IN_PROGRESS ((Py_ssize_t)-1)

typedef struct {
    PyObject *key;
    Py_ssize_t index;
} memo_entry;

typedef struct {
    PyObject *out;          /* the bytes object being filled */
    char *buf;              /* its data */
    Py_ssize_t len, cap;
    memo_entry *memo;       /* open addressing, linear probing */
    size_t memo_mask;       /* table size - 1 (a power of two) */
    size_t memo_used;
    Py_ssize_t next_index;  /* what the next MEMOIZE will be called */
    int depth;
} encoder;

/* ------------------------------------------------------------- output */

static int
grow(encoder *e, Py_ssize_t need)
{
    Py_ssize_t cap = e->cap;
    while (cap - e->len < need) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    if (_PyBytes_Resize(&e->out, cap) < 0) {
        return -1;
    }
    e->buf = PyBytes_AS_STRING(e->out);
    e->cap = cap;
    return 0;
}

/* Room for `need` more bytes; then write with the put_* helpers below. */
static inline int
reserve(encoder *e, Py_ssize_t need)
{
    return e->cap - e->len >= need ? 0 : grow(e, need);
}

static inline void
put_byte(encoder *e, char c)
{
    e->buf[e->len++] = c;
}

static inline void
put_le(encoder *e, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        e->buf[e->len++] = (char)(v >> (8 * i));
    }
}

static inline void
put_data(encoder *e, const char *data, Py_ssize_t n)
{
    memcpy(e->buf + e->len, data, (size_t)n);
    e->len += n;
}

static int
write_op(encoder *e, char op)
{
    if (reserve(e, 1) < 0) {
        return -1;
    }
    put_byte(e, op);
    return 0;
}

/* --------------------------------------------------------------- memo */

static inline size_t
memo_hash(PyObject *obj)
{
    /* objects are at least 16-byte aligned; mix the rest (Fibonacci) */
    return (size_t)(((uintptr_t)obj >> 4) * (uintptr_t)0x9E3779B97F4A7C15ULL);
}

/* The entry for obj: its own, or the empty one where it would go. */
static memo_entry *
memo_find(encoder *e, PyObject *obj)
{
    size_t i = memo_hash(obj) & e->memo_mask;
    for (;;) {
        memo_entry *m = &e->memo[i];
        if (m->key == obj || m->key == NULL) {
            return m;
        }
        i = (i + 1) & e->memo_mask;
    }
}

static int
memo_resize(encoder *e)
{
    size_t size = (e->memo_mask + 1) * 2;
    memo_entry *old = e->memo;
    size_t old_size = e->memo_mask + 1;
    e->memo = PyMem_Calloc(size, sizeof(memo_entry));
    if (e->memo == NULL) {
        e->memo = old;
        PyErr_NoMemory();
        return -1;
    }
    e->memo_mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i].key != NULL) {
            *memo_find(e, old[i].key) = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

/* Record obj in its (empty) entry `m` with `index`.  Invalidates entry
 * pointers when the table grows. */
static int
memo_add(encoder *e, memo_entry *m, PyObject *obj, Py_ssize_t index)
{
    m->key = obj;
    m->index = index;
    if (++e->memo_used * 2 > e->memo_mask + 1) {
        return memo_resize(e);
    }
    return 0;
}

/* Write MEMOIZE for obj, whose entry is `m` (empty, or IN_PROGRESS). */
static int
memoize(encoder *e, memo_entry *m, PyObject *obj)
{
    if (reserve(e, 1) < 0) {
        return -1;
    }
    put_byte(e, OP_MEMOIZE);
    if (m->key == obj) {            /* a tuple finishing */
        m->index = e->next_index++;
        return 0;
    }
    return memo_add(e, m, obj, e->next_index++);
}

static int
write_get(encoder *e, Py_ssize_t index)
{
    if (reserve(e, 5) < 0) {
        return -1;
    }
    if (index < 256) {
        put_byte(e, OP_BINGET);
        put_le(e, (uint64_t)index, 1);
    }
    else if (index <= 0xffffffffLL) {
        put_byte(e, OP_LONG_BINGET);
        put_le(e, (uint64_t)index, 4);
    }
    else {
        return NOT_PLAIN;
    }
    return 0;
}

/* ------------------------------------------------------------ writers */

static int save(encoder *e, PyObject *obj);

/* The plain types that pickle memoizes (and this file too). */
static inline int
is_memoized_kind(PyTypeObject *type)
{
    return type == &PyUnicode_Type || type == &PyBytes_Type ||
           type == &PyList_Type || type == &PyDict_Type ||
           type == &PyTuple_Type;
}

static inline int
is_plain_type(PyTypeObject *type)
{
    return type == &PyLong_Type || type == &PyFloat_Type ||
           type == &PyBool_Type || type == Py_TYPE(Py_None) ||
           is_memoized_kind(type);
}

/* Room for what put_int writes at most. */
#define INT_ROOM 10

/* The opcode of v: the shortest of BININT1, BININT2, BININT and LONG1. */
static inline void
put_int(encoder *e, long long v)
{
    if (v >= 0 && v <= 0xff) {
        put_byte(e, OP_BININT1);
        put_le(e, (uint64_t)v, 1);
    }
    else if (v >= 0 && v <= 0xffff) {
        put_byte(e, OP_BININT2);
        put_le(e, (uint64_t)v, 2);
    }
    else if (v >= INT32_MIN && v <= INT32_MAX) {
        put_byte(e, OP_BININT);
        put_le(e, (uint64_t)v, 4);
    }
    else {
        /* LONG1: the fewest little-endian two's-complement bytes that
         * keep the sign (5 to 8 here, since v is outside 32 bits) */
        int n = 5;
        while (n < 8) {
            long long limit = 1LL << (8 * n - 1);
            if (v >= -limit && v < limit) {
                break;
            }
            n++;
        }
        put_byte(e, OP_LONG1);
        put_byte(e, (char)n);
        put_le(e, (uint64_t)v, n);
    }
}

static int
save_int(encoder *e, PyObject *obj)
{
    long long v;
    if (!mp_long_compact(obj, &v)) {
        int overflow;
        v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow) {
            return NOT_PLAIN;
        }
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (reserve(e, INT_ROOM) < 0) {
        return -1;
    }
    put_int(e, v);
    return 0;
}

static int
save_float(encoder *e, PyObject *obj)
{
    if (reserve(e, 9) < 0) {
        return -1;
    }
    put_byte(e, OP_BINFLOAT);
    if (PyFloat_Pack8(PyFloat_AS_DOUBLE(obj), e->buf + e->len, 0) < 0) {
        return -1;
    }
    e->len += 8;
    return 0;
}

/* A str or bytes payload: short (1-byte length) or 4-byte length form. */
static int
save_blob(encoder *e, char short_op, char long_op, const char *data,
          Py_ssize_t size)
{
    if ((uint64_t)size > 0xffffffffULL) {
        return NOT_PLAIN;
    }
    if (reserve(e, size + 5) < 0) {
        return -1;
    }
    if (size < 256) {
        put_byte(e, short_op);
        put_le(e, (uint64_t)size, 1);
    }
    else {
        put_byte(e, long_op);
        put_le(e, (uint64_t)size, 4);
    }
    put_data(e, data, size);
    return 0;
}

static int
save_str(encoder *e, PyObject *obj)
{
    if (PyUnicode_IS_ASCII(obj)) {
        return save_blob(e, OP_SHORT_BINUNICODE, OP_BINUNICODE,
                         (const char *)PyUnicode_DATA(obj),
                         PyUnicode_GET_LENGTH(obj));
    }
    /* as pickle does: lone surrogates pass through */
    PyObject *utf8 = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
    if (utf8 == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        PyErr_Clear();
        return NOT_PLAIN;
    }
    int rc = save_blob(e, OP_SHORT_BINUNICODE, OP_BINUNICODE,
                       PyBytes_AS_STRING(utf8), PyBytes_GET_SIZE(utf8));
    Py_DECREF(utf8);
    return rc;
}

/* Items [0, n) of a list, in batches of MARK ... APPENDS (APPEND for a
 * batch of one).  The list is not resized meanwhile: no Python code runs. */
static int
save_list_items(encoder *e, PyObject *list)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    /* at least two bytes per item: grow once, not by doubling */
    if (n > 64 && reserve(e, 2 * n) < 0) {
        return -1;
    }
    for (Py_ssize_t start = 0; start < n; start += MP_PLAIN_BATCH) {
        Py_ssize_t stop = start + MP_PLAIN_BATCH < n ? start + MP_PLAIN_BATCH
                                                     : n;
        int batch = stop - start > 1;
        if (batch && write_op(e, OP_MARK) < 0) {
            return -1;
        }
        for (Py_ssize_t i = start; i < stop; i++) {
            PyObject *item = PyList_GET_ITEM(list, i);
            long long v;
            /* the commonest item, written here without a call */
            if (Py_IS_TYPE(item, &PyLong_Type) && mp_long_compact(item, &v) &&
                e->cap - e->len >= INT_ROOM) {
                put_int(e, v);
                continue;
            }
            int rc = save(e, item);
            if (rc != 0) {
                return rc;
            }
        }
        if (write_op(e, batch ? OP_APPENDS : OP_APPEND) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
save_dict_items(encoder *e, PyObject *dict)
{
    Py_ssize_t n = PyDict_GET_SIZE(dict), pos = 0, done = 0;
    PyObject *key, *value;
    while (done < n) {
        Py_ssize_t batch = n - done < MP_PLAIN_BATCH ? n - done
                                                     : MP_PLAIN_BATCH;
        if (batch > 1 && write_op(e, OP_MARK) < 0) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < batch; i++) {
            if (!PyDict_Next(dict, &pos, &key, &value)) {
                return NOT_PLAIN;       /* cannot happen: nothing runs */
            }
            int rc = save(e, key);
            if (rc == 0) {
                rc = save(e, value);
            }
            if (rc != 0) {
                return rc;
            }
        }
        if (write_op(e, batch > 1 ? OP_SETITEMS : OP_SETITEM) < 0) {
            return -1;
        }
        done += batch;
    }
    return 0;
}

static int
save_tuple_items(encoder *e, PyObject *tuple)
{
    static const char sized[4] = {0, OP_TUPLE1, OP_TUPLE2, OP_TUPLE3};
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    if (n > 3 && write_op(e, OP_MARK) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = save(e, PyTuple_GET_ITEM(tuple, i));
        if (rc != 0) {
            return rc;
        }
    }
    return write_op(e, n > 3 ? OP_TUPLE : sized[n]);
}

static int
save(encoder *e, PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);

    /* not memoized, as in pickle */
    if (type == &PyLong_Type) {
        return save_int(e, obj);
    }
    if (type == &PyFloat_Type) {
        return save_float(e, obj);
    }
    if (obj == Py_None) {
        return write_op(e, OP_NONE);
    }
    if (type == &PyBool_Type) {
        return write_op(e, obj == Py_True ? OP_NEWTRUE : OP_NEWFALSE);
    }
    if (type == &PyTuple_Type && PyTuple_GET_SIZE(obj) == 0) {
        return write_op(e, OP_EMPTY_TUPLE);
    }
    if (!is_memoized_kind(type)) {
        return NOT_PLAIN;
    }

    memo_entry *m = memo_find(e, obj);
    if (m->key == obj) {
        /* seen: a reference, unless it is a tuple inside itself */
        return m->index == IN_PROGRESS ? NOT_PLAIN : write_get(e, m->index);
    }
    int rc;
    if (type == &PyUnicode_Type) {
        rc = save_str(e, obj);
        return rc != 0 ? rc : memoize(e, m, obj);
    }
    if (type == &PyBytes_Type) {
        rc = save_blob(e, OP_SHORT_BINBYTES, OP_BINBYTES,
                       PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj));
        return rc != 0 ? rc : memoize(e, m, obj);
    }

    if (e->depth >= MP_PLAIN_MAX_DEPTH) {
        return NOT_PLAIN;
    }
    e->depth++;
    if (type == &PyTuple_Type) {
        /* memoized after its items; meanwhile marked, to catch cycles */
        if (memo_add(e, m, obj, IN_PROGRESS) < 0) {
            return -1;
        }
        rc = save_tuple_items(e, obj);
        if (rc == 0) {
            rc = memoize(e, memo_find(e, obj), obj);
        }
    }
    else {
        /* lists and dicts are memoized first: items may refer to them */
        rc = write_op(e, type == &PyList_Type ? OP_EMPTY_LIST : OP_EMPTY_DICT);
        if (rc == 0) {
            rc = memoize(e, m, obj);
        }
        if (rc == 0) {
            rc = type == &PyList_Type ? save_list_items(e, obj)
                                      : save_dict_items(e, obj);
        }
    }
    e->depth--;
    return rc;
}

/* --------------------------------------------------------------- entry */

/* The buffer to write into: the kept one if nobody else holds it, else a
 * new one.  Sets e->out, e->buf and e->cap; -1 with an exception. */
static int
open_output(encoder *e, mp_state *st)
{
    PyObject *kept = st != NULL ? st->plain_kept : NULL;
    if (kept != NULL && Py_REFCNT(kept) == 1) {
        st->plain_kept = NULL;
        /* Resized to another size, which also forgets a hash computed
         * while it was somebody's result; its pages stay.  The slack lets
         * the same message again fit without growing (a move). */
        Py_ssize_t size = PyBytes_GET_SIZE(kept);
        Py_ssize_t cap = size + size / 8 + 64;
        if (_PyBytes_Resize(&kept, cap) < 0) {
            return -1;
        }
        e->out = kept;
        e->cap = cap;
    }
    else {
        e->out = PyBytes_FromStringAndSize(NULL, MP_PLAIN_FIRST_SIZE);
        if (e->out == NULL) {
            return -1;
        }
        e->cap = MP_PLAIN_FIRST_SIZE;
    }
    e->buf = PyBytes_AS_STRING(e->out);
    return 0;
}

/* Keep `out` (a new reference, consumed) for the next call when its size
 * is worth it; it then holds the last large result, or a spare buffer. */
static void
keep_output(mp_state *st, PyObject *out)
{
    Py_ssize_t size = PyBytes_GET_SIZE(out);
    if (st != NULL && size >= MP_PLAIN_KEEP_MIN && size <= MP_PLAIN_KEEP_MAX) {
        Py_XSETREF(st->plain_kept, out);
    }
    else {
        Py_DECREF(out);
    }
}

PyObject *
mp_plain_dumps(mp_state *st, PyObject *obj, int protocol)
{
    /* Most objects that are not plain are so at the top (an instance, a
     * set): answer before allocating anything. */
    if ((protocol != 4 && protocol != 5) || !is_plain_type(Py_TYPE(obj))) {
        Py_RETURN_NONE;
    }
    encoder e;
    memset(&e, 0, sizeof(e));
    if (open_output(&e, st) < 0) {
        return NULL;
    }
    e.memo_mask = 63;
    e.memo = PyMem_Calloc(e.memo_mask + 1, sizeof(memo_entry));
    if (e.memo == NULL) {
        keep_output(st, e.out);
        return PyErr_NoMemory();
    }

    put_byte(&e, OP_PROTO);
    put_byte(&e, (char)protocol);
    int rc = save(&e, obj);
    if (rc == 0) {
        rc = write_op(&e, OP_STOP);
    }
    PyMem_Free(e.memo);
    if (rc == 0) {
        if (_PyBytes_Resize(&e.out, e.len) < 0) {
            return NULL;        /* (it freed e.out) */
        }
        keep_output(st, Py_NewRef(e.out));
        return e.out;
    }
    if (e.out != NULL) {        /* (a failed resize frees it) */
        keep_output(st, e.out);
    }
    if (rc == NOT_PLAIN) {
        Py_RETURN_NONE;
    }
    return NULL;
}

PyDoc_STRVAR(dumps_plain_doc,
"dumps_plain($module, obj, protocol, /)\n--\n\n"
"The pickle of obj as bytes when obj is plain data (exact None, bool,\n"
"int, float, str, bytes, list, tuple and dict) and protocol is 4 or 5;\n"
"otherwise None.  pickle.loads of it equals pickle.loads of\n"
"pickle.dumps(obj, protocol), sharing included.");

static PyObject *
mp_dumps_plain(PyObject *module, PyObject *const *args,
               Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "dumps_plain expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    int overflow;
    long protocol = PyLong_AsLongAndOverflow(args[1], &overflow);
    if (protocol == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return mp_plain_dumps(mp_get_state(module), args[0],
                          overflow ? -1 : (int)protocol);
}

static PyMethodDef plainpickle_functions[] = {
    {"dumps_plain", (PyCFunction)(void (*)(void))mp_dumps_plain,
     METH_FASTCALL, dumps_plain_doc},
    {NULL, NULL, 0, NULL},
};

int
mp_plainpickle_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, plainpickle_functions);
}
