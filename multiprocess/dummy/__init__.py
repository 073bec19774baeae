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
import weakref

from threading import (Barrier, BoundedSemaphore, Condition, Event, Lock,
                       RLock, Semaphore)

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


def _children_of(thread):
    """The started DummyProcess children of ``thread`` (created on demand,
    weakly held so finished threads can go away)."""
    try:
        return thread._children
    except AttributeError:
        thread._children = weakref.WeakKeyDictionary()
        return thread._children


_children_of(threading.current_thread())


class DummyProcess(threading.Thread):
    """A thread with the parts of the ``Process`` interface that make sense
    for a thread: ``exitcode`` (0 once finished), parent tracking for
    ``active_children()``."""

    def __init__(self, group=None, target=None, name=None, args=(),
                 kwargs={}):
        super().__init__(group, target, name, args, kwargs)
        self._pid = None
        self._start_called = False
        self._parent = current_process()
        self._children = weakref.WeakKeyDictionary()

    def start(self):
        here = current_process()
        if here is not self._parent:
            raise RuntimeError('Parent is %r but current_process is %r'
                               % (self._parent, here))
        self._start_called = True
        _children_of(self._parent)[self] = None
        super().start()

    @property
    def exitcode(self):
        """None while running (or never started), 0 once it finished."""
        finished = self._start_called and not self.is_alive()
        return 0 if finished else None


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
    from ..pool import ThreadPool
    return ThreadPool(processes, initializer, initargs,
                      task_timeout=task_timeout)
