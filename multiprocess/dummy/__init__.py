"""The multiprocess API backed by threads.

``multiprocess.dummy`` offers the same names as the package -- ``Process``,
``Pool``, ``Queue``, the locks, ``Value``, ``Array``, ``Manager`` -- but
everything runs in threads of the current process: nothing is pickled, and
objects are shared directly.  Useful for I/O-bound work, and to switch an
existing program between threads and processes by changing one import.
"""

import array
import queue
import sys
import threading

from threading import (Barrier, BoundedSemaphore, Condition, Event, Lock,
                       RLock, Semaphore)

from ._process import DummyProcess, _children_of
from .connection import Pipe

__all__ = [
    'Process', 'current_process', 'active_children', 'freeze_support',
    'Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition',
    'Event', 'Barrier', 'Queue', 'Manager', 'Pipe', 'Pool', 'JoinableQueue',
]

Queue = queue.Queue
JoinableQueue = queue.Queue     # queue.Queue already has task_done/join
# what a manager would proxy is shared directly between threads
dict, list = dict, list

current_process = threading.current_thread


Process = DummyProcess


def active_children():
    """The child threads started from this thread that are still alive."""
    children = _children_of(current_process())
    for child in list(children):
        if not child.is_alive():
            children.pop(child, None)
    return list(children)


def freeze_support():
    """Nothing to do for threads."""


class Namespace(object):
    """A plain attribute bag, shown with its public attributes sorted."""

    def __init__(self, /, **kwds):
        self.__dict__.update(kwds)

    def __repr__(self):
        shown = sorted('%s=%r' % kv for kv in self.__dict__.items()
                       if not kv[0].startswith('_'))
        return '%s(%s)' % (type(self).__name__, ', '.join(shown))


class Value(object):
    """A boxed value with a ``value`` attribute (no lock needed)."""

    def __init__(self, typecode, value, lock=True):
        self._typecode, self._value = typecode, value

    def _get(self):
        return self._value

    def _set(self, value):
        self._value = value

    value = property(_get, _set)

    def __repr__(self):
        return '<%s(%r, %r)>' % (type(self).__name__, self._typecode,
                                 self._value)


def Array(typecode, sequence, lock=True):
    """An ``array.array``: threads share memory already."""
    return array.array(typecode, sequence)


def Manager():
    """Threads need no manager process: this module plays its part."""
    return sys.modules[__name__]


def shutdown():
    """Nothing to shut down."""


def Pool(processes=None, initializer=None, initargs=(), *,
         task_timeout=None):
    """A ``multiprocess.pool.ThreadPool``."""
    from ..pool._threads import ThreadPool
    return ThreadPool(processes, initializer, initargs,
                      task_timeout=task_timeout)
