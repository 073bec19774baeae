/*
 * frameio.c -- framed messages on file descriptors, the mechanics under
 * multiprocess.connection.Connection (waiting is spinwait.c's, the
 * Endpoint type endpoint.c's).
 *
 * A frame is a 4-byte big-endian signed length and the payload; a payload
 * over 0x7fffffff bytes is announced by the length -1 and an 8-byte
 * big-endian unsigned length.  This is the standard library's wire format,
 * so their Connection and ours can share one pipe or socket.
 *
 * The functions are stateless (nothing is buffered between calls): several
 * processes may take turns reading one pipe under a lock, and a byte read
 * past the current frame would be lost to them.
 *
 * GIL policy.  In a process with other Python threads, giving the GIL
 * away and taking it back can cost a whole switch interval, so there bytes
 * that FIONREAD says are already waiting are read with the GIL held (such
 * a read cannot block as long as readers of one fd take turns, which the
 * framing requires anyway) and the GIL is released only to wait.  In a
 * single-threaded process releasing the GIL is nearly free and the probe
 * would be a wasted syscall, so it is skipped.  A frame is read with at
 * most one GIL release in the common case (header and a small payload
 * together); results are allocated once, at their final size.
 *
 * Per small message: writev on one side; read(header) and read(payload)
 * on the other -- the least a stateless reader can do.
 *
 * Python-visible API: see docs/architecture.md, "frameio.c".
 */
#include "multiprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

/* Linux moves at most this much in one read/write call. */
#define MP_IO_MAX ((size_t)0x7ffff000)

#define MP_SHORT_FRAME_MAX 0x7fffffffLL

/* What stops the GIL-free I/O loops; the caller decides what it means. */
typedef struct {
    size_t done;    /* bytes moved */
    int err;        /* 0: finished or end of file; else errno */
} io_status;


/*
 * Spinning before a blocking receive.  On a VM, waking a process that
 * sleeps on another CPU costs tens of microseconds, several times the
 * cost of the message itself; a receiver still awake when the message
 * lands pays nothing of it.  So a receive that finds nothing waiting
 * first polls for up to `recv_spin_ns` -- but only on an fd whose previous
 * message came within that time (a conversation in full swing).  Any
 * longer wait marks the fd cold: it then blocks at once, until a message
 * again arrives within the spin time of the receive starting.  The cost
 * is bounded by one spin per change of pace, never per idle receive.
 *
 * The marks are per fd number and process-wide, like fds themselves; a
 * reused number inherits a stale mark, which one receive corrects.  Fds
 * beyond the table never spin.  Racing updates of a mark are harmless.
 * The time is set by the Python layer (set_recv_spin); 0 turns it off.
 */
#define MP_SPIN_TRACKED_FDS 4096
static long recv_spin_ns;
static unsigned char fd_cold[MP_SPIN_TRACKED_FDS];

/* ------------------------------------------------------------------ */
/* reading                                                               */

/*
 * Payloads up to this size are read into a stack buffer in the same GIL
 * release as their header, then copied once into the result: that saves a
 * GIL round trip per message, which is worth far more than the memcpy.
 */
#define MP_SMALL_FRAME 4096

/* One frame being read.  The state survives interruptions (EINTR, running
 * out of known-ready bytes) so reading resumes exactly where it stopped. */
typedef struct {
    int fd;
    unsigned char hdr[12];
    size_t hdr_need;        /* 4, or 12 once the -1 marker was seen */
    size_t hdr_got;
    uint64_t size;          /* payload length, once the header is in */
    char *dest;             /* where the payload goes; NULL: not chosen */
    uint64_t dest_cap;
    uint64_t got;           /* payload bytes read */
    size_t ready;           /* bytes known to be waiting (FIONREAD) */
    int err;                /* errno of the last FR_ERROR */
    int spun;               /* the spin before this frame is over */
    int growing;            /* dest may be shorter than the payload: fill
                             * it, then FR_NEED_DEST asks for more room */
    double wait_start;      /* when waiting for this frame began */
} frame_reader;

enum {
    FR_DONE,                /* header and payload are in */
    FR_NEED_DEST,           /* header is in; payload does not fit dest */
    FR_NO_MORE_READY,       /* used up the bytes known to be waiting */
    FR_EOF,
    FR_ERROR,               /* see r->err */
    FR_CORRUPT,             /* negative length other than -1 */
    FR_SPUN_OUT,            /* a spin ended with nothing to read */
};

static void
reader_init(frame_reader *r, int fd, char *dest, uint64_t cap)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->hdr_need = 4;
    r->dest = dest;
    r->dest_cap = cap;
}

/* Bytes waiting in the pipe/socket; 0 when unknown (not supported). */
static size_t
bytes_waiting(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) < 0 || n < 0) {
        return 0;
    }
    return (size_t)n;
}

/* One read() of at most `want` bytes, within the budget of ready bytes
 * when `limited`.  Returns >0, or an FR_* code negated. */
static ssize_t
reader_read(frame_reader *r, char *buf, uint64_t want, int limited)
{
    if (limited) {
        if (r->ready == 0) {
            return -FR_NO_MORE_READY;
        }
        if (want > r->ready) {
            want = r->ready;
        }
    }
    if (want > MP_IO_MAX) {
        want = MP_IO_MAX;
    }
    for (;;) {
        ssize_t n = read(r->fd, buf, (size_t)want);
        if (n > 0) {
            r->ready = (size_t)n < r->ready ? r->ready - (size_t)n : 0;
            return n;
        }
        if (n == 0) {
            return -FR_EOF;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (limited) {
                /* the bytes we counted on are gone: go and wait */
                r->ready = 0;
                return -FR_NO_MORE_READY;
            }
            /* a non-blocking fd: wait here rather than fail */
            if (mp_await_fd(r->fd, POLLIN) == 0) {
                continue;
            }
        }
        r->err = errno;
        return -FR_ERROR;
    }
}

/* Called when hdr_need bytes are in: sets r->size, or asks for the 8-byte
 * length of a long frame by raising hdr_need.  -1 on a corrupt length. */
static int
decode_header(frame_reader *r)
{
    const unsigned char *h = r->hdr;
    if (r->hdr_need == 4) {
        int32_t len = (int32_t)(((uint32_t)h[0] << 24) |
                                ((uint32_t)h[1] << 16) |
                                ((uint32_t)h[2] << 8) | h[3]);
        if (len == -1) {
            r->hdr_need = 12;
            return 0;
        }
        if (len < 0) {
            return -1;
        }
        r->size = (uint64_t)len;
        return 0;
    }
    r->size = 0;
    for (int i = 4; i < 12; i++) {
        r->size = (r->size << 8) | h[i];
    }
    return 0;
}

/*
 * Move the frame along as far as possible.  `limited`: only consume the
 * r->ready bytes known to be waiting (the GIL is held, so no blocking);
 * otherwise block as needed (the GIL is released).  Returns an FR_* code.
 */
static int
reader_step(frame_reader *r, int limited)
{
    ssize_t n;

    while (r->hdr_got < r->hdr_need) {
        n = reader_read(r, (char *)r->hdr + r->hdr_got,
                        r->hdr_need - r->hdr_got, limited);
        if (n < 0) {
            return (int)-n;
        }
        r->hdr_got += (size_t)n;
        if (r->hdr_got == r->hdr_need && decode_header(r) < 0) {
            return FR_CORRUPT;
        }
    }
    if (r->dest == NULL || (r->size > r->dest_cap && !r->growing)) {
        return FR_NEED_DEST;
    }
    while (r->got < r->size) {
        uint64_t end = r->size < r->dest_cap ? r->size : r->dest_cap;
        if (r->got == end) {
            return FR_NEED_DEST;
        }
        n = reader_read(r, r->dest + r->got, end - r->got, limited);
        if (n < 0) {
            return (int)-n;
        }
        r->got += (uint64_t)n;
    }
    return FR_DONE;
}

/*
 * Without the GIL: reader_step for a frame not yet begun, so that it may
 * have to wait for the peer.  On a warm fd (see recv_spin_ns) it spins
 * first; a spin that finds nothing returns FR_SPUN_OUT, so that the caller
 * runs signal handlers (a signal that lands during a spin interrupts no
 * system call) before it comes back here to block.
 */
static int
reader_await_frame(frame_reader *r)
{
    long spin_ns = __atomic_load_n(&recv_spin_ns, __ATOMIC_RELAXED);
    if (spin_ns <= 0 || r->fd < 0 || r->fd >= MP_SPIN_TRACKED_FDS) {
        return reader_step(r, 0);
    }
    const double spin = spin_ns * 1e-9;
    unsigned char *cold = &fd_cold[r->fd];
    if (!r->spun) {
        r->spun = 1;
        r->wait_start = mp_monotonic();
        if (!__atomic_load_n(cold, __ATOMIC_RELAXED) &&
            mp_spin_worthwhile()) {
            struct pollfd pf = {.fd = r->fd, .events = POLLIN, .revents = 0};
            if (mp_spin_poll(&pf, 1, spin) > 0) {
                return reader_step(r, 0);
            }
            /* nothing yet, a signal, or a poll error read() will report */
            return FR_SPUN_OUT;
        }
    }
    int rc = reader_step(r, 0);
    __atomic_store_n(cold,
                     (unsigned char)(mp_monotonic() - r->wait_start > spin),
                     __ATOMIC_RELAXED);
    return rc;
}

/*
 * Drive the reader with the GIL held, releasing it only to wait.  Returns
 * FR_DONE or FR_NEED_DEST, or -1 with EOFError (nothing of the frame was
 * there) or OSError set.
 */
static int
reader_pump(frame_reader *r)
{
    int rc;

    for (;;) {
        if (r->ready == 0 && mp_other_threads_exist()) {
            r->ready = bytes_waiting(r->fd);
        }
        if (r->ready > 0) {
            rc = reader_step(r, 1);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            rc = r->hdr_got == 0 ? reader_await_frame(r) : reader_step(r, 0);
            Py_END_ALLOW_THREADS
        }
        switch (rc) {
        case FR_DONE:
        case FR_NEED_DEST:
            return rc;
        case FR_NO_MORE_READY:
            continue;
        case FR_SPUN_OUT:
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        case FR_EOF:
            if (r->hdr_got == 0) {
                PyErr_SetNone(PyExc_EOFError);
            }
            else {
                PyErr_SetString(PyExc_OSError,
                                "got end of file during message");
            }
            return -1;
        case FR_CORRUPT:
            PyErr_SetString(PyExc_OSError,
                            "bad message length in frame header");
            return -1;
        default:
            if (r->err != EINTR) {
                mp_raise_errno(r->err);
                return -1;
            }
            /* Run signal handlers (Ctrl-C raises), then carry on. */
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
        }
    }
}

/*
 * A payload up to this size gets its whole buffer at once.  A longer one
 * starts with this much and the buffer doubles as the bytes come in: the
 * length is the peer's word, and a lying or truncated peer must cost us
 * what it sent, not what it claimed.  Growing costs little (realloc of a
 * block this large moves page mappings, not bytes).
 */
#define MP_ALLOC_AHEAD_MAX ((uint64_t)8 << 20)

/*
 * Received payloads of this size range are read into the bytes object that
 * held the last one, once nobody else holds it (the Queue's get() and
 * Connection.recv() drop theirs after unpickling).  A fresh buffer of a
 * megabyte is a fresh mapping from malloc more often than not, and
 * faulting its pages in cost about as much as the whole transfer
 * otherwise; a reused one is already in memory.  At most one such buffer
 * stays alive per interpreter.
 */
#define MP_RECV_KEEP_MIN ((uint64_t)128 << 10)
#define MP_RECV_KEEP_MAX MP_ALLOC_AHEAD_MAX

/* The kept buffer resized to `size`, as a new reference; NULL (and no
 * exception) when there is none fit for it. */
static PyObject *
take_kept(mp_state *st, uint64_t size)
{
    PyObject *kept = st != NULL ? st->recv_kept : NULL;
    if (kept == NULL || Py_REFCNT(kept) != 1 ||
        size < MP_RECV_KEEP_MIN || size > MP_RECV_KEEP_MAX) {
        return NULL;
    }
    uint64_t have = (uint64_t)PyBytes_GET_SIZE(kept);
    if (have < size / 2 || have > size * 2) {
        return NULL;
    }
    st->recv_kept = NULL;
    /* A resize to another size forgets a hash computed while it was
     * somebody's result; to the same size it would not, so step one byte
     * down first (shrinking never moves a block, nor does growing it back
     * by that byte). */
    if ((have == size && _PyBytes_Resize(&kept, (Py_ssize_t)size - 1) < 0)
        || _PyBytes_Resize(&kept, (Py_ssize_t)size) < 0) {
        PyErr_Clear();          /* (the failed resize freed it) */
        return NULL;
    }
    return kept;
}

/* Finish reading a frame whose payload did not fit: into a new bytes (or
 * the kept one, see MP_RECV_KEEP_MIN). */
static PyObject *
reader_finish_as_bytes(frame_reader *r, mp_state *st)
{
    if (r->size > (uint64_t)PY_SSIZE_T_MAX) {
        return PyErr_NoMemory();
    }
    uint64_t cap = r->size < MP_ALLOC_AHEAD_MAX ? r->size : MP_ALLOC_AHEAD_MAX;
    PyObject *data = take_kept(st, r->size);
    if (data == NULL) {
        data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
        if (data == NULL) {
            return NULL;
        }
    }
    r->dest = PyBytes_AS_STRING(data);
    r->dest_cap = cap;
    r->got = 0;
    r->growing = 1;
    for (;;) {
        int rc = reader_pump(r);
        if (rc == FR_DONE) {
            break;
        }
        if (rc < 0) {
            Py_DECREF(data);
            return NULL;
        }
        /* FR_NEED_DEST: the buffer is full and more is coming */
        cap = r->dest_cap * 2 < r->size ? r->dest_cap * 2 : r->size;
        if (_PyBytes_Resize(&data, (Py_ssize_t)cap) < 0) {
            return NULL;
        }
        r->dest = PyBytes_AS_STRING(data);
        r->dest_cap = cap;
    }
    if (st != NULL && r->size >= MP_RECV_KEEP_MIN &&
        r->size <= MP_RECV_KEEP_MAX) {
        Py_XSETREF(st->recv_kept, Py_NewRef(data));
    }
    return data;
}

PyDoc_STRVAR(recv_bytes_doc,
"recv_bytes($module, fd, maxlength=-1, /)\n--\n\n"
"Read one message from fd and return it as bytes.  If maxlength >= 0 and\n"
"the message is longer, return None and leave its payload unread.\n"
"EOFError if the peer closed before a message began, OSError if it\n"
"closed in the middle of one.");

/* One whole frame from fd as bytes; None when maxlength >= 0 and the
 * frame is longer (its payload is left unread); NULL with an exception. */
PyObject *
mp_read_frame(mp_state *st, int fd, long long maxlength)
{
    char small[MP_SMALL_FRAME];
    frame_reader r;

    uint64_t cap = MP_SMALL_FRAME;
    if (maxlength >= 0 && (uint64_t)maxlength < cap) {
        cap = (uint64_t)maxlength;
    }
    reader_init(&r, fd, small, cap);
    int rc = reader_pump(&r);
    if (rc < 0) {
        return NULL;
    }
    if (rc == FR_DONE) {
        return PyBytes_FromStringAndSize(small, (Py_ssize_t)r.size);
    }
    if (maxlength >= 0 && r.size > (uint64_t)maxlength) {
        Py_RETURN_NONE;
    }
    return reader_finish_as_bytes(&r, st);
}

static PyObject *
mp_recv_bytes(PyObject *module, PyObject *const *args,
              Py_ssize_t nargs)
{
    int fd;
    long long maxlength = -1;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "recv_bytes expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (!mp_fd_converter(args[0], &fd)) {
        return NULL;
    }
    if (nargs == 2 && args[1] != Py_None) {
        maxlength = PyLong_AsLongLong(args[1]);
        if (maxlength == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return mp_read_frame(mp_get_state(module), fd, maxlength);
}

PyDoc_STRVAR(recv_bytes_into_doc,
"recv_bytes_into($module, fd, buffer, offset, /)\n--\n\n"
"Read one message from fd into the writable buffer at byte offset and\n"
"return its length.  If it does not fit, return the whole message as\n"
"bytes instead (the buffer is left untouched).");

static PyObject *
mp_recv_bytes_into(PyObject *module, PyObject *const *args,
                   Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t offset;
    Py_buffer view;
    frame_reader r;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "recv_bytes_into expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    if (!mp_fd_converter(args[0], &fd)) {
        return NULL;
    }
    offset = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset");
        goto done;
    }
    if (offset > view.len) {
        PyErr_SetString(PyExc_ValueError, "offset too large");
        goto done;
    }

    /* Straight into the caller's buffer when it fits; the buffer export
     * keeps a bytearray from being resized while the GIL is released. */
    reader_init(&r, fd, (char *)view.buf + offset,
                (uint64_t)(view.len - offset));
    int rc = reader_pump(&r);
    if (rc == FR_DONE) {
        result = PyLong_FromUnsignedLongLong(r.size);
    }
    else if (rc == FR_NEED_DEST) {
        result = reader_finish_as_bytes(&r, mp_get_state(module));
    }

done:
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------ */
/* writing                                                               */

/* Drop `n` written bytes from the front of an iovec array. */
static void
iov_consume(struct iovec **iov, int *cnt, size_t n)
{
    while (*cnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*cnt)--;
    }
    if (*cnt > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/* No GIL needed: write out all of iov[0..*cnt), advancing it. */
static io_status
write_nogil(int fd, struct iovec **iov, int *cnt)
{
    io_status st = {0, 0};
    while (*cnt > 0) {
        int batch = *cnt < IOV_MAX ? *cnt : IOV_MAX;
        size_t left = 0;
        for (int i = 0; i < batch; i++) {
            left += (*iov)[i].iov_len;
        }
        ssize_t n = batch == 1 ? write(fd, (*iov)->iov_base, (*iov)->iov_len)
                               : writev(fd, *iov, batch);
        if (n >= 0) {
            st.done += (size_t)n;
            iov_consume(iov, cnt, (size_t)n);
            /* A blocking fd writes short only when a signal arrived after
             * some bytes went out (no EINTR then): report it as EINTR so
             * the handler runs now, not when the peer drains the rest. */
            if ((size_t)n < left && *cnt > 0 && left <= MP_IO_MAX) {
                st.err = EINTR;
                break;
            }
            continue;
        }
        if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
            mp_await_fd(fd, POLLOUT) == 0) {
            continue;
        }
        st.err = errno;
        break;
    }
    return st;
}

/* Fill hdr with the frame header for a `len`-byte payload; its size. */
static size_t
encode_header(unsigned char *hdr, uint64_t len)
{
    if (len <= (uint64_t)MP_SHORT_FRAME_MAX) {
        for (int i = 0; i < 4; i++) {
            hdr[i] = (unsigned char)(len >> (24 - 8 * i));
        }
        return 4;
    }
    memset(hdr, 0xff, 4);
    for (int i = 0; i < 8; i++) {
        hdr[4 + i] = (unsigned char)(len >> (56 - 8 * i));
    }
    return 12;
}

/* Frames up to this size (header included) are written from one copy. */
#define MP_COALESCE_MAX 8192

/* Payload pieces of one frame: the buffers of `count` objects, sent back
 * to back as one payload without joining them first. */
#define MP_INLINE_PIECES 8

typedef struct {
    Py_ssize_t n;               /* buffers held in views[0..n) */
    Py_buffer *views;
    struct iovec *iov;          /* iov[0] is the header */
    Py_buffer views_inline[MP_INLINE_PIECES];
    struct iovec iov_inline[MP_INLINE_PIECES + 1];
    uint64_t total;
} payload_pieces;

static void
pieces_release(payload_pieces *p)
{
    for (Py_ssize_t i = 0; i < p->n; i++) {
        PyBuffer_Release(&p->views[i]);
    }
    if (p->views != p->views_inline) {
        PyMem_Free(p->views);
    }
    if (p->iov != p->iov_inline) {
        PyMem_Free(p->iov);
    }
}

/* 0, or -1 with an exception (and everything already released).  The
 * caller keeps items[] from changing until the pieces are released. */
static int
pieces_collect(payload_pieces *p, PyObject *const *items, Py_ssize_t count)
{
    p->n = 0;
    p->total = 0;
    p->views = p->views_inline;
    p->iov = p->iov_inline;
    if (count > INT_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many pieces");
        return -1;
    }
    if (count > MP_INLINE_PIECES) {
        p->views = PyMem_New(Py_buffer, count);
        p->iov = PyMem_New(struct iovec, count + 1);
        if (p->views == NULL || p->iov == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyObject_GetBuffer(items[i], &p->views[i], PyBUF_SIMPLE) < 0) {
            goto error;
        }
        p->n++;
        p->iov[i + 1].iov_base = p->views[i].buf;
        p->iov[i + 1].iov_len = (size_t)p->views[i].len;
        p->total += (uint64_t)p->views[i].len;
    }
    return 0;

error:
    pieces_release(p);
    return -1;
}

/* Write the buffers items[0..count) to fd as ONE frame.  0, or -1 with an
 * exception; nothing is written when a piece is not a buffer. */
int
mp_write_frame(int fd, PyObject *const *items, Py_ssize_t count)
{
    payload_pieces pieces;
    unsigned char hdr[12];
    char joined[MP_COALESCE_MAX];
    struct iovec *iov, whole;
    int cnt, rc = -1;
    io_status st;

    if (pieces_collect(&pieces, items, count) < 0) {
        return -1;
    }
    iov = pieces.iov;
    cnt = (int)pieces.n + 1;
    iov[0].iov_base = hdr;
    iov[0].iov_len = encode_header(hdr, pieces.total);
    /* A small frame is copied together and goes out with write(): writev
     * costs measurably more per call than the copy (0.2-0.6 us on a VM). */
    if (pieces.total + iov[0].iov_len <= MP_COALESCE_MAX) {
        size_t at = 0;
        for (int i = 0; i < cnt; i++) {
            memcpy(joined + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        whole.iov_base = joined;
        whole.iov_len = at;
        iov = &whole;
        cnt = 1;
    }

    /* One writev for header and payload: one syscall, no copy, and a small
     * frame on a pipe goes in atomically. */
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        st = write_nogil(fd, &iov, &cnt);
        Py_END_ALLOW_THREADS
        if (st.err == 0) {
            break;
        }
        if (st.err != EINTR) {
            mp_raise_errno(st.err);
            goto done;
        }
        if (PyErr_CheckSignals() < 0) {
            goto done;
        }
    }
    rc = 0;

done:
    pieces_release(&pieces);
    return rc;
}

static PyObject *
send_frame(PyObject *const *args, Py_ssize_t nargs, int gather)
{
    int fd, rc;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s expected 2 arguments, got %zd",
                     gather ? "_test_send_pieces" : "send_bytes", nargs);
        return NULL;
    }
    if (!mp_fd_converter(args[0], &fd)) {
        return NULL;
    }
    if (!gather) {
        rc = mp_write_frame(fd, &args[1], 1);
    }
    else {
        PyObject *data = args[1];
        if (!PyList_Check(data) && !PyTuple_Check(data)) {
            PyErr_Format(PyExc_TypeError,
                         "_test_send_pieces() needs a list or tuple, not %.100s",
                         Py_TYPE(data)->tp_name);
            return NULL;
        }
        /* A tuple snapshot: taking a buffer may run code that changes a
         * caller's list under us. */
        PyObject *snap = PyList_Check(data) ? PyList_AsTuple(data)
                                            : Py_NewRef(data);
        if (snap == NULL) {
            return NULL;
        }
        rc = mp_write_frame(fd, &PyTuple_GET_ITEM(snap, 0),
                         PyTuple_GET_SIZE(snap));
        Py_DECREF(snap);
    }
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(send_bytes_doc,
"send_bytes($module, fd, data, /)\n--\n\n"
"Write the buffer data to fd as one message (header and payload).");

static PyObject *
mp_send_bytes(PyObject *Py_UNUSED(module), PyObject *const *args,
              Py_ssize_t nargs)
{
    return send_frame(args, nargs, 0);
}

PyDoc_STRVAR(send_pieces_doc,
"_test_send_pieces($module, fd, pieces, /)\n--\n\n"
"Write the buffers of the list or tuple pieces to fd as ONE message,\n"
"as if joined, but without copying them into one buffer first (e.g. a\n"
"pickler's output chunks).");

static PyObject *
mp_send_pieces(PyObject *Py_UNUSED(module), PyObject *const *args,
               Py_ssize_t nargs)
{
    return send_frame(args, nargs, 1);
}

PyDoc_STRVAR(set_recv_spin_doc,
"set_recv_spin($module, seconds, /)\n--\n\n"
"How long a receive on a busy fd polls before it sleeps (process-wide;\n"
"0 never spins).  Returns the previous setting.");

static PyObject *
mp_set_recv_spin(PyObject *Py_UNUSED(module), PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(seconds >= 0.0 && seconds <= 1.0)) {
        PyErr_SetString(PyExc_ValueError,
                        "spin time must be between 0 and 1 second");
        return NULL;
    }
    long old = __atomic_exchange_n(&recv_spin_ns, (long)(seconds * 1e9),
                                   __ATOMIC_RELAXED);
    return PyFloat_FromDouble(old * 1e-9);
}

static PyMethodDef frameio_functions[] = {
    {"set_recv_spin", (PyCFunction)mp_set_recv_spin, METH_O,
     set_recv_spin_doc},
    {"send_bytes", (PyCFunction)(void (*)(void))mp_send_bytes, METH_FASTCALL,
     send_bytes_doc},
    {"_test_send_pieces", (PyCFunction)(void (*)(void))mp_send_pieces,
     METH_FASTCALL, send_pieces_doc},
    {"recv_bytes", (PyCFunction)(void (*)(void))mp_recv_bytes, METH_FASTCALL,
     recv_bytes_doc},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))mp_recv_bytes_into,
     METH_FASTCALL, recv_bytes_into_doc},
    {NULL, NULL, 0, NULL},
};

int
mp_frameio_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, frameio_functions);
}
