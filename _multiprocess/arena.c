/*
 * arena.c -- shared memory arenas and the block allocator behind shared
 * ctypes.  (The synchronized wrappers of sharedctypes are in syncwrap.c.)
 *
 * Arena(size, fd=-1)
 *     One MAP_SHARED mapping of a memfd (or, without memfd, of an unlinked
 *     file in /dev/shm).  Because it is backed by a descriptor, a spawned or
 *     forkserver child receives the descriptor (heap.py pickles it with
 *     reduction.DupFd) and maps the very same pages.  Given an fd, the arena
 *     adopts it (closes it on deallocation) and only maps it: such a
 *     "foreign" arena never allocates.
 *     alloc(size) -> Block or None   carve `size` bytes (16-byte aligned,
 *         zero-filled) from the lowest-addressed free span that is long
 *         enough; None when there is none.  O(log n) in the free spans.
 *     spans() -> (used, free)        lists of (start, stop), by address.
 *     size, fd, pid, nblocks, in_use, n_allocs, n_frees; buffer protocol.
 *
 * Block(arena, start, size)
 *     A block of an arena, exporting exactly its bytes through the buffer
 *     protocol (so ctypes' from_buffer() can sit on it).  Blocks made by
 *     alloc() own their span: when the last reference to the block goes
 *     away, the span goes back to the arena's free list, coalesced with its
 *     neighbours, right there in the deallocator.  No finalizer, no lock:
 *     the bookkeeping is a few C statements run under the GIL that never
 *     call back into Python, so a garbage collection triggered anywhere
 *     (even in the middle of heap.py's malloc) can free blocks safely.
 *     Blocks built by the constructor (a child rebuilding a pickled block)
 *     own nothing.
 *
 * The allocator state is private to each process, as the stdlib's is: a
 * process only allocates from arenas it created itself (alloc() refuses in
 * any other pid), so a forked child and its parent never hand out the same
 * bytes.  Policy (when to create, grow or drop arenas) is heap.py's.
 */
#include "multiprocess.h"

#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every block starts on this boundary and spans a multiple of it: enough
 * for any ctypes type, including long double. */
#define ARENA_ALIGN 16

typedef struct {
    Py_ssize_t start, stop;
} span_t;

/* A growable array of spans kept sorted by start. */
typedef struct {
    span_t *items;
    Py_ssize_t len, cap;
} spanlist_t;

/* ---------------------------------------------------------- free spans */

/*
 * The free spans of an arena form a treap keyed by address, each node also
 * knowing the longest span in its subtree.  That gives, in O(log n):
 * the lowest-addressed span of at least n bytes (address-ordered first
 * fit, which fragments about as little as best fit), the neighbours of an
 * address (for coalescing), and the longest free span (the root's).  Nodes
 * live in one array and are named by index, -1 meaning none; unused nodes
 * are chained through `left`.
 */
typedef struct {
    Py_ssize_t start, stop;
    Py_ssize_t longest;         /* longest span in this subtree */
    Py_ssize_t left, right;
    uint32_t prio;
} fnode_t;

typedef struct {
    fnode_t *n;
    Py_ssize_t cap, count;      /* count: nodes in the tree */
    Py_ssize_t root, spare;
    uint32_t seed;
} ftree_t;

static void
ft_init(ftree_t *t)
{
    t->n = NULL;
    t->cap = t->count = 0;
    t->root = t->spare = -1;
    t->seed = 0x9e3779b9u;
}

/* Make sure `need` nodes exist; 0 or -1 (memory error set). */
static int
ft_reserve(ftree_t *t, Py_ssize_t need)
{
    if (need <= t->cap) {
        return 0;
    }
    Py_ssize_t cap = t->cap ? t->cap : 8;
    while (cap < need) {
        cap *= 2;
    }
    fnode_t *n = PyMem_Realloc(t->n, (size_t)cap * sizeof(fnode_t));
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = cap - 1; i >= t->cap; i--) {
        n[i].left = t->spare;
        t->spare = i;
    }
    t->n = n;
    t->cap = cap;
    return 0;
}

static inline Py_ssize_t
ft_longest(const ftree_t *t, Py_ssize_t i)
{
    return i < 0 ? 0 : t->n[i].longest;
}

static void
ft_fix(ftree_t *t, Py_ssize_t i)
{
    fnode_t *x = &t->n[i];
    Py_ssize_t m = x->stop - x->start;
    Py_ssize_t l = ft_longest(t, x->left), r = ft_longest(t, x->right);
    x->longest = m > l ? (m > r ? m : r) : (l > r ? l : r);
}

/* Split subtree `i` into spans starting before `key` and the rest. */
static void
ft_split(ftree_t *t, Py_ssize_t i, Py_ssize_t key,
         Py_ssize_t *lo, Py_ssize_t *hi)
{
    if (i < 0) {
        *lo = *hi = -1;
    }
    else if (t->n[i].start < key) {
        ft_split(t, t->n[i].right, key, &t->n[i].right, hi);
        ft_fix(t, i);
        *lo = i;
    }
    else {
        ft_split(t, t->n[i].left, key, lo, &t->n[i].left);
        ft_fix(t, i);
        *hi = i;
    }
}

/* Join two subtrees, every span of `a` lying before every span of `b`. */
static Py_ssize_t
ft_merge(ftree_t *t, Py_ssize_t a, Py_ssize_t b)
{
    if (a < 0) {
        return b;
    }
    if (b < 0) {
        return a;
    }
    if (t->n[a].prio > t->n[b].prio) {
        t->n[a].right = ft_merge(t, t->n[a].right, b);
        ft_fix(t, a);
        return a;
    }
    t->n[b].left = ft_merge(t, a, t->n[b].left);
    ft_fix(t, b);
    return b;
}

/* Add [start, stop) as a new node; a node must be spare (reserved). */
static void
ft_add(ftree_t *t, Py_ssize_t start, Py_ssize_t stop)
{
    Py_ssize_t i = t->spare, lo, hi;
    assert(i >= 0);
    t->spare = t->n[i].left;
    t->seed ^= t->seed << 13;
    t->seed ^= t->seed >> 17;
    t->seed ^= t->seed << 5;
    t->n[i].start = start;
    t->n[i].stop = stop;
    t->n[i].left = t->n[i].right = -1;
    t->n[i].prio = t->seed;
    ft_fix(t, i);
    ft_split(t, t->root, start, &lo, &hi);
    t->root = ft_merge(t, ft_merge(t, lo, i), hi);
    t->count++;
}

/* Remove the span starting at `start` (it must exist). */
static void
ft_remove(ftree_t *t, Py_ssize_t start)
{
    Py_ssize_t lo, mid, hi;
    ft_split(t, t->root, start, &lo, &hi);
    ft_split(t, hi, start + 1, &mid, &hi);
    assert(mid >= 0 && t->n[mid].left < 0 && t->n[mid].right < 0);
    t->n[mid].left = t->spare;
    t->spare = mid;
    t->root = ft_merge(t, lo, hi);
    t->count--;
}

/* The lowest-addressed span of at least `need` bytes, or -1. */
static Py_ssize_t
ft_first_fit(const ftree_t *t, Py_ssize_t need)
{
    Py_ssize_t i = t->root;
    if (ft_longest(t, i) < need) {
        return -1;
    }
    for (;;) {
        const fnode_t *x = &t->n[i];
        if (ft_longest(t, x->left) >= need) {
            i = x->left;
        }
        else if (x->stop - x->start >= need) {
            return i;
        }
        else {
            i = x->right;
        }
    }
}

/* The span with the greatest start below `key` (before = 1) or the least
 * start at or above it (before = 0); -1 if none. */
static Py_ssize_t
ft_neighbour(const ftree_t *t, Py_ssize_t key, int before)
{
    Py_ssize_t i = t->root, found = -1;
    while (i >= 0) {
        if ((t->n[i].start < key) == before) {
            found = i;
            i = before ? t->n[i].right : t->n[i].left;
        }
        else {
            i = before ? t->n[i].left : t->n[i].right;
        }
    }
    return found;
}

/* Copy the spans of subtree `i` into out[*k...], in address order.  Plain C
 * (no Python allocation, hence no garbage collection that could free a
 * block and reshape the tree meanwhile). */
static void
ft_copy(const ftree_t *t, Py_ssize_t i, span_t *out, Py_ssize_t *k)
{
    while (i >= 0) {
        ft_copy(t, t->n[i].left, out, k);
        out[*k].start = t->n[i].start;
        out[*k].stop = t->n[i].stop;
        (*k)++;
        i = t->n[i].right;
    }
}

typedef struct {
    PyObject_HEAD
    char *base;
    Py_ssize_t size;
    int fd;
    pid_t pid;                  /* creator; only it allocates */
    int foreign;                /* mapped from a received fd */
    spanlist_t used;            /* blocks handed out, by address */
    ftree_t free;               /* free spans, coalesced */
    Py_ssize_t dirty_end;       /* bytes from here on were never handed out */
    Py_ssize_t in_use;          /* bytes in used spans */
    unsigned long long n_allocs, n_frees;
    Py_ssize_t exports;
} ArenaObject;

typedef struct {
    PyObject_HEAD
    ArenaObject *arena;
    Py_ssize_t start, length, stop;     /* stop: end of the aligned span */
    pid_t owner;                        /* 0 when the span is not ours */
} BlockObject;

/* ---------------------------------------------------------------- spans */

/* Index of the first span whose start is >= `start`. */
static Py_ssize_t
spans_search(const spanlist_t *l, Py_ssize_t start)
{
    Py_ssize_t lo = 0, hi = l->len;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (l->items[mid].start < start) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* Make room for at least `need` spans; 0 or -1 (memory error set).
 * PyMem_Realloc never runs the garbage collector, so callers' state stays
 * consistent. */
static int
spans_reserve(spanlist_t *l, Py_ssize_t need)
{
    if (need <= l->cap) {
        return 0;
    }
    Py_ssize_t cap = l->cap ? l->cap : 8;
    while (cap < need) {
        cap *= 2;
    }
    span_t *items = PyMem_Realloc(l->items, (size_t)cap * sizeof(span_t));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    l->items = items;
    l->cap = cap;
    return 0;
}

static void
spans_insert_at(spanlist_t *l, Py_ssize_t i, span_t s)
{
    memmove(&l->items[i + 1], &l->items[i],
            (size_t)(l->len - i) * sizeof(span_t));
    l->items[i] = s;
    l->len++;
}

static void
spans_remove_at(spanlist_t *l, Py_ssize_t i)
{
    memmove(&l->items[i], &l->items[i + 1],
            (size_t)(l->len - i - 1) * sizeof(span_t));
    l->len--;
}

static PyObject *
spans_to_list(const span_t *items, Py_ssize_t len)
{
    PyObject *list = PyList_New(len);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *t = Py_BuildValue("(nn)", items[i].start, items[i].stop);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

/* Return [start, stop) to the free spans, merged with free neighbours.
 * Cannot fail: a merge frees nodes before the merged span takes one, and
 * without a merge the node comes from what arena_take() reserved. */
static void
arena_give_back(ArenaObject *a, Py_ssize_t start, Py_ssize_t stop)
{
    ftree_t *f = &a->free;
    Py_ssize_t prev = ft_neighbour(f, start, 1);
    Py_ssize_t next = ft_neighbour(f, start, 0);

    if (prev >= 0 && f->n[prev].stop == start) {
        start = f->n[prev].start;
        ft_remove(f, start);
    }
    if (next >= 0 && f->n[next].start == stop) {
        Py_ssize_t next_stop = f->n[next].stop;
        ft_remove(f, stop);
        stop = next_stop;
    }
    ft_add(f, start, stop);
}

/* Release the used span starting at `start`; returns 0, or -1 if there is
 * no such span (nothing changes then). */
static int
arena_release(ArenaObject *a, Py_ssize_t start)
{
    Py_ssize_t i = spans_search(&a->used, start);
    if (i >= a->used.len || a->used.items[i].start != start) {
        return -1;
    }
    Py_ssize_t stop = a->used.items[i].stop;
    spans_remove_at(&a->used, i);
    arena_give_back(a, start, stop);
    a->in_use -= stop - start;
    a->n_frees++;
    return 0;
}

/* Carve `need` (aligned) bytes from the lowest-addressed free span long
 * enough.  Returns the start, -1 when nothing fits, -2 on memory error
 * (exception set). */
static Py_ssize_t
arena_take(ArenaObject *a, Py_ssize_t need)
{
    ftree_t *f = &a->free;
    Py_ssize_t i = ft_first_fit(f, need);

    if (i < 0) {
        return -1;
    }
    /* Free spans are coalesced, so at least one used span lies between two
     * of them: there are never more than (used spans + 1).  Reserving that
     * many nodes (and a used slot) now means that giving any span back
     * later, in a deallocator where failing is not an option, never needs
     * memory. */
    if (spans_reserve(&a->used, a->used.len + 1) < 0 ||
        ft_reserve(f, a->used.len + 2) < 0) {
        return -2;
    }
    Py_ssize_t start = f->n[i].start, stop = f->n[i].stop;
    ft_remove(f, start);
    if (stop - start > need) {
        ft_add(f, start + need, stop);
    }
    span_t s = {start, start + need};
    spans_insert_at(&a->used, spans_search(&a->used, start), s);
    a->in_use += need;
    a->n_allocs++;
    return start;
}

/* ---------------------------------------------------------------- Arena */

static int
arena_open_fd(void)
{
    int fd = memfd_create("multiprocess-arena", MFD_CLOEXEC);
    if (fd >= 0 || errno != ENOSYS) {
        return fd;
    }
    /* Kernels without memfd: an anonymous file in /dev/shm. */
    char path[] = "/dev/shm/mp-arena-XXXXXX";
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        (void)unlink(path);
    }
    return fd;
}

static PyObject *
arena_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "fd", NULL};
    Py_ssize_t size;
    int fd = -1, err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|i:Arena", kwlist,
                                     &size, &fd)) {
        return NULL;
    }
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "arena size must be positive");
        return NULL;
    }
    ArenaObject *self = (ArenaObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->fd = -1;
    self->base = MAP_FAILED;
    ft_init(&self->free);
    self->size = size;
    self->pid = getpid();
    if (fd >= 0) {
        self->fd = fd;          /* adopted even if mapping fails */
        self->foreign = 1;
    }
    else {
        self->fd = arena_open_fd();
        if (self->fd < 0) {
            err = errno;
            goto error;
        }
        while (ftruncate(self->fd, (off_t)size) < 0) {
            err = errno;
            if (err != EINTR) {
                goto error;
            }
            if (PyErr_CheckSignals() < 0) {
                Py_DECREF(self);
                return NULL;
            }
        }
    }
    self->base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                      MAP_SHARED, self->fd, 0);
    if (self->base == MAP_FAILED) {
        err = errno;
        goto error;
    }
    if (!self->foreign) {
        if (ft_reserve(&self->free, 2) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        ft_add(&self->free, 0, size);
    }
    return (PyObject *)self;

error:
    Py_DECREF(self);
    return mp_raise_errno(err);
}

static void
arena_dealloc(PyObject *op)
{
    ArenaObject *self = (ArenaObject *)op;
    PyTypeObject *tp = Py_TYPE(op);

    if (self->base != MAP_FAILED && self->base != NULL) {
        (void)munmap(self->base, (size_t)self->size);
    }
    if (self->fd >= 0) {
        (void)close(self->fd);
    }
    PyMem_Free(self->used.items);
    PyMem_Free(self->free.n);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
arena_alloc(PyObject *op, PyObject *arg)
{
    ArenaObject *self = (ArenaObject *)op;
    Py_ssize_t length = PyNumber_AsSsize_t(arg, PyExc_OverflowError);

    if (length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "block size must not be negative");
        return NULL;
    }
    if (self->foreign || self->pid != getpid()) {
        Py_RETURN_NONE;         /* not this process's arena to carve */
    }
    if (length > self->size) {
        Py_RETURN_NONE;
    }
    Py_ssize_t need = length ? length : 1;
    need = (need + ARENA_ALIGN - 1) & ~(Py_ssize_t)(ARENA_ALIGN - 1);

    mp_state *st = mp_state_from_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    /* Create the block object first: allocating it may run the garbage
     * collector, which may free other blocks of this arena. */
    BlockObject *b = PyObject_New(BlockObject, st->arena_block_type);
    if (b == NULL) {
        return NULL;
    }
    b->arena = NULL;
    b->owner = 0;
    b->start = b->length = b->stop = 0;

    Py_ssize_t start = arena_take(self, need);
    if (start < 0) {
        Py_DECREF(b);
        if (start == -2) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    /* Bytes below dirty_end may hold a previous block's data. */
    if (start < self->dirty_end) {
        Py_ssize_t end = start + need < self->dirty_end ? start + need
                                                        : self->dirty_end;
        memset(self->base + start, 0, (size_t)(end - start));
    }
    if (start + need > self->dirty_end) {
        self->dirty_end = start + need;
    }
    Py_INCREF(self);
    b->arena = self;
    b->start = start;
    b->length = length;
    b->stop = start + need;
    b->owner = self->pid;
    return (PyObject *)b;
}

static PyObject *
arena_spans(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ArenaObject *self = (ArenaObject *)op;
    PyObject *used = NULL, *free = NULL, *res = NULL;

    /* Snapshot both sets first: building the lists allocates Python
     * objects, which may run the garbage collector, which may free blocks
     * of this very arena. */
    Py_ssize_t nused = self->used.len, nfree = self->free.count, k = 0;
    span_t *snap = PyMem_Malloc((size_t)(nused + nfree + 1) * sizeof(span_t));
    if (snap == NULL) {
        return PyErr_NoMemory();
    }
    if (nused > 0) {
        memcpy(snap, self->used.items, (size_t)nused * sizeof(span_t));
    }
    ft_copy(&self->free, self->free.root, snap + nused, &k);
    used = spans_to_list(snap, nused);
    if (used != NULL) {
        free = spans_to_list(snap + nused, k);
    }
    if (free != NULL) {
        res = PyTuple_Pack(2, used, free);
    }
    PyMem_Free(snap);
    Py_XDECREF(used);
    Py_XDECREF(free);
    return res;
}

static int
arena_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    ArenaObject *self = (ArenaObject *)op;
    if (PyBuffer_FillInfo(view, op, self->base, self->size, 0, flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void
arena_releasebuffer(PyObject *op, Py_buffer *Py_UNUSED(view))
{
    ((ArenaObject *)op)->exports--;
}

static PyObject *
arena_repr(PyObject *op)
{
    ArenaObject *self = (ArenaObject *)op;
    return PyUnicode_FromFormat("<Arena size=%zd fd=%d blocks=%zd%s>",
                                self->size, self->fd, self->used.len,
                                self->foreign ? " foreign" : "");
}

#define ARENA_GETTER(name, expr)                                           \
    static PyObject *                                                      \
    arena_get_##name(PyObject *op, void *Py_UNUSED(closure))               \
    {                                                                      \
        ArenaObject *self = (ArenaObject *)op;                             \
        return expr;                                                       \
    }

ARENA_GETTER(size, PyLong_FromSsize_t(self->size))
ARENA_GETTER(fd, PyLong_FromLong(self->fd))
ARENA_GETTER(pid, PyLong_FromLong((long)self->pid))
ARENA_GETTER(nblocks, PyLong_FromSsize_t(self->used.len))
ARENA_GETTER(in_use, PyLong_FromSsize_t(self->in_use))
ARENA_GETTER(n_allocs, PyLong_FromUnsignedLongLong(self->n_allocs))
ARENA_GETTER(n_frees, PyLong_FromUnsignedLongLong(self->n_frees))
ARENA_GETTER(foreign, PyBool_FromLong(self->foreign))

static PyGetSetDef arena_getset[] = {
    {"size", arena_get_size, NULL, "Length of the mapping in bytes.", NULL},
    {"fd", arena_get_fd, NULL, "Descriptor backing the mapping.", NULL},
    {"pid", arena_get_pid, NULL, "Process that created the arena.", NULL},
    {"nblocks", arena_get_nblocks, NULL, "Blocks currently handed out.",
     NULL},
    {"in_use", arena_get_in_use, NULL, "Bytes in blocks handed out.", NULL},
    {"n_allocs", arena_get_n_allocs, NULL, "Blocks handed out so far.",
     NULL},
    {"n_frees", arena_get_n_frees, NULL, "Blocks given back so far.", NULL},
    {"foreign", arena_get_foreign, NULL,
     "True for an arena mapped from a received descriptor.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef arena_methods[] = {
    {"alloc", arena_alloc, METH_O,
     "alloc($self, size, /)\n--\n\n"
     "A zero-filled Block of `size` bytes, or None if no free span fits."},
    {"spans", arena_spans, METH_NOARGS,
     "spans($self, /)\n--\n\n"
     "(used, free): lists of (start, stop) pairs in address order."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot arena_slots[] = {
    {Py_tp_new, arena_new},
    {Py_tp_dealloc, arena_dealloc},
    {Py_tp_repr, arena_repr},
    {Py_tp_methods, arena_methods},
    {Py_tp_getset, arena_getset},
    {Py_bf_getbuffer, arena_getbuffer},
    {Py_bf_releasebuffer, arena_releasebuffer},
    {Py_tp_doc, "Arena(size, fd=-1)\n--\n\n"
                "A shared mapping of `size` bytes that blocks are carved "
                "from."},
    {0, NULL},
};

static PyType_Spec arena_spec = {
    .name = "_multiprocess.Arena",
    .basicsize = sizeof(ArenaObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = arena_slots,
};

/* ---------------------------------------------------------------- Block */

static PyObject *
block_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"arena", "start", "size", NULL};
    PyObject *arena;
    Py_ssize_t start, length;

    mp_state *st = mp_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!nn:Block", kwlist,
                                     st->arena_type, &arena, &start,
                                     &length)) {
        return NULL;
    }
    ArenaObject *a = (ArenaObject *)arena;
    if (start < 0 || length < 0 || start > a->size - length) {
        PyErr_SetString(PyExc_ValueError, "block lies outside its arena");
        return NULL;
    }
    BlockObject *self = (BlockObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(arena);
    self->arena = a;
    self->start = start;
    self->length = length;
    self->stop = start + length;
    self->owner = 0;
    return (PyObject *)self;
}

static void
block_dealloc(PyObject *op)
{
    BlockObject *self = (BlockObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    ArenaObject *a = self->arena;

    if (a != NULL) {
        /* In a forked child the inherited block belongs to the parent's
         * allocator: leave the child's copy of that bookkeeping alone. */
        if (self->owner != 0 && self->owner == getpid()) {
            (void)arena_release(a, self->start);
        }
        Py_DECREF(a);
    }
    PyObject_Free(op);
    Py_DECREF(tp);
}

static int
block_getbuffer(PyObject *op, Py_buffer *view, int flags)
{
    BlockObject *self = (BlockObject *)op;
    return PyBuffer_FillInfo(view, op, self->arena->base + self->start,
                             self->length, 0, flags);
}

static PyObject *
block_repr(PyObject *op)
{
    BlockObject *self = (BlockObject *)op;
    return PyUnicode_FromFormat("<Block %zd bytes at %zd of %R>",
                                self->length, self->start,
                                (PyObject *)self->arena);
}

static PyObject *
block_get_arena(PyObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef((PyObject *)((BlockObject *)op)->arena);
}

static PyObject *
block_get_start(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((BlockObject *)op)->start);
}

static PyObject *
block_get_stop(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((BlockObject *)op)->stop);
}

static PyObject *
block_get_size(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((BlockObject *)op)->length);
}

static PyObject *
block_get_owned(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((BlockObject *)op)->owner != 0);
}

static PyGetSetDef block_getset[] = {
    {"arena", block_get_arena, NULL, "The arena the block lies in.", NULL},
    {"start", block_get_start, NULL, "Offset of the block.", NULL},
    {"stop", block_get_stop, NULL,
     "End of the span reserved for the block (aligned).", NULL},
    {"size", block_get_size, NULL, "Usable bytes.", NULL},
    {"owned", block_get_owned, NULL,
     "True if the span returns to the arena when the block dies.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot block_slots[] = {
    {Py_tp_new, block_new},
    {Py_tp_dealloc, block_dealloc},
    {Py_tp_repr, block_repr},
    {Py_tp_getset, block_getset},
    {Py_bf_getbuffer, block_getbuffer},
    {Py_tp_doc, "Block(arena, start, size)\n--\n\n"
                "A view of `size` bytes of `arena` from `start`; blocks "
                "made by Arena.alloc() free their span when they die."},
    {0, NULL},
};

static PyType_Spec block_spec = {
    .name = "_multiprocess.Block",
    .basicsize = sizeof(BlockObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = block_slots,
};

/* ---------------------------------------------------------------- init */

int
mp_arena_exec(PyObject *module)
{
    mp_state *st = mp_get_state(module);

    st->arena_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &arena_spec, NULL);
    if (st->arena_type == NULL) {
        return -1;
    }
    st->arena_block_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &block_spec, NULL);
    if (st->arena_block_type == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->arena_type) < 0 ||
        PyModule_AddType(module, st->arena_block_type) < 0 ||
        PyModule_AddIntConstant(module, "ARENA_ALIGNMENT", ARENA_ALIGN) < 0) {
        return -1;
    }
    return 0;
}
