"""Process-shared locks, semaphores, conditions, events and barriers.

Every primitive here is a thin policy layer over ``_multiprocess.SemLock``,
the C semaphore from ``_multiprocess/semlock.c``.  The C object does all the
blocking; this module decides naming, lifetime and pickling:

* A semaphore gets a random POSIX name.  Under the fork start method the name
  is unlinked at once (children inherit the mapped handle, nobody needs the
  name).  Under spawn/forkserver the name must stay alive so children can
  ``sem_open`` it; it is registered with the resource tracker and unlinked by
  a finalizer when the creator lets go of it (or by the tracker if the
  creator dies).
* Objects pickle only while a child is being spawned; the child re-opens the
  semaphore by name (``SemLock._rebuild``).  A forked child simply keeps the
  handle and resets the per-process recursion bookkeeping after the fork.
* ``acquire``/``release``, and the C object's ``__enter__``/``__exit__``,
  are bound methods stored on the instance once; the class's
  ``__enter__``/``__exit__`` resolve to the stored ones through C-level
  getters, so ``with lock:`` runs no Python bytecode and builds no bound
  method.
"""

__all__ = [
    'Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event',
    'Barrier',
]

import operator
import os
import sys
import threading
import time

from . import context
from . import process
from . import util

try:
    import _multiprocess
    _CSemLock = _multiprocess.SemLock
    sem_unlink = _multiprocess.sem_unlink
except (ImportError, AttributeError):
    # Same contract as the standard library (issue 3770): importing this
    # module is how callers learn that process-shared semaphores are missing.
    raise ImportError("multiprocess.synchronize needs a working sem_open(); "
                      "the native core '_multiprocess' does not provide "
                      "SemLock on this platform")

RECURSIVE_MUTEX = getattr(_multiprocess, 'RECURSIVE_MUTEX', 0)
SEMAPHORE = getattr(_multiprocess, 'SEMAPHORE', 1)
SEM_VALUE_MAX = getattr(_multiprocess, 'SEM_VALUE_MAX', None)
if SEM_VALUE_MAX is None:
    SEM_VALUE_MAX = _CSemLock.SEM_VALUE_MAX

# How many random names to try before giving up on creating a semaphore.
_NAME_ATTEMPTS = 100


def _reset_after_fork(obj):
    # The child inherits the parent's recursion count and owner thread id,
    # neither of which means anything in the new process.
    obj._semlock._after_fork()


class _Delegate(property):
    """A special method forwarded to an attribute's method of the same name.

    ``with obj:`` looks ``__enter__`` up on the type and honours descriptors:
    the (C) property getter, an ``operator.attrgetter``, hands back the
    bound method the instance stored when it was made, so no Python frame
    runs and nothing is allocated.  Code that fetches
    the method from the class and calls it with the instance, as
    ``contextlib.ExitStack`` does, gets this object, hence ``__call__``.
    """

    def __init__(self, path):
        property.__init__(self, operator.attrgetter(path))

    def __call__(self, instance, *args):
        return self.fget(instance)(*args)


class SemLock(object):
    """Common base: owns one C semaphore and its name's lifetime."""

    __enter__ = _Delegate('_enter')
    __exit__ = _Delegate('_exit')

    def __init__(self, kind, value, maxvalue, *, ctx):
        if ctx is None:
            ctx = context._default_context.get_context()
        self._is_fork_ctx = ctx.get_start_method() == 'fork'
        # Nobody will ever need to open the semaphore by name when every
        # child is forked: drop the name right after creating it.
        unlink_at_once = self._is_fork_ctx
        sl = None
        for _ in range(_NAME_ATTEMPTS):
            try:
                sl = _CSemLock(kind, value, maxvalue, self._make_name(),
                               unlink_at_once)
                break
            except FileExistsError:
                continue
        if sl is None:
            raise FileExistsError('cannot find an unused name for a '
                                  'semaphore after %d attempts'
                                  % _NAME_ATTEMPTS)
        self._semlock = sl
        util.debug('created semlock with handle %s' % sl.handle)
        self._make_methods()
        util.register_after_fork(self, _reset_after_fork)

        name = sl.name
        if name is not None:
            # Still linked: the tracker unlinks it should this process die
            # without running finalizers; the finalizer covers the rest.
            from .resource_tracker import register
            register(name, 'semaphore')
            util.Finalize(self, SemLock._cleanup, (name,), exitpriority=0)

    @staticmethod
    def _cleanup(name):
        from .resource_tracker import unregister
        sem_unlink(name)
        unregister(name, 'semaphore')

    def _make_methods(self):
        sl = self._semlock
        self.acquire = sl.acquire
        self.release = sl.release
        # Bound once here rather than at every `with` (half its cost).
        self._enter = sl.__enter__
        self._exit = sl.__exit__

    def locked(self):
        """Whether the lock is held, or the semaphore's count is zero, by
        any process.  (The stdlib's from 3.14; here on every version.)"""
        return self._semlock._is_zero()

    def __getstate__(self):
        context.assert_spawning(self)
        if self._is_fork_ctx:
            raise RuntimeError(
                'A SemLock created in a fork context is being shared with a '
                'process in a spawn context. This is not supported: its name '
                'was already unlinked.  Create the lock from the same context '
                'as the Process (e.g. get_context("spawn").Lock()).')
        sl = self._semlock
        return (sl.handle, sl.kind, sl.maxvalue, sl.name)

    def __setstate__(self, state):
        self._semlock = _CSemLock._rebuild(*state)
        util.debug('recreated blocker with handle %r' % (state[0],))
        self._make_methods()
        # The rebuilt copy was opened by name, so it may travel on to
        # grandchildren of any start method (gh-108520).
        self._is_fork_ctx = False

    @staticmethod
    def _make_name():
        config = process.current_process()._config
        prefix = config.get('semprefix', '/mp')
        # os.urandom needs no reseeding after fork, unlike a PRNG.
        return '%s-%s' % (prefix, os.urandom(6).hex())


def _owner_label():
    label = process.current_process().name
    thread_name = threading.current_thread().name
    if thread_name != 'MainThread':
        label = label + '|' + thread_name
    return label


class Semaphore(SemLock):

    def __init__(self, value=1, *, ctx):
        SemLock.__init__(self, SEMAPHORE, value, SEM_VALUE_MAX, ctx=ctx)

    def __repr__(self):
        return '<%s(value=%s)>' % (type(self).__name__, _value_text(self))

    def get_value(self):
        return self._semlock._get_value()


def _value_text(sem):
    try:
        return str(sem._semlock._get_value())
    except Exception:
        return 'unknown'


class BoundedSemaphore(Semaphore):

    def __init__(self, value=1, *, ctx):
        SemLock.__init__(self, SEMAPHORE, value, value, ctx=ctx)

    def __repr__(self):
        return '<%s(value=%s, maxvalue=%s)>' % (
            type(self).__name__, _value_text(self), self._semlock.maxvalue)


class Lock(SemLock):

    def __init__(self, *, ctx):
        SemLock.__init__(self, SEMAPHORE, 1, 1, ctx=ctx)

    def __repr__(self):
        sl = self._semlock
        try:
            if sl._is_mine():
                owner = _owner_label()
            elif sl._get_value() == 1:
                owner = 'None'
            else:
                owner = ('SomeOtherThread' if sl._count() > 0
                         else 'SomeOtherProcess')
        except Exception:
            owner = 'unknown'
        return '<%s(owner=%s)>' % (type(self).__name__, owner)


class RLock(SemLock):

    def __init__(self, *, ctx):
        SemLock.__init__(self, RECURSIVE_MUTEX, 1, 1, ctx=ctx)

    def __repr__(self):
        sl = self._semlock
        try:
            if sl._is_mine():
                owner, depth = _owner_label(), sl._count()
            elif sl._get_value() == 1:
                owner, depth = 'None', 0
            else:
                depth = 'nonzero'
                owner = ('SomeOtherThread' if sl._count() > 0
                         else 'SomeOtherProcess')
        except Exception:
            owner = depth = 'unknown'
        return '<%s(%s, %s)>' % (type(self).__name__, owner, depth)


def _take_all(sem):
    """Acquire ``sem`` without blocking until it is zero; return how often."""
    grab = sem.acquire
    taken = 0
    while grab(False):
        taken += 1
    return taken


class Condition(object):
    """Condition variable shared between processes.

    Waiters announce themselves on ``_sleeping_count``, block on
    ``_wait_semaphore`` and confirm they are awake on ``_woken_count``.  A
    notifier first settles the books for waiters that timed out (each of
    them posted to ``_woken_count`` without being signalled), then signals up
    to ``n`` sleepers and waits for each to confirm, so a notify never wakes
    a thread that starts waiting after it.
    """

    def __init__(self, lock=None, *, ctx):
        self._lock = lock if lock else ctx.RLock()
        self._sleeping_count = ctx.Semaphore(0)
        self._woken_count = ctx.Semaphore(0)
        self._wait_semaphore = ctx.Semaphore(0)
        self._make_methods()

    def _make_methods(self):
        lock = self._lock
        self.acquire = lock.acquire
        self.release = lock.release
        self._enter = lock.__enter__
        self._exit = lock.__exit__

    def __getstate__(self):
        context.assert_spawning(self)
        return (self._lock, self._sleeping_count, self._woken_count,
                self._wait_semaphore)

    def __setstate__(self, state):
        self._lock = state[0]
        self._sleeping_count, self._woken_count, self._wait_semaphore = \
            state[1:]
        self._make_methods()

    # Resolves to the lock's own (C) enter/exit, as for SemLock above.
    __enter__ = _Delegate('_enter')
    __exit__ = _Delegate('_exit')

    def __repr__(self):
        try:
            waiters = (self._sleeping_count._semlock._get_value()
                       - self._woken_count._semlock._get_value())
        except Exception:
            waiters = 'unknown'
        return '<%s(%s, %s)>' % (type(self).__name__, self._lock, waiters)

    def _check_owned(self, what):
        if not self._lock._semlock._is_mine():
            raise AssertionError(what)

    def wait(self, timeout=None):
        self._check_owned('must acquire() condition before using wait()')
        lock = self._lock
        self._sleeping_count.release()
        # Give the lock up completely (an RLock may be held several levels
        # deep) and take it back to the same depth afterwards.
        depth = lock._semlock._count()
        for _ in range(depth):
            lock.release()
        try:
            signalled = self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            for _ in range(depth):
                lock.acquire()
        return signalled

    def notify(self, n=1):
        self._check_owned('lock is not owned')
        if self._wait_semaphore.acquire(False):
            raise AssertionError('notify: _wait_semaphore should be zero '
                                 'while the condition lock is held')
        sleeping_take = self._sleeping_count.acquire
        # Waiters that timed out left a token on _woken_count but are still
        # counted as sleeping: cancel the two against each other.
        for _ in range(_take_all(self._woken_count)):
            if not sleeping_take(False):
                raise AssertionError('notify: sleeping count went negative')
        signal = self._wait_semaphore.release
        signalled = 0
        while signalled < n and sleeping_take(False):
            signal()
            signalled += 1
        if not signalled:
            return
        confirm = self._woken_count.acquire
        for _ in range(signalled):
            confirm()
        # A waiter may have timed out between our signal and its acquire,
        # leaving an unconsumed signal behind; withdraw it.
        _take_all(self._wait_semaphore)

    def notify_all(self):
        self.notify(sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = predicate()
            if outcome or deadline is None:
                if outcome:
                    return outcome
                self.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return outcome
            self.wait(left)


class Event(object):
    """A flag shared between processes.

    The flag is a semaphore whose value is 0 or 1; it is only changed with
    the condition's lock held, so reading it needs no lock at all.
    """

    def __init__(self, *, ctx):
        self._flag = ctx.Semaphore(0)
        self._cond = ctx.Condition(ctx.Lock())

    def is_set(self):
        return not self._flag._semlock._is_zero()

    def __repr__(self):
        state = 'set' if self.is_set() else 'unset'
        return '<%s at %#x %s>' % (type(self).__qualname__, id(self), state)

    def set(self):
        cond = self._cond
        cond.acquire()
        try:
            if self._flag._semlock._is_zero():
                self._flag.release()
            cond.notify_all()
        finally:
            cond.release()

    def wait(self, timeout=None):
        cond = self._cond
        cond.acquire()
        try:
            if not self.is_set():
                cond.wait(timeout)
            return self.is_set()
        finally:
            cond.release()

    def clear(self):
        cond = self._cond
        cond.acquire()
        try:
            self._flag.acquire(False)
        finally:
            cond.release()


def _sem_store(sem, value):
    """Make semaphore ``sem`` hold exactly ``value`` (caller serializes)."""
    sl = sem._semlock
    current = sl._get_value()
    while current < value:
        sl.release()
        current += 1
    while current > value:
        sl.acquire(False)
        current -= 1


class Barrier(threading.Barrier):
    """threading.Barrier whose shared state lives in process-shared memory.

    The algorithm is threading's own; only its two integers (``_state`` and
    ``_count``) have to be visible to every process.  They are kept as the
    values of two semaphores, read with sem_getvalue and written only while
    the barrier's condition lock is held, so no shared-memory arena is
    needed.  ``_state`` ranges over -2..1 and is stored offset by 2.
    """

    _STATE_BIAS = 2

    def __init__(self, parties, action=None, timeout=None, *, ctx):
        cells = (ctx.Semaphore(self._STATE_BIAS), ctx.Semaphore(0))
        self.__setstate__((parties, action, timeout, ctx.Condition(), cells))

    def __getstate__(self):
        return (self._parties, self._action, self._timeout, self._cond,
                self._cells)

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout, self._cond,
         self._cells) = state
        # The cells' readers, bound once: n_waiting and broken read them.
        self._read_state = self._cells[0]._semlock._get_value
        self._read_count = self._cells[1]._semlock._get_value

    @property
    def _state(self):
        return self._read_state() - self._STATE_BIAS

    @_state.setter
    def _state(self, value):
        _sem_store(self._cells[0], value + self._STATE_BIAS)

    @property
    def _count(self):
        return self._read_count()

    # threading's n_waiting and broken, reading the cells directly rather
    # than through the _state and _count properties (one property call
    # each instead of two).
    @property
    def n_waiting(self):
        """How many parties are waiting now (0 while the barrier drains,
        resets or is broken)."""
        if self._read_state() == self._STATE_BIAS:
            return self._read_count()
        return 0

    @property
    def broken(self):
        """True once the barrier is broken."""
        return self._read_state() == 0

    @_count.setter
    def _count(self, value):
        _sem_store(self._cells[1], value)
