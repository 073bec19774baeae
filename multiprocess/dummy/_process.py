"""DummyProcess: a thread with the parts of the Process interface that make
sense for one (kept apart from the package so that ThreadPool can make
them without importing multiprocess.dummy's own Pool)."""

import threading
import weakref

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


DummyProcess.__module__ = 'multiprocess.dummy'
