"""Contexts: one object per start method, offering the whole public API.

A context is what ``multiprocess.get_context(method)`` returns.  Its factory
methods (``Lock()``, ``Queue()``, ``Pool()``, ...) build objects bound to
that start method.  This is the one place where the package reaches upward:
each factory imports its implementing module at call time (``_sibling``),
so importing ``context`` stays cheap and free of import cycles.

There are three concrete contexts (``fork``, ``spawn``, ``forkserver``), one
``Process`` subclass each, whose ``_Popen`` hook names the module that
starts the child.  ``_default_context`` (a ``DefaultContext``) is what the
package itself is bound to; it forwards to one concrete context, chosen at
most once with ``set_start_method`` unless forced.  On Linux the default is
``fork``, as in the standard library of Python 3.11.

``reduction`` (the pickling layer) is reachable as ``context.reduction``
like in the standard library, and replaceable through the ``reducer``
property.  It imports this module, so this module does not import it: the
package (its composition root) does, and ``reduction`` hands itself over
when loaded (``_reduction_imported``).
"""

import importlib
import os
import sys

from . import process
# Which popen is spawning a child on this thread: state of ``process``
# (AuthenticationString consults it there), offered here under the
# standard library's names.
from .process import get_spawning_popen, set_spawning_popen, assert_spawning
from .exceptions import (ProcessError, BufferTooShort, TimeoutError,
                         AuthenticationError, WorkerLostError,
                         TaskTimeoutError)

__all__ = ()


def _sibling(name):
    """Return ``multiprocess.<name>``, importing it on first use."""
    # Factories such as RawValue() run this on every call: a dict lookup
    # first, because import_module() costs about a microsecond even when
    # the module is already loaded.
    qualified = __package__ + '.' + name
    module = sys.modules.get(qualified)
    if module is None:
        module = importlib.import_module(qualified)
    return module


def _reduction():
    # A global once reduction is loaded (always, after the package's import);
    # the import is the fallback for the package's own import, before then.
    mod = globals().get('reduction')
    if mod is None:
        mod = globals()['reduction'] = _sibling('reduction')
    return mod


def _reduction_imported(module):
    """Called by ``reduction`` at the end of its import: from then on it is a
    plain global here, unless a reducer was set before (the property's
    setter), which stays."""
    globals().setdefault('reduction', module)


class BaseContext(object):
    """The public API of the package, bound to one start method."""

    _name = None        # the start method, in concrete contexts

    current_process = staticmethod(process.current_process)
    parent_process = staticmethod(process.parent_process)
    active_children = staticmethod(process.active_children)

    # The exception classes, reachable from any context object.
    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError
    WorkerLostError = WorkerLostError
    TaskTimeoutError = TaskTimeoutError

    def cpu_count(self):
        """How many CPUs the machine has."""
        count = os.cpu_count()
        if count is None:
            raise NotImplementedError('cannot determine number of cpus')
        return count

    # -- factories: each imports the module that implements it --------

    def Manager(self):
        """Start a server process and return a ``SyncManager`` for it."""
        manager = _sibling('managers').SyncManager(ctx=self.get_context())
        manager.start()
        return manager

    def Pipe(self, duplex=True):
        """A pair of connected ``Connection`` objects."""
        return _sibling('connection').Pipe(duplex)

    def Lock(self):
        """A non-recursive lock shared between processes."""
        return _sibling('synchronize').Lock(ctx=self.get_context())

    def RLock(self):
        """A recursive lock shared between processes."""
        return _sibling('synchronize').RLock(ctx=self.get_context())

    def Condition(self, lock=None):
        """A condition variable, over ``lock`` or a new ``RLock``."""
        return _sibling('synchronize').Condition(lock, ctx=self.get_context())

    def Semaphore(self, value=1):
        """A counting semaphore."""
        return _sibling('synchronize').Semaphore(value,
                                                 ctx=self.get_context())

    def BoundedSemaphore(self, value=1):
        """A semaphore that may not be released above its initial value."""
        return _sibling('synchronize').BoundedSemaphore(
            value, ctx=self.get_context())

    def Event(self):
        """An event flag shared between processes."""
        return _sibling('synchronize').Event(ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        """A barrier for ``parties`` processes."""
        return _sibling('synchronize').Barrier(parties, action, timeout,
                                               ctx=self.get_context())

    def Queue(self, maxsize=0):
        """A FIFO queue fed by a background thread."""
        return _sibling('queues').Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0):
        """A ``Queue`` with ``task_done()`` and ``join()``."""
        return _sibling('queues').JoinableQueue(maxsize,
                                                ctx=self.get_context())

    def SimpleQueue(self):
        """A queue without a feeder thread or size limit."""
        return _sibling('queues').SimpleQueue(ctx=self.get_context())

    def Pool(self, processes=None, initializer=None, initargs=(),
             maxtasksperchild=None, *, task_timeout=None,
             max_memory_per_child=None):
        """A pool of worker processes (``task_timeout`` and
        ``max_memory_per_child``: see ``multiprocess.pool.Pool``)."""
        return _sibling('pool').Pool(processes, initializer, initargs,
                                     maxtasksperchild,
                                     context=self.get_context(),
                                     task_timeout=task_timeout,
                                     max_memory_per_child=max_memory_per_child)

    def RawValue(self, typecode_or_type, *args):
        """A ctypes object in shared memory, without a lock."""
        return _sibling('sharedctypes').RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        """A ctypes array in shared memory, without a lock."""
        return _sibling('sharedctypes').RawArray(typecode_or_type,
                                                 size_or_initializer)

    def Value(self, typecode_or_type, *args, lock=True):
        """A ctypes object in shared memory, guarded by a lock."""
        return _sibling('sharedctypes').Value(typecode_or_type, *args,
                                              lock=lock,
                                              ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        """A ctypes array in shared memory, guarded by a lock."""
        return _sibling('sharedctypes').Array(typecode_or_type,
                                              size_or_initializer, lock=lock,
                                              ctx=self.get_context())

    # -- configuration and helpers -------------------------------------

    def freeze_support(self):
        """Only meaningful for frozen Windows executables: a no-op here,
        kept so that portable programs can call it unconditionally."""
        if sys.platform == 'win32' and getattr(sys, 'frozen', False):
            _sibling('spawn').freeze_support()

    def get_logger(self):
        """The package's logger, created on first use."""
        return _sibling('util').get_logger()

    def log_to_stderr(self, level=None):
        """Make the package's logger print to stderr; returns the logger."""
        return _sibling('util').log_to_stderr(level)

    def allow_connection_pickling(self):
        """Make connections and sockets picklable.

        Importing ``connection`` registers its reducers; nothing else is
        needed on POSIX."""
        _sibling('connection')

    def set_executable(self, executable):
        """The interpreter that ``spawn`` runs children with."""
        _sibling('spawn').set_executable(executable)

    def set_forkserver_preload(self, module_names, *, on_error='ignore'):
        """Modules the fork server imports once, before forking children.

        ``on_error`` says what an ImportError while preloading does:
        'ignore' (the default), 'warn' (an ImportWarning on the server's
        stderr) or 'fail' (the server exits with the error, and starting
        processes with it fails).  The stdlib added ``on_error`` in 3.15;
        it exists here on every version.
        """
        _sibling('forkserver').set_forkserver_preload(module_names,
                                                      on_error=on_error)

    def get_context(self, method=None):
        """The context for ``method``; this one when method is None."""
        if method is None:
            return self
        ctx = _concrete_contexts.get(method)
        if ctx is None:
            raise ValueError(f'cannot find context for {method!r}')
        ctx._check_available()
        return ctx

    def set_start_method(self, method, force=False):
        """Only the default context's start method can be chosen."""
        raise ValueError('cannot set start method of concrete context')

    def get_start_method(self, allow_none=False):
        """The name of this context's start method."""
        return self._name

    def get_all_start_methods(self):
        """The start methods this platform offers, the default first."""
        return list(_all_start_methods())

    def _check_available(self):
        """Raise ValueError if this start method cannot be used here."""

    def _get_reducer(self):
        return _reduction()

    def _set_reducer(self, reduction):
        globals()['reduction'] = reduction

    reducer = property(_get_reducer, _set_reducer, doc=
                       "The module that pickles objects sent to other "
                       "processes (``multiprocess.reduction``).")


# -- the process classes, one per start method ----------------------------

class _StartedBy(process.BaseProcess):
    """A process class tied to one start method, whose machinery lives in
    module ``_popen_module`` (imported when a child is started)."""

    _popen_module = None

    @classmethod
    def _Popen(cls, process_obj):
        return _sibling(cls._popen_module).Popen(process_obj)

    def _adopt_start_method(self):
        if self._start_method is not None:
            _force_start_method(self._start_method)


class ForkProcess(_StartedBy):
    _start_method = 'fork'
    _popen_module = 'popen_fork'


class SpawnProcess(_StartedBy):
    _start_method = 'spawn'
    _popen_module = 'popen_spawn_posix'

    @staticmethod
    def _after_fork():
        # A spawned child is a fresh interpreter: there is no inherited
        # state to repair.
        pass


class ForkServerProcess(_StartedBy):
    _start_method = 'forkserver'
    _popen_module = 'popen_forkserver'


class Process(process.BaseProcess):
    """The process class of the default context: it uses whichever start
    method the default context resolves to when it is started."""

    _start_method = None

    @staticmethod
    def _Popen(process_obj):
        return _chosen_process_class()._Popen(process_obj)

    @staticmethod
    def _after_fork():
        return _chosen_process_class()._after_fork()


def _chosen_process_class():
    return _default_context.get_context().Process


# -- the contexts ---------------------------------------------------------

class ForkContext(BaseContext):
    """Children are forked copies of the current process."""
    Process = ForkProcess
    _name = ForkProcess._start_method


class SpawnContext(BaseContext):
    """Children are fresh interpreters that import the main module."""
    Process = SpawnProcess
    _name = SpawnProcess._start_method


class ForkServerContext(BaseContext):
    """Children are forked from a server process started early on."""
    Process = ForkServerProcess
    _name = ForkServerProcess._start_method

    def _check_available(self):
        if not _reduction().HAVE_SEND_HANDLE:
            raise ValueError('forkserver start method not available')


class DefaultContext(BaseContext):
    """Forwards to a concrete context, fixed on first use.

    ``_default_context`` is the concrete context used when nothing was
    chosen; ``_actual_context`` is the one in force (None until the first
    ``get_context()``/``get_start_method()`` or ``set_start_method()``).
    """

    Process = Process

    def __init__(self, context):
        self._default_context = context
        self._actual_context = None

    def _resolve(self):
        if self._actual_context is None:
            self._actual_context = self._default_context
        return self._actual_context

    def get_context(self, method=None):
        if method is not None:
            return BaseContext.get_context(self, method)
        # Inline rather than through _resolve(): the common call.
        ctx = self._actual_context
        if ctx is None:
            ctx = self._resolve()
        return ctx

    def set_start_method(self, method, force=False):
        if self._actual_context is not None and not force:
            raise RuntimeError('context has already been set')
        if method is None and force:
            # Forget the choice: the next use picks the default again.
            self._actual_context = None
        else:
            self._actual_context = self.get_context(method)

    def get_start_method(self, allow_none=False):
        ctx = self._actual_context
        if ctx is None:
            if allow_none:
                return None
            ctx = self._resolve()
        return ctx._name


_concrete_contexts = {ctx._name: ctx for ctx in
                      (ForkContext(), SpawnContext(), ForkServerContext())}


def _platform_default_method():
    """The start method used when none was chosen: the running version's.

    3.14 made forkserver the default wherever it exists but on macOS, so
    that a program with threads no longer forks them by surprise; macOS
    has used spawn since 3.8 (its system libraries do not survive a fork);
    everywhere else fork was the default before 3.14.
    """
    if sys.platform == 'darwin':
        return 'spawn'
    if sys.version_info >= (3, 14):
        return 'forkserver' if _reduction().HAVE_SEND_HANDLE else 'spawn'
    return 'fork'


def _all_start_methods():
    """The platform's start methods, default first (computed once: the
    answer cannot change within a process)."""
    global _start_methods
    if _start_methods is None:
        methods = (['spawn', 'fork'] if sys.platform == 'darwin'
                   else ['fork', 'spawn'])
        if _reduction().HAVE_SEND_HANDLE:
            methods.append('forkserver')
        default = _platform_default_method()
        methods.remove(default)
        _start_methods = (default, *methods)
    return _start_methods


_start_methods = None


_default_context = DefaultContext(_concrete_contexts[_platform_default_method()])


def _force_start_method(method):
    """Used by a child so that its default context matches its own start
    method, whatever the parent had chosen."""
    _default_context._actual_context = _concrete_contexts[method]


# -- handing an fd to a process that is already running --------------------
#
# Outside a spawn, ``reduction.DupFd`` hands an fd over through the fd
# sharer (``resource_sharer``): a server built on connections, which are
# built on pickling, so the pickling layer may not import it.  The package
# (``multiprocess/__init__.py``, which may import anything) plugs it in
# here when it is imported, before anything can be pickled.

_fd_sharer = None
