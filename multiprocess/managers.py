"""Managers: objects living in a server process, used through proxies.

How a call travels::

    client thread                                   manager server process
    -------------                                   ----------------------
    proxy.method(*a) --(ident, name, a, kw)-->  connection thread: look up
                                                 ident, check `exposed`, call
                     <--(kind, value)---------   reply '#RETURN' / '#ERROR' /
                                                 '#PROXY' / '#TRACEBACK'

Design choices, and why:

* One wire protocol for everything.  A request is ``(ident, name, args,
  kwds)``; ``ident`` None addresses the server itself (``create``,
  ``incref``, ``shutdown``, ...).  So any connection can carry both kinds of
  request, and a process keeps *one* connection per thread per manager
  (a ``_Link``), shared by the manager object and all of its proxies: making
  a proxy or calling it never opens a socket after the first time.
* A proxy method call is one send and one recv on that connection; the
  generated proxy methods are closures (no per-call lookup of the name), and
  the server's per-connection loop holds its lookups in locals.
* Reference counting: every counted proxy owns exactly one reference on the
  server.  ``create`` and '#PROXY' replies hand the caller a reference that
  is already counted (no extra incref round trip); a proxy unpickled in
  another process increfs once; a forked child increfs all the proxies it
  inherited in one request.  Decrefs go through a separate lock-guarded
  connection, because a finalizer may run from the garbage collector in the
  middle of a call on the thread's own connection.
* Inside the server process a proxy to one of the server's own objects
  counts as a reference, taken and dropped in-process.  When the server
  pickles such a proxy into a reply it takes a reference for the receiver
  first, so the object cannot vanish between the reply and the receiver's
  first use (say ``d['sub']`` followed at once by ``d.clear()``).
* Values travel through the connection's pickler (dill's reach), so a
  managed dict can hold lambdas and instances of ``__main__`` classes.
"""

import array
import contextlib
import itertools
import os
import queue
import signal
import sys
import threading
import time
import types
import weakref
from traceback import format_exc

from . import connection
from . import pool
from . import process
from . import reduction
from . import util
from . import context as _context
from .context import get_spawning_popen
from .exceptions import ProcessError

try:
    from . import shared_memory
except ImportError:                                  # pragma: no cover
    HAS_SHMEM = False
else:
    HAS_SHMEM = True

# The server and the proxies live in their own modules; this one is the
# public face (every name the standard library's module offers) and the
# managers themselves.
from ._manager_server import (reduce_array, rebuild_as_list, Token, State,
                              RemoteError, convert_to_error, dispatch,
                              all_methods, public_methods, listener_client,
                              Server, _PipePair)
from ._manager_proxies import (_link_for, BaseProxy, RebuildProxy,
                               _known_proxytypes, MakeProxyType, AutoProxy,
                               Namespace, Value, Array, IteratorProxy,
                               AcquirerProxy, ConditionProxy, EventProxy,
                               BarrierProxy, NamespaceProxy, ValueProxy,
                               BaseListProxy, ListProxy, DictProxy, ArrayProxy,
                               SetProxy, BasePoolProxy, PoolProxy)

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token']
if HAS_SHMEM:
    __all__.append('SharedMemoryManager')


# ---------------------------------------------------------------- managers

class BaseManager(object):
    """Starts (or connects to) a server process holding shared objects;
    the types it can make are added with ``register()``."""

    _Server = Server          # the server class _run_server starts
    _registry = {}            # typeid -> (callable, exposed, m2t, proxytype)

    def __init__(self, address=None, authkey=None, serializer='pickle',
                 ctx=None, *, shutdown_timeout=1.0):
        self._Listener, self._Client = listener_client[serializer]
        self._serializer = serializer
        self._address = address        # the real one once the server runs
        self._authkey = process.AuthenticationString(
            process.current_process().authkey if authkey is None else authkey)
        self._state = State()
        self._state.value = State.INITIAL
        self._ctx = ctx or _context._default_context
        self._process = None
        self._shutdown_timeout = shutdown_timeout

    # ------------------------------------------------------------- life

    def _refuse_unless_initial(self):
        state = self._state.value
        if state == State.STARTED:
            raise ProcessError('Already started server')
        if state == State.SHUTDOWN:
            raise ProcessError('Manager has shut down')
        if state != State.INITIAL:
            raise ProcessError(f'Unknown state {state!r}')

    def __enter__(self):
        """Start the server unless it is running already."""
        if self._state.value != State.STARTED:
            self.start()           # refuses a manager that has shut down
        return self

    def __exit__(self, *exc_info):
        self.shutdown()

    def get_server(self):
        """A Server for this manager's registry, to run in this process
        with ``serve_forever()``."""
        self._refuse_unless_initial()
        return self._Server(self._registry, self._address,
                            self._authkey, self._serializer)

    def connect(self):
        """Use a server that is already running at ``address``."""
        conn = self._Client(self._address, authkey=self._authkey)
        try:
            dispatch(conn, None, 'dummy')
        finally:
            conn.close()
        self._state.value = State.STARTED

    def start(self, initializer=None, initargs=()):
        """Start the server in a child process (``initializer(*initargs)``
        runs there first)."""
        self._refuse_unless_initial()
        if not (initializer is None or callable(initializer)):
            raise TypeError('initializer must be a callable')
        # a new server: forget connections to an earlier one at this address
        with BaseProxy._mutex:
            BaseProxy._address_to_local.pop(self._address, None)
        # the child reports the address it listens on through this pipe
        address_in, address_out = connection.Pipe(duplex=False)
        server_args = (self._registry, self._address, self._authkey,
                       self._serializer, address_out, initializer, initargs)
        child = self._ctx.Process(target=type(self)._run_server,
                                  args=server_args)
        child.name = f"{type(self).__name__}-{child.name.rpartition('-')[2]}"
        self._process = child
        child.start()
        address_out.close()
        with address_in:
            try:
                self._address = address_in.recv()
            except EOFError:
                raise ProcessError('the manager process exited before '
                                   'reporting its address') from None
        self._state.value = State.STARTED
        self.shutdown = util.Finalize(
            self, type(self)._finalize_manager,
            args=(child, self._address, self._authkey, self._state,
                  self._Client, self._shutdown_timeout),
            exitpriority=0)

    @classmethod
    def _run_server(cls, registry, address, authkey, serializer, writer,
                    initializer=None, initargs=()):
        """Body of the manager process: set up, report the address through
        ``writer``, serve until shutdown."""
        # Ctrl-C in a terminal reaches the whole process group; the server
        # must outlive it so that the parent can still shut it down in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if initializer is not None:
            initializer(*initargs)
        with writer:
            server = cls._Server(registry, address, authkey, serializer)
            writer.send(server.address)
        util.info('manager serving at %r', server.address)
        # A manager started by start() is shut down by its parent's exit
        # handlers; if the parent dies without running them (SIGKILL, a
        # crash), nobody would ever stop it, and it would keep its pools'
        # workers and shared objects alive: stop when the parent is gone.
        parent = process.parent_process()
        if parent is not None:
            threading.Thread(target=cls._stop_with_parent,
                             args=(server, parent), daemon=True,
                             name='manager-parent-watch').start()
        server.serve_forever()

    @staticmethod
    def _stop_with_parent(server, parent):
        parent.join()
        if not server.stop_event.is_set():
            util.info('manager: parent process %s is gone, shutting down',
                      parent.pid)
            server.stop_event.set()

    def _create(self, typeid, /, *args, **kwds):
        """Make an object of ``typeid`` on the server: (token, exposed).
        The caller owns one reference to it."""
        link = _link_for(self._address, self._serializer)
        request = (None, 'create', (typeid,) + args, kwds)
        conn = getattr(link.tls, 'connection', None)
        reply = None
        if conn is not None:
            try:
                conn.send(request)
                reply = conn.recv()
            except (OSError, EOFError):
                # the cached connection leads to a server that is gone (say,
                # one restarted at this address): nothing was made there
                reply = None
        if reply is None:
            conn = link.connect(self._authkey)
            conn.send(request)
            reply = conn.recv()
        if reply[0] != '#RETURN':
            raise convert_to_error(*reply)
        ident, exposed = reply[1]
        return Token(typeid, self._address, ident), exposed

    def join(self, timeout=None):
        """Wait for the server process to end."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def _ask_server(self, name):
        conn = self._Client(self._address, authkey=self._authkey)
        try:
            return dispatch(conn, None, name)
        finally:
            conn.close()

    def _debug_info(self):
        """Text describing the server's live objects."""
        return self._ask_server('debug_info')

    def _number_of_objects(self):
        """How many objects the server holds for proxies."""
        return self._ask_server('number_of_objects')

    @staticmethod
    def _finalize_manager(process, address, authkey, state, _Client,
                          shutdown_timeout):
        """Ask the server to stop; escalate to SIGTERM, then SIGKILL, each
        given ``shutdown_timeout`` seconds."""
        # Each step is logged in the standard library's (documented) words:
        # people search their logs for them.
        escalation = (
            (('sending shutdown message to manager',),
             _polite_shutdown(address, authkey, _Client)),
            (('manager still alive',
              'trying to `terminate()` manager process'), process.terminate),
            (('manager still alive after terminate',), process.kill))
        for messages, step in escalation:
            if not process.is_alive():
                break
            for message in messages:
                util.info(message)
            step()
            process.join(timeout=shutdown_timeout)
        state.value = State.SHUTDOWN
        with BaseProxy._mutex:
            BaseProxy._address_to_local.pop(address, None)

    address = property(lambda self: self._address,
                       doc="Where the server listens (known once started).")

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Make ``typeid`` something this manager's server can create (with
        ``callable``) and, with ``create_method``, a method of the manager
        returning a ``proxytype`` for a new one.  ``exposed`` and
        ``method_to_typeid`` default to the proxy type's ``_exposed_`` and
        ``_method_to_typeid_``."""
        proxytype = proxytype or AutoProxy
        if exposed is None:
            exposed = getattr(proxytype, '_exposed_', None)
        method_to_typeid = (method_to_typeid
                            or getattr(proxytype, '_method_to_typeid_', None))
        for pair in (method_to_typeid or {}).items():
            if not all(isinstance(name, str) for name in pair):
                raise TypeError('method_to_typeid maps str to str, not %r: %r'
                                % pair)
        # each subclass gets a registry of its own on first registration
        registry = cls.__dict__.get('_registry')
        if registry is None:
            registry = cls._registry = dict(cls._registry)
        registry[typeid] = (callable, exposed, method_to_typeid, proxytype)
        _known_proxytypes.setdefault(typeid, proxytype)
        if create_method:
            setattr(cls, typeid, _creator(cls, typeid, proxytype))


def _creator(cls, typeid, proxytype):
    """The manager method registered for ``typeid``: create an object on
    the server and return a proxy owning the reference create() took."""
    def create_shared(self, /, *args, **kwds):
        util.debug('requesting creation of a shared %r object', typeid)
        token, exposed = self._create(typeid, *args, **kwds)
        proxy = proxytype(token, self._serializer, manager=self,
                          authkey=self._authkey, exposed=exposed, incref=False)
        proxy._hold_reference()
        return proxy
    create_shared.__name__ = typeid
    create_shared.__qualname__ = f'{cls.__qualname__}.{typeid}'
    return create_shared


def _polite_shutdown(address, authkey, client):
    """A callable sending the server a shutdown request (errors ignored:
    the server may be gone already)."""
    def shutdown_request():
        with contextlib.suppress(Exception):
            with client(address, authkey=authkey) as conn:
                dispatch(conn, None, 'shutdown')
    return shutdown_request


def _empty_set_of(kind):
    return kind()


class ProcessLocalSet(set):
    """A set that a forked child gets back empty, and that pickles empty."""

    def __init__(self):
        util.register_after_fork(self, set.clear)

    def __reduce__(self):
        return _empty_set_of, (type(self),)


class SyncManager(BaseManager):
    """A manager offering queues, synchronization primitives, pools and
    shared list/dict/Namespace/Value/Array objects."""


def _rlock_factory():
    """What a server makes for SyncManager.RLock(): threading's RLock,
    with the locked() that AcquirerProxy exposes where threading's lacks
    it (before 3.14)."""
    base = type(threading.RLock())
    if hasattr(base, 'locked'):
        return threading.RLock

    class RLock(base):
        def locked(self):
            if self._is_owned():
                return True
            # held by another thread of the server unless we can take it
            if self.acquire(False):
                self.release()
                return False
            return True
    return RLock


# typeid: (what the server calls to make one, proxy type); None: AutoProxy
_SYNC_TYPES = {
    'Queue': (queue.Queue, None), 'JoinableQueue': (queue.Queue, None),
    'Event': (threading.Event, EventProxy),
    'Lock': (threading.Lock, AcquirerProxy),
    'RLock': (_rlock_factory(), AcquirerProxy),
    'Semaphore': (threading.Semaphore, AcquirerProxy),
    'BoundedSemaphore': (threading.BoundedSemaphore, AcquirerProxy),
    'Condition': (threading.Condition, ConditionProxy),
    'Barrier': (threading.Barrier, BarrierProxy),
    'Pool': (pool.Pool, PoolProxy),
    'list': (list, ListProxy), 'dict': (dict, DictProxy),
    'set': (set, SetProxy),
    'Value': (Value, ValueProxy), 'Array': (Array, ArrayProxy),
    'Namespace': (Namespace, NamespaceProxy),
}
for _typeid, (_factory, _proxytype) in _SYNC_TYPES.items():
    SyncManager.register(_typeid, _factory, _proxytype)
# only ever made from results of other calls (iter(dict), pool.map_async)
for _typeid, _proxytype in (('Iterator', IteratorProxy), ('AsyncResult', None)):
    SyncManager.register(_typeid, proxytype=_proxytype, create_method=False)
del _typeid, _factory, _proxytype


# ----------------------------------------------------- shared memory

if HAS_SHMEM:

    class _SharedMemoryTracker:
        """Names of the shared memory segments a server must unlink."""

        def __init__(self, name, segment_names=None):
            self.shared_memory_context_name = name
            self.segment_names = list(segment_names or ())

        def register_segment(self, segment_name):
            util.debug('Register segment %r in pid %d', segment_name,
                       os.getpid())
            self.segment_names.append(segment_name)

        def destroy_segment(self, segment_name):
            util.debug('Destroy segment %r in pid %d', segment_name,
                       os.getpid())
            self.segment_names.remove(segment_name)
            segment = shared_memory.SharedMemory(segment_name)
            segment.close()
            segment.unlink()

        def unlink(self):
            for segment_name in list(self.segment_names):
                try:
                    self.destroy_segment(segment_name)
                except FileNotFoundError:
                    pass

        def __del__(self):
            self.unlink()

        def __getstate__(self):
            return self.shared_memory_context_name, self.segment_names

        def __setstate__(self, state):
            self.__init__(*state)

        def __repr__(self):
            return (f'<{type(self).__name__} '
                    f'{self.shared_memory_context_name!r}>')

    class SharedMemoryServer(Server):
        """A Server that also owns shared memory segments, unlinked at
        shutdown."""

        public = Server.public + ['track_segment', 'release_segment',
                                  'list_segments']

        def __init__(self, *args, **kwargs):
            Server.__init__(self, *args, **kwargs)
            address = self.address
            if isinstance(address, bytes):
                address = os.fsdecode(address)
            self.shared_memory_context = _SharedMemoryTracker(
                f'shm_{address}_{os.getpid()}')

        def create(self, c, typeid, /, *args, **kwargs):
            factory = self.registry[typeid][0]
            if getattr(factory, '_shared_memory_proxy', False):
                kwargs['shared_memory_context'] = self.shared_memory_context
            return Server.create(self, c, typeid, *args, **kwargs)

        def shutdown(self, c):
            self.shared_memory_context.unlink()
            return Server.shutdown(self, c)

        def track_segment(self, c, segment_name):
            self.shared_memory_context.register_segment(segment_name)

        def release_segment(self, c, segment_name):
            self.shared_memory_context.destroy_segment(segment_name)

        def list_segments(self, c):
            return self.shared_memory_context.segment_names

    class SharedMemoryManager(BaseManager):
        """A manager whose server unlinks, at shutdown, every
        SharedMemory / ShareableList made through it."""

        _Server = SharedMemoryServer

        def __init__(self, *args, **kwargs):
            if os.name == 'posix':
                # the server must share our resource tracker, or the
                # tracker would report its segments as leaked
                from . import resource_tracker
                resource_tracker.ensure_running()
            BaseManager.__init__(self, *args, **kwargs)
            util.debug('%s created by pid %d', type(self).__name__, os.getpid())

        def __del__(self):
            util.debug('%s.__del__ by pid %d', type(self).__name__, os.getpid())

        def get_server(self):
            self._refuse_unless_initial()
            return self._Server(self._registry, self._address,
                                self._authkey, self._serializer)

        def _track(self, name):
            if self._state.value != State.STARTED:
                raise ValueError('the SharedMemoryManager is not started')
            conn = self._Client(self._address, authkey=self._authkey)
            try:
                dispatch(conn, None, 'track_segment', (name,))
            finally:
                conn.close()

        def _tracked(self, make, on_failure):
            if self._state.value != State.STARTED:
                raise ValueError('the SharedMemoryManager is not started')
            made = make()
            try:
                self._track(on_failure(made))
            except BaseException:
                target = getattr(made, 'shm', made)
                target.close()
                target.unlink()
                raise
            return made

        def SharedMemory(self, size):
            """A new SharedMemory of ``size`` bytes owned by the server."""
            return self._tracked(
                lambda: shared_memory.SharedMemory(None, create=True, size=size),
                lambda shm: shm.name)

        def ShareableList(self, sequence):
            """A new ShareableList holding ``sequence``, owned by the server."""
            return self._tracked(
                lambda: shared_memory.ShareableList(sequence),
                lambda sl: sl.shm.name)


# Public objects say they come from here (reprs, pickles by reference).
for _obj in (reduce_array, rebuild_as_list, Token, State, RemoteError,
             convert_to_error, dispatch, all_methods, public_methods, Server,
             BaseProxy, RebuildProxy, MakeProxyType, AutoProxy, Namespace,
             Value, Array, IteratorProxy, AcquirerProxy, ConditionProxy,
             EventProxy, BarrierProxy, NamespaceProxy, ValueProxy,
             BaseListProxy, ListProxy, DictProxy, ArrayProxy, BasePoolProxy,
             PoolProxy):
    _obj.__module__ = __name__
del _obj
