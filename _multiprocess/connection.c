/*
 * connection.c -- framed messages on file descriptors, the mechanics under
 * multiprocess.connection.Connection.
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
 * Python-visible API: see docs/architecture.md, "connection.c".
 */
#include "multiprocess.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Linux moves at most this much in one read/write call. */
#define MP_IO_MAX ((size_t)0x7ffff000)

#define MP_SHORT_FRAME_MAX 0x7fffffffLL

/* What stops the GIL-free I/O loops; the caller decides what it means. */
typedef struct {
    size_t done;    /* bytes moved */
    int err;        /* 0: finished or end of file; else errno */
} io_status;

/* ------------------------------------------------------------------ */
/* waiting                                                               */

/* Without the GIL: block until `fd` is ready for `events` (used when an
 * fd turns out to be non-blocking).  0, or -1 with errno. */
static int
await_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    return poll(&p, 1, -1) < 0 ? -1 : 0;
}

/*
 * Parse a timeout argument.  Returns 1 for "wait forever" (None or
 * absurdly large), 0 with *seconds >= 0 otherwise, -1 with an exception.
 */
static int
parse_timeout(PyObject *obj, double *seconds)
{
    if (obj == Py_None) {
        return 1;
    }
    double t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
        return -1;
    }
    if (t > 1e12) {
        return 1;
    }
    *seconds = t > 0.0 ? t : 0.0;
    return 0;
}

/* 0, or -1 with errno (the clock calls cannot really fail, but say so). */
static int
deadline_after(struct timespec *deadline, double seconds)
{
    if (clock_gettime(CLOCK_MONOTONIC, deadline) < 0) {
        return -1;
    }
    double whole = floor(seconds);
    deadline->tv_sec += (time_t)whole;
    deadline->tv_nsec += (long)ceil((seconds - whole) * 1e9);
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec += 1;
        deadline->tv_nsec -= 1000000000L;
    }
    return 0;
}

/* Time left until `deadline`, never negative.  0, or -1 with errno. */
static int
time_left(const struct timespec *deadline, struct timespec *left)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0) {
        return -1;
    }
    long long ns = (long long)(deadline->tv_sec - now.tv_sec) * 1000000000LL +
                   (deadline->tv_nsec - now.tv_nsec);
    if (ns < 0) {
        ns = 0;
    }
    left->tv_sec = (time_t)(ns / 1000000000LL);
    left->tv_nsec = (long)(ns % 1000000000LL);
    return 0;
}

/*
 * Whether another Python thread could be waiting for the GIL.  Probing an
 * fd for ready bytes costs a syscall (~0.5 us); releasing the GIL when no
 * other thread exists costs a few atomic operations.  So only a threaded
 * process pays for the probe, and there it saves a GIL handoff that can
 * cost a whole switch interval.  Read with the GIL held, the thread list
 * only grows concurrently (a new head), so the walk is safe.
 */
static int
other_threads_exist(void)
{
    PyThreadState *head = PyInterpreterState_ThreadHead(
        PyInterpreterState_Get());
    return head != NULL && PyThreadState_Next(head) != NULL;
}

/*
 * ppoll over `pfds` until something is ready or the time is up.  forever:
 * no deadline; otherwise `seconds` (0 = just look, with the GIL held).
 * Returns the number of ready entries, or -1 with an exception set.
 */
static int
poll_fds(struct pollfd *pfds, nfds_t n, int forever, double seconds)
{
    struct timespec deadline, zero = {0, 0}, left;
    int rc, err;

    /* Look first with the GIL held: if something is already readable we
     * never give the GIL away.  Pointless when nobody else wants the GIL
     * and we are going to wait anyway. */
    if ((forever || seconds > 0.0) && !other_threads_exist()) {
        goto wait;
    }
    for (;;) {
        rc = ppoll(pfds, n, &zero, NULL);
        if (rc >= 0) {
            break;
        }
        err = errno;
        if (err != EINTR) {
            mp_raise_errno(err);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
    if (rc > 0 || (!forever && seconds == 0.0)) {
        return rc;
    }

wait:
    if (!forever && deadline_after(&deadline, seconds) < 0) {
        mp_raise_errno(errno);
        return -1;
    }
    for (;;) {
        if (!forever && time_left(&deadline, &left) < 0) {
            mp_raise_errno(errno);
            return -1;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = ppoll(pfds, n, forever ? NULL : &left, NULL);
        err = rc < 0 ? errno : 0;
        Py_END_ALLOW_THREADS
        if (rc >= 0) {
            return rc;
        }
        if (err != EINTR) {
            mp_raise_errno(err);
            return -1;
        }
        /* Run signal handlers; then wait only for what is left. */
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

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
} frame_reader;

enum {
    FR_DONE,                /* header and payload are in */
    FR_NEED_DEST,           /* header is in; payload does not fit dest */
    FR_NO_MORE_READY,       /* used up the bytes known to be waiting */
    FR_EOF,
    FR_ERROR,               /* see r->err */
    FR_CORRUPT,             /* negative length other than -1 */
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
            if (await_fd(r->fd, POLLIN) == 0) {
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
    if (r->dest == NULL || r->size > r->dest_cap) {
        return FR_NEED_DEST;
    }
    while (r->got < r->size) {
        n = reader_read(r, r->dest + r->got, r->size - r->got, limited);
        if (n < 0) {
            return (int)-n;
        }
        r->got += (uint64_t)n;
    }
    return FR_DONE;
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
        if (r->ready == 0 && other_threads_exist()) {
            r->ready = bytes_waiting(r->fd);
        }
        if (r->ready > 0) {
            rc = reader_step(r, 1);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            rc = reader_step(r, 0);
            Py_END_ALLOW_THREADS
        }
        switch (rc) {
        case FR_DONE:
        case FR_NEED_DEST:
            return rc;
        case FR_NO_MORE_READY:
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

/* Finish reading a frame whose payload did not fit: into a new bytes. */
static PyObject *
reader_finish_as_bytes(frame_reader *r)
{
    if (r->size > (uint64_t)PY_SSIZE_T_MAX) {
        return PyErr_NoMemory();
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)r->size);
    if (data == NULL) {
        return NULL;
    }
    r->dest = PyBytes_AS_STRING(data);
    r->dest_cap = r->size;
    r->got = 0;
    if (reader_pump(r) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    return data;
}

static int
fd_converter(PyObject *obj, void *out)
{
    int fd = PyObject_AsFileDescriptor(obj);
    if (fd < 0) {
        return 0;
    }
    *(int *)out = fd;
    return 1;
}

PyDoc_STRVAR(recv_bytes_doc,
"recv_bytes($module, fd, maxlength=-1, /)\n--\n\n"
"Read one message from fd and return it as bytes.  If maxlength >= 0 and\n"
"the message is longer, return None and leave its payload unread.\n"
"EOFError if the peer closed before a message began, OSError if it\n"
"closed in the middle of one.");

static PyObject *
mp_recv_bytes(PyObject *Py_UNUSED(module), PyObject *const *args,
              Py_ssize_t nargs)
{
    int fd;
    long long maxlength = -1;
    char small[MP_SMALL_FRAME];
    frame_reader r;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "recv_bytes expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (!fd_converter(args[0], &fd)) {
        return NULL;
    }
    if (nargs == 2 && args[1] != Py_None) {
        maxlength = PyLong_AsLongLong(args[1]);
        if (maxlength == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }

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
    return reader_finish_as_bytes(&r);
}

PyDoc_STRVAR(recv_bytes_into_doc,
"recv_bytes_into($module, fd, buffer, offset, /)\n--\n\n"
"Read one message from fd into the writable buffer at byte offset and\n"
"return its length.  If it does not fit, return the whole message as\n"
"bytes instead (the buffer is left untouched).");

static PyObject *
mp_recv_bytes_into(PyObject *Py_UNUSED(module), PyObject *const *args,
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
    if (!fd_converter(args[0], &fd)) {
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
        result = reader_finish_as_bytes(&r);
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
        ssize_t n = writev(fd, *iov, batch);
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
            await_fd(fd, POLLOUT) == 0) {
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

/* Payload pieces of one frame: a single buffer, or a list/tuple of them
 * (pickler output chunks) sent back to back without joining them first. */
#define MP_INLINE_PIECES 8

typedef struct {
    PyObject *seq;              /* tuple of the pieces (owned), or NULL */
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
    Py_CLEAR(p->seq);
}

/* 0, or -1 with an exception (and everything already released).  With
 * `gather`, data must be a list or tuple of buffers; else one buffer. */
static int
pieces_collect(payload_pieces *p, PyObject *data, int gather)
{
    PyObject *const *items = &data;
    Py_ssize_t count = 1;

    p->seq = NULL;
    p->n = 0;
    p->total = 0;
    p->views = p->views_inline;
    p->iov = p->iov_inline;
    if (gather) {
        if (!PyList_Check(data) && !PyTuple_Check(data)) {
            PyErr_Format(PyExc_TypeError,
                         "send_pieces() needs a list or tuple, not %.100s",
                         Py_TYPE(data)->tp_name);
            return -1;
        }
        /* A tuple snapshot: nothing can shrink it under us while the
         * buffers are being taken. */
        p->seq = PyList_Check(data) ? PyList_AsTuple(data)
                                    : Py_NewRef(data);
        if (p->seq == NULL) {
            return -1;
        }
        items = &PyTuple_GET_ITEM(p->seq, 0);
        count = PyTuple_GET_SIZE(p->seq);
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

static PyObject *
send_frame(PyObject *const *args, Py_ssize_t nargs, int gather)
{
    int fd;
    payload_pieces pieces;
    unsigned char hdr[12];
    struct iovec *iov;
    int cnt;
    io_status st;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s expected 2 arguments, got %zd",
                     gather ? "send_pieces" : "send_bytes", nargs);
        return NULL;
    }
    if (!fd_converter(args[0], &fd)) {
        return NULL;
    }
    if (pieces_collect(&pieces, args[1], gather) < 0) {
        return NULL;
    }
    if (pieces.n > INT_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "too many pieces");
        goto done;
    }
    iov = pieces.iov;
    cnt = (int)pieces.n + 1;
    iov[0].iov_base = hdr;
    iov[0].iov_len = encode_header(hdr, pieces.total);

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
    result = Py_NewRef(Py_None);

done:
    pieces_release(&pieces);
    return result;
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
"send_pieces($module, fd, pieces, /)\n--\n\n"
"Write the buffers of the list or tuple pieces to fd as ONE message,\n"
"as if joined, but without copying them into one buffer first (e.g. a\n"
"pickler's output chunks).");

static PyObject *
mp_send_pieces(PyObject *Py_UNUSED(module), PyObject *const *args,
               Py_ssize_t nargs)
{
    return send_frame(args, nargs, 1);
}

/* ------------------------------------------------------------------ */
/* readiness                                                             */

/* Readable in the sense of "recv will not block": data, hang-up or error
 * all count, since each makes the next read return at once. */
#define MP_READABLE_EVENTS (POLLIN | POLLPRI | POLLHUP | POLLERR | POLLNVAL)

PyDoc_STRVAR(poll_doc,
"poll($module, fd, timeout, /)\n--\n\n"
"Whether fd has a message (or end of file) to read within timeout\n"
"seconds.  None waits for ever; zero or less does not wait.");

static PyObject *
mp_poll(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int fd, forever;
    double seconds = 0.0;
    struct pollfd p;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "poll expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (!fd_converter(args[0], &fd)) {
        return NULL;
    }
    forever = nargs == 2 ? parse_timeout(args[1], &seconds) : 0;
    if (forever < 0) {
        return NULL;
    }
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    int rc = poll_fds(&p, 1, forever, seconds);
    if (rc < 0) {
        return NULL;
    }
    if (p.revents & POLLNVAL) {
        return mp_raise_errno(EBADF);
    }
    return PyBool_FromLong(rc > 0 && (p.revents & MP_READABLE_EVENTS));
}

PyDoc_STRVAR(wait_fds_doc,
"wait_fds($module, fds, timeout, /)\n--\n\n"
"Wait until some of the fds are readable (or hung up) and return those,\n"
"in the order given; [] when timeout seconds pass first (None: no limit).");

static PyObject *
mp_wait_fds(PyObject *Py_UNUSED(module), PyObject *const *args,
            Py_ssize_t nargs)
{
    PyObject *seq = NULL, *ready = NULL;
    struct pollfd *pfds = NULL;
    double seconds = 0.0;
    int forever;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "wait_fds expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    forever = nargs == 2 ? parse_timeout(args[1], &seconds) : 1;
    if (forever < 0) {
        return NULL;
    }
    seq = PySequence_Fast(args[0], "wait_fds() needs a sequence of fds");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    pfds = PyMem_New(struct pollfd, n > 0 ? n : 1);
    if (pfds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd = PyObject_AsFileDescriptor(PySequence_Fast_GET_ITEM(seq, i));
        if (fd < 0) {
            goto done;
        }
        pfds[i].fd = fd;
        pfds[i].events = POLLIN;
        pfds[i].revents = 0;
    }

    int rc = poll_fds(pfds, (nfds_t)n, forever, seconds);
    if (rc < 0) {
        goto done;
    }
    ready = PyList_New(0);
    if (ready == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n && rc > 0; i++) {
        /* A closed fd (POLLNVAL) is reported too: the caller's next read
         * on it raises, which beats waiting on it for ever. */
        if (pfds[i].revents & MP_READABLE_EVENTS) {
            if (PyList_Append(ready, PySequence_Fast_GET_ITEM(seq, i)) < 0) {
                Py_CLEAR(ready);
                goto done;
            }
        }
    }

done:
    PyMem_Free(pfds);
    Py_DECREF(seq);
    return ready;
}

static PyMethodDef connection_functions[] = {
    {"send_bytes", (PyCFunction)(void (*)(void))mp_send_bytes, METH_FASTCALL,
     send_bytes_doc},
    {"send_pieces", (PyCFunction)(void (*)(void))mp_send_pieces,
     METH_FASTCALL, send_pieces_doc},
    {"recv_bytes", (PyCFunction)(void (*)(void))mp_recv_bytes, METH_FASTCALL,
     recv_bytes_doc},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))mp_recv_bytes_into,
     METH_FASTCALL, recv_bytes_into_doc},
    {"poll", (PyCFunction)(void (*)(void))mp_poll, METH_FASTCALL, poll_doc},
    {"wait_fds", (PyCFunction)(void (*)(void))mp_wait_fds, METH_FASTCALL,
     wait_fds_doc},
    {NULL, NULL, 0, NULL},
};

int
mp_connection_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, connection_functions);
}
