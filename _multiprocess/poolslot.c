/*
 * poolslot.c -- one pool worker slot's byte streams, for poolengine.c:
 * the output buffer and the views of large payloads written from the
 * caller's memory, non-blocking writev/read on the slot's pipes, parsing
 * result frames, and the FIFO of the tasks the slot owns.  Touches only C
 * memory (pe_slot_parse aside), so it runs with or without the GIL as
 * poolengine.c says.
 */
#include "poolengine.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---------------------------------------------------------------- buffers */

int
pe_buf_reserve_shift(pe_buf *b, size_t extra, pe_big *big, size_t nbig)
{
    if (b->pos > 0 && (b->pos == b->len || b->pos > b->cap / 2)) {
        memmove(b->data, b->data + b->pos, b->len - b->pos);
        for (size_t i = 0; i < nbig; i++) {
            big[i].at -= b->pos;
        }
        b->len -= b->pos;
        b->pos = 0;
    }
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    char *p = PyMem_RawRealloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int
pe_buf_reserve(pe_buf *b, size_t extra)
{
    return pe_buf_reserve_shift(b, extra, NULL, 0);
}

void
pe_buf_free(pe_buf *b)
{
    PyMem_RawFree(b->data);
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------ ownership */

int
pe_own_push(pe_slot *s, uint64_t id)
{
    if (s->own_len == s->own_cap) {
        size_t cap = s->own_cap ? s->own_cap * 2 : 16;
        uint64_t *p = PyMem_RawMalloc(cap * sizeof(uint64_t));
        if (p == NULL) {
            return -1;
        }
        for (size_t i = 0; i < s->own_len; i++) {
            p[i] = s->own[(s->own_head + i) % s->own_cap];
        }
        PyMem_RawFree(s->own);
        s->own = p;
        s->own_cap = cap;
        s->own_head = 0;
    }
    s->own[(s->own_head + s->own_len) % s->own_cap] = id;
    s->own_len++;
    return 0;
}

/* Drop `id` from the FIFO: normally the head, since workers run in order. */
void
pe_own_remove(pe_slot *s, uint64_t id)
{
    if (s->own_len == 0) {
        return;
    }
    if (s->own[s->own_head] == id) {
        s->own_head = (s->own_head + 1) % s->own_cap;
        s->own_len--;
        return;
    }
    for (size_t i = 1; i < s->own_len; i++) {
        if (s->own[(s->own_head + i) % s->own_cap] == id) {
            for (size_t j = i; j + 1 < s->own_len; j++) {
                s->own[(s->own_head + j) % s->own_cap] =
                    s->own[(s->own_head + j + 1) % s->own_cap];
            }
            s->own_len--;
            return;
        }
    }
}

/* ----------------------------------------------------------------- slots */

/* Drop the views of payloads already written.  GIL held. */
void
pe_release_written(pe_slot *s)
{
    if (s->bigdone == 0) {
        return;
    }
    for (size_t i = 0; i < s->bigdone; i++) {
        PyBuffer_Release(&s->big[i].view);
    }
    memmove(s->big, s->big + s->bigdone,
            (s->nbig - s->bigdone) * sizeof(pe_big));
    s->nbig -= s->bigdone;
    s->bigdone = 0;
}

/* GIL held. */
void
pe_slot_clear(pe_slot *s)
{
    for (size_t i = 0; i < s->nbig; i++) {
        PyBuffer_Release(&s->big[i].view);
    }
    PyMem_RawFree(s->big);
    pe_buf_free(&s->out);
    pe_buf_free(&s->in);
    PyMem_RawFree(s->own);
    memset(s, 0, sizeof(*s));
}

/* Write as much of the slot's queued output as the pipe takes; called
 * with or without the GIL (touches only C memory).  A dead reader drops
 * the output: the sentinel will report the worker. */
int
pe_slot_has_output(pe_slot *s)
{
    return s->out.len > s->out.pos || s->nbig > s->bigdone;
}

void
pe_slot_write(pe_slot *s)
{
    for (;;) {
        pe_big *b = s->nbig > s->bigdone ? &s->big[s->bigdone] : NULL;
        size_t stop = b != NULL ? b->at : s->out.len;
        struct iovec iov[2];
        int cnt = 0;
        size_t head = stop - s->out.pos;
        if (head > 0) {
            iov[cnt].iov_base = s->out.data + s->out.pos;
            iov[cnt].iov_len = head;
            cnt++;
        }
        if (b != NULL) {
            iov[cnt].iov_base = (char *)b->view.buf + b->pos;
            iov[cnt].iov_len = (size_t)b->view.len - b->pos;
            cnt++;
        }
        if (cnt == 0) {
            break;
        }
        ssize_t n = writev(s->task_fd, iov, cnt);
        if (n > 0) {
            size_t k = (size_t)n;
            size_t from_head = k < head ? k : head;
            s->out.pos += from_head;
            k -= from_head;
            if (b != NULL) {
                b->pos += k;
                if (b->pos == (size_t)b->view.len) {
                    s->bigdone++;
                }
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        /* EPIPE and friends: drop everything */
        s->out.pos = s->out.len;
        s->bigdone = s->nbig;
    }
    s->out.pos = s->out.len = 0;
}

/* Read what the result pipe holds; 0 on success, errno value otherwise. */
int
pe_slot_read(pe_slot *s)
{
    for (;;) {
        if (pe_buf_reserve(&s->in, PE_READ_CHUNK) < 0) {
            return ENOMEM;
        }
        ssize_t n = read(s->result_fd, s->in.data + s->in.len,
                         s->in.cap - s->in.len);
        if (n > 0) {
            s->in.len += (size_t)n;
            if ((size_t)n < PE_READ_CHUNK) {
                return 0;
            }
            continue;
        }
        if (n == 0) {
            s->eof = 1;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        s->eof = 1;
        return 0;
    }
}

/* Parse the complete frames of a slot into `events`.  Acks update the
 * slot; results leave the ownership FIFO. */
int
pe_slot_parse(pe_slot *s, PyObject *events)
{
    for (;;) {
        size_t avail = s->in.len - s->in.pos;
        if (avail < PE_HEADER) {
            return 0;
        }
        const unsigned char *p = (const unsigned char *)s->in.data + s->in.pos;
        uint64_t size = pe_get_u64(p);
        if (size > avail - PE_HEADER) {
            return 0;
        }
        int kind = p[8];
        uint64_t task = pe_get_u64(p + 9);
        s->in.pos += PE_HEADER + (size_t)size;
        if (kind == PE_K_ACK) {
            s->acked = task;
            continue;
        }
        if (task != 0) {
            pe_own_remove(s, task);
            if (s->acked == task) {
                s->acked = 0;
            }
        }
        PyObject *ev = Py_BuildValue("(liKy#)", s->id, kind,
                                     (unsigned long long)task,
                                     (const char *)p + PE_HEADER,
                                     (Py_ssize_t)size);
        if (ev == NULL) {
            return -1;
        }
        int rc = PyList_Append(events, ev);
        Py_DECREF(ev);
        if (rc < 0) {
            return -1;
        }
    }
}
