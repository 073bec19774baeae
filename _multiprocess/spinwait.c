/*
 * spinwait.c -- waiting for file descriptors: the spin-before-sleep
 * machinery (shared by frameio.c and poolengine.c), ppoll with a timeout
 * and signal handling, and the Python-visible poll()/wait_fds().
 */
#include "multiprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* waiting                                                               */

/* Without the GIL: block until `fd` is ready for `events` (used when an
 * fd turns out to be non-blocking).  0, or -1 with errno. */
int
mp_await_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    return poll(&p, 1, -1) < 0 ? -1 : 0;
}

/*
 * When a spin can pay.  Polling instead of sleeping wins only while the
 * process we wait for has a CPU of its own and ours is wanted by nobody
 * else.  Once more tasks are runnable than there are CPUs for us, each
 * poll takes time from someone -- often from the very peer whose answer we
 * wait for, which then waits for a scheduler time slice (milliseconds)
 * instead of the tens of microseconds a sleeping receive costs.  So a spin
 * starts only while none of these says the CPUs are oversubscribed:
 *
 *  - the system's count of runnable tasks (/proc/loadavg, the caller
 *    included) exceeds the CPUs this process may run on.  A would-be
 *    spinner that finds the last sample older than SPIN_SAMPLE_NS takes a
 *    new one (a few microseconds, spent where it was about to poll anyway);
 *  - a sched_yield() inside a spin came back late: another task was
 *    waiting for our CPU, and got it;
 *  - SPIN_VAIN_LIMIT spins in a row ended with nothing to read.
 *
 * Each of these turns spinning off, process-wide, for SPIN_BACKOFF_NS;
 * the next would-be spinner after that samples again.  Without
 * /proc/loadavg the other two signals still apply.  The state is a few
 * process-wide words updated without locks: a racing update costs at most
 * one spin more or less.
 */
#define SPIN_SAMPLE_NS (10 * 1000 * 1000LL)
#define SPIN_BACKOFF_NS (20 * 1000 * 1000LL)
#define SPIN_YIELD_LATE_NS (200 * 1000LL)
#define SPIN_VAIN_LIMIT 4

static long long spin_sampled_at;   /* ns; 0: never */
static long long spin_off_until;    /* ns */
static int spin_vain_run;           /* spins in a row that found nothing */

static long long
monotonic_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
spin_back_off(long long now)
{
    __atomic_store_n(&spin_off_until, now + SPIN_BACKOFF_NS,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&spin_vain_run, 0, __ATOMIC_RELAXED);
}

/* The number of runnable tasks on the system, the caller included (the
 * fourth field of /proc/loadavg, "R/T"); -1 when it cannot be read. */
static long
runnable_tasks(void)
{
    char buf[128];
    int fd;
    do {
        fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return -1;
    }
    ssize_t n;
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    (void)close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    /* "0.52 0.58 0.59 3/512 12345": skip three fields */
    char *p = buf;
    for (int field = 0; field < 3; field++) {
        p = strchr(p, ' ');
        if (p == NULL) {
            return -1;
        }
        p++;
    }
    char *end;
    errno = 0;
    long running = strtol(p, &end, 10);
    if (end == p || *end != '/' || errno != 0 || running < 0) {
        return -1;
    }
    return running;
}

/* CPUs this process may run on (its affinity mask); 1 when unknown. */
static long
usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        return CPU_COUNT(&set);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? online : 1;
}

int
mp_spin_worthwhile(void)
{
    long long now = monotonic_ns();
    if (now < __atomic_load_n(&spin_off_until, __ATOMIC_RELAXED)) {
        return 0;
    }
    long long last = __atomic_load_n(&spin_sampled_at, __ATOMIC_RELAXED);
    if (last != 0 && now - last < SPIN_SAMPLE_NS) {
        return 1;
    }
    __atomic_store_n(&spin_sampled_at, now, __ATOMIC_RELAXED);
    long cpus = usable_cpus();
    long running = runnable_tasks();
    if (cpus < 2 || running > cpus) {
        spin_back_off(now);
        return 0;
    }
    return 1;
}

int
mp_spin_poll(struct pollfd *pfds, nfds_t n, double seconds)
{
    /* When spinning cannot pay: look once, as if the time were up. */
    const int spinning = mp_spin_worthwhile();
    long long now = monotonic_ns();
    const long long end = spinning ? now + (long long)(seconds * 1e9) : now;
    for (;;) {
        for (nfds_t i = 0; i < n; i++) {
            pfds[i].revents = 0;
        }
        int ready = poll(pfds, n, 0);
        if (ready > 0) {
            __atomic_store_n(&spin_vain_run, 0, __ATOMIC_RELAXED);
        }
        if (ready != 0 || !spinning) {
            return ready;
        }
        if (now >= end) {
            if (__atomic_add_fetch(&spin_vain_run, 1, __ATOMIC_RELAXED)
                    >= SPIN_VAIN_LIMIT) {
                spin_back_off(now);
            }
            return 0;
        }
        /* On an idle CPU this returns at once.  Otherwise whatever else is
         * runnable here (possibly the very peer we wait for) goes first,
         * and a late return means our CPU is wanted: stop spinning. */
        (void)sched_yield();
        long long after = monotonic_ns();
        if (after - now > SPIN_YIELD_LATE_NS) {
            spin_back_off(after);
            now = end;          /* one last look, then give up */
            continue;
        }
        now = after;
    }
}

/*
 * Whether another Python thread could be waiting for the GIL.  Probing an
 * fd for ready bytes costs a syscall (~0.5 us); releasing the GIL when no
 * other thread exists costs a few atomic operations.  So only a threaded
 * process pays for the probe, and there it saves a GIL handoff that can
 * cost a whole switch interval.  Read with the GIL held, the thread list
 * only grows concurrently (a new head), so the walk is safe.
 */
int
mp_other_threads_exist(void)
{
#ifdef Py_GIL_DISABLED
    /* no GIL guards the list there (compat.h): assume company */
    return 1;
#else
    PyThreadState *head = PyInterpreterState_ThreadHead(
        PyInterpreterState_Get());
    return head != NULL && PyThreadState_Next(head) != NULL;
#endif
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
    if ((forever || seconds > 0.0) && !mp_other_threads_exist()) {
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
    if (!forever && mp_deadline_after(&deadline, seconds) < 0) {
        mp_raise_errno(errno);
        return -1;
    }
    for (;;) {
        if (!forever && mp_time_left(&deadline, &left) < 0) {
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

int
mp_fd_converter(PyObject *obj, void *out)
{
    int fd = PyObject_AsFileDescriptor(obj);
    if (fd < 0) {
        return 0;
    }
    *(int *)out = fd;
    return 1;
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
    if (!mp_fd_converter(args[0], &fd)) {
        return NULL;
    }
    forever = nargs == 2 ? mp_parse_timeout(args[1], &seconds) : 0;
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
    forever = nargs == 2 ? mp_parse_timeout(args[1], &seconds) : 1;
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

static PyMethodDef spinwait_functions[] = {
    {"poll", (PyCFunction)(void (*)(void))mp_poll, METH_FASTCALL, poll_doc},
    {"wait_fds", (PyCFunction)(void (*)(void))mp_wait_fds, METH_FASTCALL,
     wait_fds_doc},
    {NULL, NULL, 0, NULL},
};

int
mp_spinwait_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, spinwait_functions);
}
