"""The exceptions multiprocess raises, in one place.

This module sits at the bottom of the package (it imports nothing of ours),
so every layer can raise these without reaching upward.  The package and
``multiprocess.context`` re-export them under the standard library's names.
"""

__all__ = ['ProcessError', 'BufferTooShort', 'TimeoutError',
           'AuthenticationError', 'WorkerLostError', 'TaskTimeoutError']


class ProcessError(Exception):
    """Base class of the errors specific to multiprocess."""


class BufferTooShort(ProcessError):
    """``Connection.recv_bytes_into()`` was given a buffer smaller than the
    message.  ``args[0]`` holds the whole message as bytes, so nothing is
    lost: read it from there, or retry with a larger buffer."""


class TimeoutError(ProcessError):
    """A result was not ready within the timeout given to
    ``AsyncResult.get()`` or ``IMapIterator.next()``.  The task may still
    complete; call ``get()`` again to keep waiting."""


class TaskTimeoutError(TimeoutError):
    """A call ran longer than the pool's ``task_timeout``.  The worker
    running it was killed and replaced (a thread of a ``ThreadPool`` cannot
    be stopped: it runs on, but its caller gets this error on time); the
    other calls of the same chunk that had not started ran elsewhere.
    ``timeout`` is the limit in seconds, ``pid`` the killed worker's."""

    def __init__(self, message, timeout=None, pid=None):
        super().__init__(message)
        self.timeout = timeout
        self.pid = pid

    def __reduce__(self):
        return (type(self), (self.args[0], self.timeout, self.pid))


class AuthenticationError(ProcessError):
    """The two ends of a connection did not prove knowledge of the same
    authkey.  Check that both sides were given the same key."""


class WorkerLostError(ProcessError):
    """A pool worker process died while it held this task (killed by a
    signal, crashed, called ``os._exit()``, or ran out of memory), so the
    task's result can never arrive.  The pool replaces the worker and keeps
    serving other tasks; the message names the worker's pid and how it
    ended."""

    def __init__(self, message, pid=None, exitcode=None):
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self):
        return (type(self), (self.args[0], self.pid, self.exitcode))
