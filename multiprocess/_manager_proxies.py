"""Manager client side: the per-process links to a server, the proxies
and the types a SyncManager serves (see managers.py for the design)."""

# A private module: its names are reached through the public modules,
# none through `import *` (CPython's suite checks every module has __all__).
__all__ = []

import array
import collections.abc
import os
import threading
import time
import types
import weakref

from . import connection
from . import process
from . import reduction
from . import util
from .context import get_spawning_popen
from ._manager_server import (State, Token, _PipePair, convert_to_error,
                              dispatch, listener_client)


# ----------------------------------------------------- per-process links

def _switch_to_pipes(conn):
    """Ask the server at the other end of Unix-socket ``conn`` to carry on
    over pipes; return the pipe pair, or ``conn`` itself when the server
    declines (then nothing has changed)."""
    import socket
    try:
        if dispatch(conn, None, 'use_pipes') != 'ready':
            return conn
    except Exception:
        return conn
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            reduction.sendfds(sock, [request_r, reply_w])
    finally:
        os.close(request_r)
        os.close(reply_w)
    pair = _PipePair(connection.Connection(reply_r, writable=False),
                     connection.Connection(request_w, readable=False))
    try:
        reply = conn.recv()
    except BaseException:
        pair.close()
        raise
    conn.close()
    if tuple(reply) != ('#RETURN', 'switched'):
        pair.close()
        raise convert_to_error(*reply)
    return pair


class _Link(object):
    """What a process keeps per manager address: a connection per thread
    (``tls.connection``) and one lock-guarded connection for decrefs, plus
    the live counted proxies (increffed again in a forked child)."""

    def __init__(self, address, serializer):
        self.address = address
        self.client = listener_client[serializer][1]
        # local servers (Unix socket, pickle) talk over pipes once connected
        self.pipes = (serializer == 'pickle' and
                      connection.address_type(address) == 'AF_UNIX')
        self.tls = util.ForkAwareLocal()
        self.idset = set()
        self.counted = {}                 # id(proxy) -> weakref to it
        self.ref_lock = threading.Lock()
        self.ref_conn = None
        util.register_after_fork(self, _Link._after_fork)

    def connect(self, authkey):
        conn = self.client(self.address, authkey=authkey)
        if self.pipes:
            conn = _switch_to_pipes(conn)
        self.tls.connection = conn
        return conn

    def send_refcount(self, name, arg, authkey):
        """incref/decref through the reference connection; a fresh one
        when it is busy (another thread, or a finalizer re-entering)."""
        if self.ref_lock.acquire(False):
            try:
                if self.ref_conn is None:
                    conn = self.client(self.address, authkey=authkey)
                    self.ref_conn = _switch_to_pipes(conn) if self.pipes else conn
                try:
                    return dispatch(self.ref_conn, None, name, (arg,))
                except (OSError, EOFError):
                    self.ref_conn = None
                    raise
            finally:
                self.ref_lock.release()
        conn = self.client(self.address, authkey=authkey)
        try:
            return dispatch(conn, None, name, (arg,))
        finally:
            conn.close()

    def _after_fork(self):
        self.ref_lock = threading.Lock()
        self.ref_conn = None
        inherited = list(self.counted.values())
        self.counted.clear()
        self.idset.clear()
        if not inherited:
            return
        # one request takes a reference for every inherited proxy
        alive = [p for p in (r() for r in inherited) if p is not None]
        if not alive:
            return
        try:
            missing = set(self.send_refcount(
                'incref_many', [p._id for p in alive], alive[0]._authkey))
        except Exception as exc:
            util.info('incref failed: %s', exc)
            return
        for proxy in alive:
            proxy._manager = None
            if proxy._id not in missing:
                proxy._hold_reference()


def _link_for(address, serializer):
    link = BaseProxy._address_to_local.get(address)
    if link is None:
        with BaseProxy._mutex:
            link = BaseProxy._address_to_local.get(address)
            if link is None:
                link = BaseProxy._address_to_local[address] = _Link(address, serializer)
    return link


def _drop_reference(link, ident, authkey, state, key):
    """Finalizer of a counted proxy: give its reference back."""
    link.counted.pop(key, None)
    link.idset.discard(ident)
    if state is not None and state.value != State.STARTED:
        return
    try:
        link.send_refcount('decref', ident, authkey)
    except Exception as exc:
        util.debug('... decref failed %s', exc)


def _drop_local_reference(server, ident):
    try:
        server.decref(None, ident)
    except KeyError:
        pass


# ----------------------------------------------------------------- proxies

class BaseProxy(object):
    """Stands for an object held by a manager server; method calls are
    forwarded to it."""

    _address_to_local = {}              # address -> _Link
    _mutex = util.ForkAwareThreadLock()

    def __init__(self, token, serializer, manager=None,
                 authkey=None, exposed=None, incref=True, manager_owned=False):
        link = _link_for(token.address, serializer)
        self._link = link
        self._tls = link.tls
        self._idset = link.idset
        self._token = token
        self._id = token.id
        self._manager = manager
        self._serializer = serializer
        self._Client = link.client
        self._owned_by_manager = manager_owned
        self._finalizer = None
        if authkey is not None:
            self._authkey = process.AuthenticationString(authkey)
        elif manager is not None:
            self._authkey = manager._authkey
        else:
            self._authkey = process.current_process().authkey
        if incref:
            self._incref()

    # ----------------------------------------------------------- calling

    def _connect(self):
        util.debug('making connection to manager')
        return self._link.connect(self._authkey)

    def _callmethod(self, methodname, args=(), kwds={}):
        """Call ``methodname`` of the referent and return its result."""
        try:
            conn = self._tls.connection
        except AttributeError:
            conn = self._connect()
        conn.send((self._id, methodname, args, kwds))
        kind, result = conn.recv()
        if kind == '#RETURN':
            return result
        try:
            return self._other_reply(kind, result)
        finally:
            del result      # not kept alive by the error's traceback

    def _other_reply(self, kind, result):
        if kind == '#PROXY':
            return self._proxy_from_reply(result)
        try:
            raise convert_to_error(kind, result)
        finally:
            del result      # see dispatch()

    _own_callmethod = False       # True in subclasses overriding _callmethod

    def __init_subclass__(cls, **kwds):
        super().__init_subclass__(**kwds)
        cls._own_callmethod = cls._callmethod is not BaseProxy._callmethod

    def _proxy_from_reply(self, result):
        exposed, typeid, ident = result
        token = Token(typeid, self._token.address, ident)
        proxytype = _proxytype_for(self._manager, typeid)
        proxy = proxytype(token, self._serializer, manager=self._manager,
                          authkey=self._authkey, exposed=exposed, incref=False)
        proxy._hold_reference()
        return proxy

    def _getvalue(self):
        """A copy of the referent."""
        return self._callmethod('#GETVALUE')

    # ------------------------------------------------ reference counting

    def _incref(self):
        if self._owned_by_manager:
            util.debug('owned_by_manager skipped INCREF of %r', self._id)
            return
        server = getattr(process.current_process(), '_manager_server', None)
        if server is not None and server._is_here(self._token.address):
            server.incref(None, self._id)
            self._finalizer = util.Finalize(
                self, _drop_local_reference, args=(server, self._id))
            return
        self._link.send_refcount('incref', self._id, self._authkey)
        self._hold_reference()

    def _hold_reference(self):
        """This proxy owns one counted reference: give it back when the
        proxy goes away (or at exit)."""
        link = self._link
        key = id(self)
        link.counted[key] = weakref.ref(self)
        link.idset.add(self._id)
        state = self._manager and self._manager._state
        self._finalizer = util.Finalize(
            self, _drop_reference,
            args=(link, self._id, self._authkey, state, key),
            exitpriority=10)

    @staticmethod
    def _decref(token, authkey, state, tls, idset, _Client):
        """Give back one reference to ``token`` (kept for compatibility)."""
        idset.discard(token.id)
        if state is None or state.value == State.STARTED:
            try:
                conn = _Client(token.address, authkey=authkey)
                dispatch(conn, None, 'decref', (token.id,))
                conn.close()
            except Exception as exc:
                util.debug('... decref failed %s', exc)

    def _after_fork(self):
        # the _Link increfs all inherited proxies at once; kept by name
        self._manager = None

    # ------------------------------------------------------------ pickling

    def __reduce__(self):
        kwds = {}
        if get_spawning_popen() is not None:
            kwds['authkey'] = self._authkey
        server = getattr(process.current_process(), '_manager_server', None)
        if server is not None and server._is_here(self._token.address):
            # the receiver gets a reference taken now (see module doc)
            server.incref(None, self._id)
            kwds['counted'] = True
        if getattr(self, '_isauto', False):
            kwds['exposed'] = self._exposed_
            return RebuildProxy, (AutoProxy, self._token, self._serializer, kwds)
        return RebuildProxy, (type(self), self._token, self._serializer, kwds)

    def __deepcopy__(self, memo):
        return self._getvalue()

    def __repr__(self):
        return (f'<{type(self).__name__} object, typeid {self._token.typeid!r}'
                f' at {id(self):#x}>')

    def __str__(self):
        try:
            return self._callmethod('__repr__')
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def RebuildProxy(func, token, serializer, kwds):
    """Unpickle a proxy: ``func(token, serializer, **kwds)``, counted as a
    reference unless it is being inherited by a starting child."""
    counted = kwds.pop('counted', False)
    inheriting = getattr(process.current_process(), '_inheriting', False)
    server = getattr(process.current_process(), '_manager_server', None)
    here = server is not None and server._is_here(token.address)
    if counted and not here:
        proxy = func(token, serializer, incref=False, **kwds)
        proxy._hold_reference()
        return proxy
    if counted and here:
        # a proxy pickled by the server and read back by the server
        proxy = func(token, serializer, incref=False, **kwds)
        proxy._finalizer = util.Finalize(
            proxy, _drop_local_reference, args=(server, token.id))
        return proxy
    incref = kwds.pop('incref', True) and not inheriting
    return func(token, serializer, incref=incref, **kwds)


def _proxytype_for(manager, typeid):
    if manager is not None:
        entry = manager._registry.get(typeid)
        if entry is not None:
            return entry[-1]
    return _known_proxytypes.get(typeid, AutoProxy)


_known_proxytypes = {}


def _forwarder(name):
    """A proxy method calling ``name`` on the referent.  It inlines
    BaseProxy._callmethod (one Python frame less per call) unless the
    proxy class overrides _callmethod."""
    def forward(self, /, *args, **kwds):
        if self._own_callmethod:
            return self._callmethod(name, args, kwds)
        try:
            conn = self._tls.connection
        except AttributeError:
            conn = self._connect()
        conn.send((self._id, name, args, kwds))
        kind, result = conn.recv()
        if kind == '#RETURN':
            return result
        try:
            return self._other_reply(kind, result)
        finally:
            del result      # not kept alive by the error's traceback
    forward.__name__ = name
    return forward


def MakeProxyType(name, exposed, _cache={}):
    """A BaseProxy subclass with one forwarding method per exposed name."""
    exposed = tuple(exposed)
    key = (name, exposed)
    made = _cache.get(key)
    if made is None:
        namespace = {meth: _forwarder(meth) for meth in exposed}
        namespace['_exposed_'] = exposed
        made = _cache[key] = type(name, (BaseProxy,), namespace)
    return made


def AutoProxy(token, serializer, manager=None, authkey=None,
              exposed=None, incref=True, manager_owned=False):
    """A proxy whose methods are the referent's exposed ones, asked of the
    server when not given."""
    if authkey is None:
        authkey = (process.current_process().authkey if manager is None
                   else manager._authkey)
    if exposed is None:
        conn = listener_client[serializer][1](token.address, authkey=authkey)
        with conn:
            exposed = dispatch(conn, None, 'get_methods', (token.id,))
    proxy = MakeProxyType(f'AutoProxy[{token.typeid}]', exposed)(
        token, serializer, manager=manager, authkey=authkey, incref=incref,
        manager_owned=manager_owned)
    proxy._isauto = True            # so that it pickles as an AutoProxy
    return proxy


# ------------------------------------------------------ managed types

class Namespace(object):
    """A bag of attributes; its repr lists the public ones, sorted."""

    def __init__(self, /, **kwds):
        vars(self).update(kwds)

    def __repr__(self):
        shown = sorted(f'{key}={value!r}' for key, value in self.__dict__.items()
                       if not key.startswith('_'))
        return f"{type(self).__name__}({', '.join(shown)})"


class Value(object):
    """A single value with get()/set() and a ``value`` attribute (the
    ``lock`` argument exists for signature compatibility: the server
    serializes access anyway)."""

    def __init__(self, typecode, value, lock=True):
        self._typecode, self._value = typecode, value

    def get(self):
        """The current value."""
        return self._value

    def set(self, value):
        """Replace the value."""
        self._value = value

    value = property(get, set)

    def __repr__(self):
        return f'{type(self).__name__}({self._typecode!r}, {self._value!r})'


def Array(typecode, sequence, lock=True):
    """An array.array of ``typecode`` holding ``sequence``."""
    return array.array(typecode, sequence)


# --------------------------------------------------------- proxy types

_ATTRIBUTE_HOOKS = frozenset(
    {'__getattribute__', '__setattr__', '__delattr__'})


def _forwarding(cls):
    """Class decorator: a forwarding method for each name in ``_exposed_``
    that the class body does not define itself."""
    for name in cls._exposed_:
        # attribute access itself stays local; it is reached explicitly
        # with _callmethod('__getattribute__', ...) where exposed
        if name not in cls.__dict__ and name not in _ATTRIBUTE_HOOKS:
            setattr(cls, name, _forwarder(name))
    return cls


def _remote_attribute(name):
    """A read-only property fetching attribute ``name`` of the referent."""
    return property(lambda self: self._callmethod('__getattribute__', (name,)),
                    doc=f'The referent\'s {name}.')


@_forwarding
class IteratorProxy(BaseProxy):
    _exposed_ = ('__next__', 'send', 'throw', 'close')

    def __iter__(self):
        return self


@_forwarding
class AcquirerProxy(BaseProxy):
    """Proxy of a manager's Lock, RLock, Semaphore or BoundedSemaphore."""

    _exposed_ = ('acquire', 'release', 'locked')

    def locked(self):
        """Whether the shared lock is held (the stdlib's from 3.14; here on
        every version).  A manager's semaphores have no locked()."""
        return self._callmethod('locked')

    def acquire(self, blocking=True, timeout=None):
        # Lock.acquire takes no timeout=None on every Python: leave it out
        args = (blocking,) if timeout is None else (blocking, timeout)
        return self._callmethod('acquire', args)

    def __enter__(self):
        return self._callmethod('acquire')

    def __exit__(self, exc_type, exc_val, exc_tb):
        return self._callmethod('release')


@_forwarding
class ConditionProxy(AcquirerProxy):
    _exposed_ = ('acquire', 'release', 'wait', 'notify', 'notify_all')

    def wait_for(self, predicate, timeout=None):
        """Wait until ``predicate()`` is true (evaluated here, between
        waits on the remote condition) or ``timeout`` runs out; return the
        last value of ``predicate()``."""
        if timeout is None:
            while not (outcome := predicate()):
                self.wait()
            return outcome
        give_up = time.monotonic() + timeout
        outcome = predicate()
        while not outcome and (left := give_up - time.monotonic()) > 0:
            self.wait(left)
            outcome = predicate()
        return outcome


@_forwarding
class EventProxy(BaseProxy):
    _exposed_ = ('is_set', 'set', 'clear', 'wait')


@_forwarding
class BarrierProxy(BaseProxy):
    _exposed_ = ('__getattribute__', 'wait', 'abort', 'reset')
    parties = _remote_attribute('parties')
    n_waiting = _remote_attribute('n_waiting')
    broken = _remote_attribute('broken')


class NamespaceProxy(BaseProxy):
    """Public attributes live on the server; names starting with '_' stay
    on the proxy itself."""
    _exposed_ = ('__getattribute__', '__setattr__', '__delattr__')

    def __getattr__(self, key):
        if key.startswith('_'):
            return object.__getattribute__(self, key)
        return object.__getattribute__(self, '_callmethod')('__getattribute__', (key,))

    def __setattr__(self, key, value):
        if key.startswith('_'):
            return object.__setattr__(self, key, value)
        return object.__getattribute__(self, '_callmethod')('__setattr__', (key, value))

    def __delattr__(self, key):
        if key.startswith('_'):
            return object.__delattr__(self, key)
        return object.__getattribute__(self, '_callmethod')('__delattr__', (key,))


@_forwarding
class ValueProxy(BaseProxy):
    _exposed_ = ('get', 'set')
    value = property(lambda self: self.get(), lambda self, v: self.set(v),
                     doc='The referent\'s value.')
    __class_getitem__ = classmethod(types.GenericAlias)


# clear/copy on lists and the dict operators (|, |=, reversed, fromkeys)
# arrived in the stdlib's proxies in 3.14; they are here on every version.
BaseListProxy = MakeProxyType('BaseListProxy', tuple("""
    __add__ __contains__ __delitem__ __getitem__ __len__ __mul__ __reversed__
    __rmul__ __setitem__ append clear copy count extend index insert pop
    remove reverse sort __imul__""".split()))


def _in_place(remote_name):
    """An augmented assignment run remotely by ``remote_name``; it must
    hand back the proxy itself, not a copy of the server's list."""
    def operator(self, value):
        self._callmethod(remote_name, (value,))
        return self
    operator.__name__ = remote_name
    return operator


class ListProxy(BaseListProxy):
    __iadd__ = _in_place('extend')
    __imul__ = _in_place('__imul__')
    __class_getitem__ = classmethod(types.GenericAlias)


_BaseDictProxy = MakeProxyType('DictProxy', tuple("""
    __contains__ __delitem__ __getitem__ __ior__ __iter__ __len__ __or__
    __reversed__ __ror__ __setitem__ clear copy fromkeys get items keys pop
    popitem setdefault update values""".split()))
# iter(d) gives a proxy to an iterator living next to the dict
_BaseDictProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


class DictProxy(_BaseDictProxy):
    # d |= other updates the shared dict and leaves d the proxy
    __ior__ = _in_place('update')
    __class_getitem__ = classmethod(types.GenericAlias)


# A shared set (SyncManager.set(), the stdlib's from 3.14).  Comparisons
# and the binary operators give plain sets; in-place ones change the
# shared set and leave the name bound to the proxy.
_BaseSetProxy = MakeProxyType('_BaseSetProxy', tuple("""
    __and__ __contains__ __ge__ __gt__ __iand__ __ior__ __isub__ __iter__
    __ixor__ __le__ __len__ __lt__ __or__ __rand__ __ror__ __rsub__ __rxor__
    __sub__ __xor__ add clear copy difference difference_update discard
    intersection intersection_update isdisjoint issubset issuperset pop
    remove symmetric_difference symmetric_difference_update union
    update""".split()))
_BaseSetProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


def _in_place_on_sets(remote_name):
    """An augmented assignment of a set, run remotely by ``remote_name``
    (the matching ``*_update`` method, whose result is not sent back).  As
    with a set, the other operand must be a set; anything else gets
    NotImplemented, so Python tries the binary operator and raises."""
    def operator(self, value):
        if isinstance(value, _BaseSetProxy):
            value = value._getvalue()
        elif not isinstance(value, (set, frozenset)):
            return NotImplemented
        self._callmethod(remote_name, (value,))
        return self
    operator.__name__ = remote_name
    return operator


class SetProxy(_BaseSetProxy):
    """Proxy of a shared set (``SyncManager.set()``): the set's methods
    and operators; ``s | t`` and the like give plain sets, ``s |= t`` and
    the other in-place operators change the shared set."""
    __iand__ = _in_place_on_sets('intersection_update')
    __ior__ = _in_place_on_sets('update')
    __isub__ = _in_place_on_sets('difference_update')
    __ixor__ = _in_place_on_sets('symmetric_difference_update')
    __class_getitem__ = classmethod(types.GenericAlias)


collections.abc.MutableSequence.register(BaseListProxy)
collections.abc.MutableMapping.register(_BaseDictProxy)
collections.abc.MutableSet.register(_BaseSetProxy)

ArrayProxy = MakeProxyType('ArrayProxy', ('__len__', '__getitem__', '__setitem__'))

_POOL_RESULT_TYPES = {'apply_async': 'AsyncResult', 'map_async': 'AsyncResult',
                      'starmap_async': 'AsyncResult', 'imap': 'Iterator',
                      'imap_unordered': 'Iterator'}
BasePoolProxy = MakeProxyType('PoolProxy', tuple(sorted(
    ['apply', 'close', 'join', 'map', 'starmap', 'terminate']
    + list(_POOL_RESULT_TYPES))))
BasePoolProxy._method_to_typeid_ = _POOL_RESULT_TYPES


class PoolProxy(BasePoolProxy):
    """A proxy to a Pool in the manager; as a context manager it
    terminates the pool on exit, like Pool itself."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.terminate()
