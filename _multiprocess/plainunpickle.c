/*
 * plainunpickle.c -- pickles of plain data, read without the unpickler.
 *
 * The reading half of plainpickle.c.  A pickle whose opcodes are all
 * those of plain data (pickleops.h: None, bool, int, float, str, bytes,
 * and the lists, tuples and dicts that hold them, with the memo and stack
 * opcodes protocols 2 to 5 use for those) is run here by a small stack
 * machine.  That covers everything dumps_plain writes, and what the C
 * pickler writes for the same objects.
 *
 * Giving up.  At the first opcode outside that set (a global, a reduce, a
 * set, a persistent id, an out-of-band buffer, an old protocol's text
 * opcodes) and at anything malformed or failing (truncation, a memo miss,
 * a stack underflow, invalid UTF-8, an unhashable key, no memory), the
 * machine drops what it built and reports "not plain"; `loads` then hands
 * the data to pickle.loads, which does the general work or raises the
 * error the caller must see.  Only exact builtins are created, and neither
 * their hashing nor their deallocation runs Python code, so giving up at
 * any point leaves no trace.  The rules for the stack are those of the C
 * unpickler (an opcode may not reach below the innermost MARK), or
 * stricter: where the two could differ, this side gives up.
 *
 * What is saved: the unpickler moves every item through its own stack and
 * every batch of a list through a temporary list; here each item goes
 * from the value stack into the list's storage, which grows by half each
 * time instead of by an eighth.
 */
#include "multiprocess.h"
#include "pickleops.h"

#include <stdint.h>
#include <string.h>

#define U(op) ((unsigned char)(op))
#define HIGHEST_PROTOCOL 5

/* Room kept inside the decoder, so that a small message allocates
 * nothing besides its objects. */
#define INLINE_STACK 32
#define INLINE_MARKS 16
#define INLINE_MEMO 32

/* A list that gets a second batch of items is probably long: its storage
 * is then reserved for as many items as the rest of the input could hold
 * (each takes at least two bytes, bar None and the booleans), and cut to
 * size at the end.  Reserved pages that are never written cost nothing;
 * growing by steps costs a copy and fresh pages at every step.  This many
 * lists per message get it; others grow by steps. */
#define BIG_LISTS 8
#define BATCH 1000

typedef struct {
    const unsigned char *p, *end;
    PyObject **stack;           /* owned references, [0, depth) */
    Py_ssize_t depth, stack_cap;
    Py_ssize_t *marks;          /* stack depths at each open MARK */
    Py_ssize_t nmarks, marks_cap;
    PyObject **memo;            /* owned references or NULL, [0, memo_cap) */
    Py_ssize_t memo_cap, memo_len;  /* memo_len: how many are set */
    Py_ssize_t memo_top;        /* 1 + the highest index ever set */
    Py_ssize_t memo_limit;      /* a larger index is surely not plain */
    PyObject *big[BIG_LISTS];   /* lists reserved for more than they hold */
    int nbig;
    PyObject *stack0[INLINE_STACK];
    Py_ssize_t marks0[INLINE_MARKS];
    PyObject *memo0[INLINE_MEMO];
} decoder;

/* What the machine returns. */
enum { GIVE_UP = 0, DONE = 1 };

/* ---------------------------------------------------------- storage */

/* Make room for `need` elements of `size` bytes in *arr (capacity *cap),
 * which starts as the decoder's inline array `first`.  New room is zeroed
 * when `zero`.  -1 with MemoryError. */
static int
grow_array(void **arr, Py_ssize_t *cap, void *first, size_t size,
           Py_ssize_t need, int zero)
{
    Py_ssize_t old = *cap, cap2 = old * 2 > need ? old * 2 : need;
    if ((size_t)cap2 > (size_t)PY_SSIZE_T_MAX / size) {
        PyErr_NoMemory();
        return -1;
    }
    void *mem;
    if (*arr == first) {
        mem = PyMem_Malloc((size_t)cap2 * size);
        if (mem != NULL) {
            memcpy(mem, first, (size_t)old * size);
        }
    }
    else {
        mem = PyMem_Realloc(*arr, (size_t)cap2 * size);
    }
    if (mem == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (zero) {
        memset((char *)mem + (size_t)old * size, 0,
               (size_t)(cap2 - old) * size);
    }
    *arr = mem;
    *cap = cap2;
    return 0;
}

/* Push a new reference (stolen, also on failure); NULL is passed on as
 * the failure of whatever made it. */
static inline int
push(decoder *d, PyObject *obj)
{
    if (obj == NULL) {
        return -1;
    }
    if (d->depth == d->stack_cap &&
        grow_array((void **)&d->stack, &d->stack_cap, d->stack0,
                   sizeof(PyObject *), d->depth + 1, 0) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    d->stack[d->depth++] = obj;
    return 0;
}

/* The lowest stack index the current opcode may touch. */
static inline Py_ssize_t
fence(decoder *d)
{
    return d->nmarks > 0 ? d->marks[d->nmarks - 1] : 0;
}

/* Drop the stack down to `depth`. */
static void
pop_to(decoder *d, Py_ssize_t depth)
{
    while (d->depth > depth) {
        Py_DECREF(d->stack[--d->depth]);
    }
}

static int
memo_put(decoder *d, Py_ssize_t index, PyObject *obj)
{
    if (index >= d->memo_cap &&
        grow_array((void **)&d->memo, &d->memo_cap, d->memo0,
                   sizeof(PyObject *), index + 1, 1) < 0) {
        return -1;
    }
    PyObject *old = d->memo[index];
    d->memo[index] = Py_NewRef(obj);
    if (old != NULL) {
        Py_DECREF(old);
    }
    else {
        d->memo_len++;
        if (index >= d->memo_top) {
            d->memo_top = index + 1;
        }
    }
    return 0;
}

/* Move n stack references onto the end of an exact list, growing its
 * storage by half, or to what the rest of the input could hold (see
 * BIG_LISTS).  PyMem, as listobject.c allocates it. */
#if MP_OWNS_LIST_STORAGE
static int
list_take(decoder *d, PyObject *list, PyObject **items, Py_ssize_t n)
{
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t size = Py_SIZE(l);
    if (l->allocated - size < n) {
        Py_ssize_t cap = l->allocated + (l->allocated >> 1);
        int reserve = size >= BATCH && d->nbig < BIG_LISTS;
        if (reserve) {
            cap = size + n + (d->end - d->p) / 2;
        }
        if (cap < size + n) {
            cap = size + n;
        }
        if ((size_t)cap > (size_t)PY_SSIZE_T_MAX / sizeof(PyObject *)) {
            PyErr_NoMemory();
            return -1;
        }
        PyObject **mem = PyMem_Realloc(l->ob_item,
                                       (size_t)cap * sizeof(PyObject *));
        if (mem == NULL && reserve) {
            /* the guess was too much to ask for: grow by steps */
            reserve = 0;
            cap = size + n > l->allocated * 2 ? size + n : l->allocated * 2;
            mem = PyMem_Realloc(l->ob_item, (size_t)cap * sizeof(PyObject *));
        }
        if (mem == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        l->ob_item = mem;
        l->allocated = cap;
        if (reserve) {
            d->big[d->nbig++] = Py_NewRef(list);
        }
    }
    memcpy(l->ob_item + size, items, (size_t)n * sizeof(PyObject *));
    Py_SET_SIZE(l, size + n);
    return 0;
}

/* Give back a list's storage beyond its items (a shrink in place). */
static void
trim(PyObject *list)
{
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t size = Py_SIZE(l);
    if (size > 0 && l->allocated > size) {
        PyObject **mem = PyMem_Realloc(l->ob_item,
                                       (size_t)size * sizeof(PyObject *));
        if (mem != NULL) {
            l->ob_item = mem;
            l->allocated = size;
        }
    }
}
#else
/* Free-threaded builds (compat.h): the list's storage belongs to the
 * interpreter, so items go in through the public API.  On failure the
 * stack still owns all n references, as above. */
static int
list_take(decoder *d, PyObject *list, PyObject **items, Py_ssize_t n)
{
    (void)d;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_Append(list, items[i]) < 0) {
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(items[i]);
    }
    return 0;
}

/* Nothing is ever reserved there (d->nbig stays 0). */
static void
trim(PyObject *list)
{
    (void)list;
}
#endif

/* Set n/2 key/value pairs from stack references into an exact dict; the
 * references are released either way. */
static int
dict_take(PyObject *dict, PyObject **items, Py_ssize_t n)
{
    int rc = 0;
    for (Py_ssize_t i = 0; i < n; i += 2) {
        if (rc == 0 && PyDict_SetItem(dict, items[i], items[i + 1]) < 0) {
            rc = -1;
        }
        Py_DECREF(items[i]);
        Py_DECREF(items[i + 1]);
    }
    return rc;
}

/* A new tuple of the top n stack references, taken off the stack. */
static PyObject *
tuple_take(decoder *d, Py_ssize_t n)
{
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) {
        return NULL;
    }
    d->depth -= n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(tuple, i, d->stack[d->depth + i]);
    }
    return tuple;
}

/* ------------------------------------------------------------ input */

/* The next n bytes, or NULL when fewer are left. */
static inline const unsigned char *
take(decoder *d, uint64_t n)
{
    if ((uint64_t)(d->end - d->p) < n) {
        return NULL;
    }
    const unsigned char *s = d->p;
    d->p += n;
    return s;
}

static inline uint64_t
le(const unsigned char *s, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) {
        v = (v << 8) | s[i];
    }
    return v;
}

/* The argument of an opcode: an unsigned little-endian number of n bytes;
 * 0 when the input ends first. */
static inline int
arg(decoder *d, int n, uint64_t *out)
{
    const unsigned char *s = take(d, (uint64_t)n);
    if (s == NULL) {
        return 0;
    }
    *out = le(s, n);
    return 1;
}

/* The payload of a str or bytes opcode, after its length (1, 4 or 8
 * bytes by the opcode): 1 with *s and *n set, 0 when the input ends
 * first. */
static inline int
counted(decoder *d, unsigned char op, const unsigned char **s, uint64_t *n)
{
    int width = op == U(OP_SHORT_BINUNICODE) || op == U(OP_SHORT_BINBYTES) ? 1
        : op == U(OP_BINUNICODE8) || op == U(OP_BINBYTES8) ? 8 : 4;
    return arg(d, width, n) && (*s = take(d, *n)) != NULL;
}

/* Past a short str opcode at p and the memo opcode after it, if any;
 * NULL when the input ends first. */
static const unsigned char *
skip_short_str(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 2 || end - p - 2 < p[1]) {
        return NULL;
    }
    p += 2 + p[1];
    if (p < end && *p == U(OP_MEMOIZE)) {
        p++;
    }
    else if (end - p >= 2 && *p == U(OP_BINPUT)) {
        p += 2;
    }
    return p;
}

/* Whether the short str at p and the next one name a class or function
 * (STACK_GLOBAL follows them): the commonest start of a pickle that is not
 * plain, given up on before anything is decoded. */
static int
names_a_global(const unsigned char *p, const unsigned char *end)
{
    p = skip_short_str(p, end);
    if (p == NULL || p == end || *p != U(OP_SHORT_BINUNICODE)) {
        return 0;
    }
    p = skip_short_str(p, end);
    return p != NULL && p < end && *p == U(OP_STACK_GLOBAL);
}

/* LONG1's payload: n (at most 8) little-endian two's-complement bytes. */
static PyObject *
long1(const unsigned char *s, uint64_t n)
{
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    uint64_t v = le(s, (int)n);
    if (n < 8 && (s[n - 1] & 0x80)) {
        v |= ~(uint64_t)0 << (8 * n);
    }
    return PyLong_FromLongLong((long long)v);
}

static PyObject *
binfloat(const unsigned char *s)
{
    double x = PyFloat_Unpack8((const char *)s, 0);    /* big-endian */
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(x);
}

/* ---------------------------------------------------------- machine */

/* APPENDS or SETITEMS: move the items above the innermost MARK into the
 * list or dict just below it.  -1 when the stack holds no such batch or
 * the move fails. */
static int
close_batch(decoder *d, unsigned char op)
{
    if (d->nmarks == 0) {
        return -1;
    }
    Py_ssize_t m = d->marks[--d->nmarks];
    if (m - 1 < fence(d)) {
        return -1;
    }
    Py_ssize_t n = d->depth - m;
    if (n == 0) {
        return 0;           /* an empty batch: pickle skips it, whatever
                             * the target */
    }
    PyObject *target = d->stack[m - 1];
    if (op == U(OP_APPENDS)) {
        if (!PyList_CheckExact(target) ||
            list_take(d, target, &d->stack[m], n) < 0) {
            return -1;
        }
        d->depth = m;
        return 0;
    }
    if (n % 2 != 0 || !PyDict_CheckExact(target)) {
        return -1;
    }
    d->depth = m;           /* dict_take releases the items either way */
    return dict_take(target, &d->stack[m], n);
}

/* Push the ints of a run of BININT1/BININT2/BININT opcodes (most of a list
 * of ints) in one loop, up to the first other or truncated opcode.  -1
 * with an exception. */
static int
push_ints(decoder *d)
{
    const unsigned char *p = d->p, *end = d->end;
    int rc = 0;
    while (p < end) {
        long v;
        if (*p == U(OP_BININT1) && end - p >= 2) {
            v = (long)le(p + 1, 1);
            p += 2;
        }
        else if (*p == U(OP_BININT2) && end - p >= 3) {
            v = (long)le(p + 1, 2);
            p += 3;
        }
        else if (*p == U(OP_BININT) && end - p >= 5) {
            v = (long)(int32_t)(uint32_t)le(p + 1, 4);
            p += 5;
        }
        else {
            break;
        }
        if (push(d, PyLong_FromLong(v)) < 0) {
            rc = -1;
            break;
        }
    }
    d->p = p;
    return rc;
}

/* Run opcodes to STOP.  DONE with *result set; GIVE_UP otherwise, with
 * an exception set or not (the caller clears it). */
static int
run(decoder *d, PyObject **result)
{
    for (;;) {
        const unsigned char *s;
        uint64_t n;
        Py_ssize_t m;
        PyObject *obj;

        if (d->p == d->end) {
            return GIVE_UP;
        }
        unsigned char op = *d->p++;
        switch (op) {

        /* framing */
        case U(OP_PROTO):
            if (!arg(d, 1, &n) || n > HIGHEST_PROTOCOL) {
                return GIVE_UP;
            }
            continue;
        case U(OP_FRAME):
            /* frames only group opcodes; the unpickler checks the size */
            if (!arg(d, 8, &n) || n > (uint64_t)(d->end - d->p)) {
                return GIVE_UP;
            }
            continue;
        case U(OP_STOP):
            if (d->depth != 1 || d->nmarks != 0) {
                return GIVE_UP;
            }
            *result = d->stack[--d->depth];
            return DONE;

        /* scalars */
        case U(OP_NONE):
            obj = Py_NewRef(Py_None);
            break;
        case U(OP_NEWTRUE):
            obj = Py_NewRef(Py_True);
            break;
        case U(OP_NEWFALSE):
            obj = Py_NewRef(Py_False);
            break;
        case U(OP_BININT1):
        case U(OP_BININT2):
        case U(OP_BININT):
            s = --d->p;
            if (push_ints(d) < 0 || d->p == s) {
                return GIVE_UP;         /* (no progress: truncated) */
            }
            continue;
        case U(OP_LONG1):
            if (!arg(d, 1, &n) || n > 8 || (s = take(d, n)) == NULL) {
                return GIVE_UP;
            }
            obj = long1(s, n);
            break;
        case U(OP_BINFLOAT):
            if ((s = take(d, 8)) == NULL) {
                return GIVE_UP;
            }
            obj = binfloat(s);
            break;
        case U(OP_SHORT_BINUNICODE):
            if (names_a_global(d->p - 1, d->end)) {
                return GIVE_UP;
            }
            /* fall through */
        case U(OP_BINUNICODE):
        case U(OP_BINUNICODE8):
            if (!counted(d, op, &s, &n)) {
                return GIVE_UP;
            }
            /* as pickle: lone surrogates pass through */
            obj = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n,
                                       "surrogatepass");
            break;
        case U(OP_SHORT_BINBYTES):
        case U(OP_BINBYTES):
        case U(OP_BINBYTES8):
            if (!counted(d, op, &s, &n)) {
                return GIVE_UP;
            }
            /* filled afterwards, as pickle does: a byte string of one
             * byte is then a new object, not the shared one */
            obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
            if (obj != NULL) {
                memcpy(PyBytes_AS_STRING(obj), s, (size_t)n);
            }
            break;

        /* containers */
        case U(OP_EMPTY_LIST):
            obj = PyList_New(0);
            break;
        case U(OP_EMPTY_DICT):
            obj = PyDict_New();
            break;
        case U(OP_EMPTY_TUPLE):
            obj = PyTuple_New(0);
            break;
        case U(OP_TUPLE1):
        case U(OP_TUPLE2):
        case U(OP_TUPLE3):
            m = op - U(OP_TUPLE1) + 1;
            if (d->depth - fence(d) < m) {
                return GIVE_UP;
            }
            obj = tuple_take(d, m);
            break;
        case U(OP_TUPLE):
            if (d->nmarks == 0) {
                return GIVE_UP;
            }
            m = d->marks[--d->nmarks];
            obj = tuple_take(d, d->depth - m);
            break;
        case U(OP_APPEND):
            if (d->depth - fence(d) < 2 ||
                !PyList_CheckExact(d->stack[d->depth - 2]) ||
                list_take(d, d->stack[d->depth - 2], &d->stack[d->depth - 1],
                          1) < 0) {
                return GIVE_UP;
            }
            d->depth--;
            continue;
        case U(OP_APPENDS):
        case U(OP_SETITEMS):
            if (close_batch(d, op) < 0) {
                return GIVE_UP;
            }
            continue;
        case U(OP_SETITEM):
            if (d->depth - fence(d) < 3 ||
                !PyDict_CheckExact(d->stack[d->depth - 3])) {
                return GIVE_UP;
            }
            d->depth -= 2;
            if (dict_take(d->stack[d->depth - 1], &d->stack[d->depth], 2) < 0) {
                return GIVE_UP;
            }
            continue;

        /* stack and memo */
        case U(OP_MARK):
            if (d->nmarks == d->marks_cap &&
                grow_array((void **)&d->marks, &d->marks_cap, d->marks0,
                           sizeof(Py_ssize_t), d->nmarks + 1, 0) < 0) {
                return GIVE_UP;
            }
            d->marks[d->nmarks++] = d->depth;
            continue;
        case U(OP_POP):
            /* (pickle would drop a mark here instead; rare, not plain) */
            if (d->depth <= fence(d)) {
                return GIVE_UP;
            }
            pop_to(d, d->depth - 1);
            continue;
        case U(OP_POP_MARK):
            if (d->nmarks == 0) {
                return GIVE_UP;
            }
            pop_to(d, d->marks[--d->nmarks]);
            continue;
        case U(OP_MEMOIZE):
        case U(OP_BINPUT):
        case U(OP_LONG_BINPUT):
            if (op == U(OP_MEMOIZE)) {
                m = d->memo_len;        /* the next free number, as pickle */
            }
            else if (!arg(d, op == U(OP_BINPUT) ? 1 : 4, &n) ||
                     n > (uint64_t)d->memo_limit) {
                return GIVE_UP;
            }
            else {
                m = (Py_ssize_t)n;
            }
            if (d->depth <= fence(d) ||
                memo_put(d, m, d->stack[d->depth - 1]) < 0) {
                return GIVE_UP;
            }
            continue;
        case U(OP_BINGET):
        case U(OP_LONG_BINGET):
            if (!arg(d, op == U(OP_BINGET) ? 1 : 4, &n) ||
                n >= (uint64_t)d->memo_cap || d->memo[n] == NULL) {
                return GIVE_UP;
            }
            obj = Py_NewRef(d->memo[n]);
            break;

        default:
            return GIVE_UP;
        }
        if (push(d, obj) < 0) {
            return GIVE_UP;
        }
    }
}

/* ------------------------------------------------------------ entry */

int
mp_plain_loads(const char *data, Py_ssize_t size, PyObject **result)
{
    decoder d;
    d.p = (const unsigned char *)data;
    d.end = d.p + size;
    d.stack = d.stack0;
    d.depth = 0;
    d.stack_cap = INLINE_STACK;
    d.marks = d.marks0;
    d.nmarks = 0;
    d.marks_cap = INLINE_MARKS;
    d.memo = d.memo0;
    d.memo_cap = INLINE_MEMO;
    d.memo_len = 0;
    d.memo_top = 0;
    d.memo_limit = size;        /* pickle numbers memo entries from 0 */
    memset(d.memo0, 0, sizeof(d.memo0));

    d.nbig = 0;

    *result = NULL;
    int rc = run(&d, result);
    if (rc != DONE && PyErr_Occurred()) {
        PyErr_Clear();          /* pickle.loads will say it, if anything */
    }
    for (int i = 0; i < d.nbig; i++) {
        if (rc == DONE) {
            trim(d.big[i]);
        }
        Py_DECREF(d.big[i]);
    }
    pop_to(&d, 0);
    for (Py_ssize_t i = 0; i < d.memo_top; i++) {
        Py_XDECREF(d.memo[i]);
    }
    if (d.stack != d.stack0) {
        PyMem_Free(d.stack);
    }
    if (d.marks != d.marks0) {
        PyMem_Free(d.marks);
    }
    if (d.memo != d.memo0) {
        PyMem_Free(d.memo);
    }
    return rc == DONE;
}

/* The plain reading of `data` if it has one: 1 and *result, or 0. */
static int
plain_from_object(PyObject *data, PyObject **result)
{
    if (PyBytes_CheckExact(data)) {
        return mp_plain_loads(PyBytes_AS_STRING(data),
                              PyBytes_GET_SIZE(data), result);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();          /* pickle.loads says what is wrong */
        *result = NULL;
        return 0;
    }
    int rc = mp_plain_loads(view.buf, view.len, result);
    PyBuffer_Release(&view);
    return rc;
}

PyDoc_STRVAR(loads_plain_doc,
"_test_loads_plain($module, data, default, /)\n--\n\n"
"What pickle.loads(data) returns, when data is a pickle of plain data\n"
"(None, bool, int, float, str, bytes, list, tuple and dict, in protocols\n"
"2 to 5); otherwise `default`, also for malformed data.");

static PyObject *
mp_loads_plain(PyObject *Py_UNUSED(module), PyObject *const *args,
               Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "_test_loads_plain expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *result;
    if (plain_from_object(args[0], &result)) {
        return result;
    }
    return Py_NewRef(args[1]);
}

PyDoc_STRVAR(loads_doc,
"loads($module, data, /, *, fix_imports=True, encoding='ASCII',\n"
"      errors='strict', buffers=())\n--\n\n"
"pickle.loads, reading pickles of plain data in C first.  With any\n"
"keyword argument, or data that is not a plain pickle, it is\n"
"pickle.loads itself.");

static PyObject *
mp_loads(PyObject *module, PyObject *const *args, size_t nargsf,
         PyObject *kwnames)
{
    PyObject *result;
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL &&
        plain_from_object(args[0], &result)) {
        return result;
    }
    PyObject *general = mp_get_state(module)->pickle_loads;
    if (general == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_multiprocess has no pickle.loads");
        return NULL;
    }
    return PyObject_Vectorcall(general, args, nargsf, kwnames);
}

static PyMethodDef plainunpickle_functions[] = {
    {"_test_loads_plain", (PyCFunction)(void (*)(void))mp_loads_plain,
     METH_FASTCALL, loads_plain_doc},
    {"loads", (PyCFunction)(void (*)(void))mp_loads,
     METH_FASTCALL | METH_KEYWORDS, loads_doc},
    {NULL, NULL, 0, NULL},
};

int
mp_plainunpickle_exec(PyObject *module)
{
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (pickle == NULL) {
        return -1;
    }
    PyObject *general = PyObject_GetAttrString(pickle, "loads");
    Py_DECREF(pickle);
    if (general == NULL) {
        return -1;
    }
    Py_XSETREF(mp_get_state(module)->pickle_loads, general);
    return PyModule_AddFunctions(module, plainunpickle_functions);
}
