/*
 * deadline.c -- timeouts and deadlines, the one way every blocking call of
 * the core (semlock.c, spinwait.c, poolengine.c, poollend.c) reads a timeout
 * argument and waits until a point on CLOCK_MONOTONIC (immune to wall-clock
 * jumps).
 */
#include "multiprocess.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <time.h>

/*
 * Parse a timeout argument.  Returns 1 for "wait forever" (None or
 * absurdly large), 0 with *seconds >= 0 otherwise, -1 with an exception.
 */
int
mp_parse_timeout(PyObject *obj, double *seconds)
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
    if (t > MP_FOREVER_SECONDS) {
        return 1;
    }
    *seconds = t > 0.0 ? t : 0.0;
    return 0;
}

/* A timeout argument as a deadline: 1 for "wait forever", 0 with
 * *deadline set, -1 with an exception. */
int
mp_timeout_deadline(PyObject *timeout, struct timespec *deadline)
{
    double seconds;
    int forever = mp_parse_timeout(timeout, &seconds);
    if (forever == 0 && mp_deadline_after(deadline, seconds) < 0) {
        mp_raise_errno(errno);
        return -1;
    }
    return forever;
}

/* 0, or -1 with errno (the clock calls cannot really fail, but say so). */
int
mp_deadline_after(struct timespec *deadline, double seconds)
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
int
mp_time_left(const struct timespec *deadline, struct timespec *left)
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

int
mp_ms_left(const struct timespec *deadline)
{
    struct timespec left;
    if (mp_time_left(deadline, &left) < 0) {
        return 0;
    }
    /* Rounded up: a poll() that wakes before the deadline would only wait
     * again for the rest. */
    long long ms = (long long)left.tv_sec * 1000 +
                   (left.tv_nsec + 999999L) / 1000000L;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}
