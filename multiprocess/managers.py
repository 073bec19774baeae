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

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token']
if HAS_SHMEM:
    __all__.append('SharedMemoryManager')


# ---------------------------------------------------------------- pickling

def reduce_array(a):
    """array.array travels as its typecode and raw bytes."""
    return array.array, (a.typecode, a.tobytes())


def rebuild_as_list(obj):
    """Dict views (keys/values/items) arrive on the other side as lists."""
    return list, (list(obj),)


reduction.register(array.array, reduce_array)
for _view in {type(getattr({}, _m)()) for _m in ('keys', 'values', 'items')}:
    reduction.register(_view, rebuild_as_list)
del _view


# ------------------------------------------------------------------ tokens

class Token(object):
    """Names one object held by a manager server: its registered type id,
    the server's address and the object's identifier there."""

    __slots__ = ('typeid', 'address', 'id')

    def __init__(self, typeid, address, id):
        if isinstance(address, list):          # came through XML-RPC
            address = tuple(address)
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self):
        return self.typeid, self.address, self.id

    def __setstate__(self, state):
        self.__init__(*state)

    def __repr__(self):
        return (f'{type(self).__name__}(typeid={self.typeid!r}, '
                f'address={self.address!r}, id={self.id!r})')


class State(object):
    """Life cycle of a manager: INITIAL, then STARTED, then SHUTDOWN."""
    __slots__ = ['value']
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2


# ---------------------------------------------------------------- errors

class RemoteError(Exception):
    """The server failed to carry out a request; the argument is the
    server-side traceback text."""

    def __str__(self):
        rule = '-' * 75
        return f'\n{rule}\n{self.args[0]}{rule}'


def _remote_error(result):
    if not isinstance(result, str):
        raise TypeError(f'expected a traceback text, got {type(result)}')
    return RemoteError(result)


def _unserializable(result):
    return RemoteError(f'Unserializable message: {_remote_error(result).args[0]}\n')


_REPLY_TO_ERROR = {
    '#ERROR': lambda result: result,
    '#TRACEBACK': _remote_error,
    '#UNSERIALIZABLE': _unserializable,
}


def convert_to_error(kind, result):
    """The exception a reply of ``kind`` stands for."""
    make = _REPLY_TO_ERROR.get(kind)
    if make is None:
        return ValueError(f'Unrecognized message type {kind!r}')
    return make(result)


def dispatch(c, id, methodname, args=(), kwds={}):
    """Ask the server on connection ``c`` to run ``methodname`` of object
    ``id`` (None: of the server itself) and return the result."""
    c.send((id, methodname, args, kwds))
    reply = c.recv()
    if reply[0] != '#RETURN':
        raise convert_to_error(*reply)
    return reply[1]


# ------------------------------------------------------ method discovery

def all_methods(obj):
    """Names of the callable attributes of ``obj``."""
    return [name for name in dir(obj)
            if callable(getattr(obj, name, None))]


def public_methods(obj):
    """Names of the callable attributes of ``obj`` not starting with '_'."""
    return [name for name in all_methods(obj) if not name.startswith('_')]


# ------------------------------------------------------------ serializers

listener_client = {
    'pickle': (connection.Listener, connection.Client),
    'xmlrpclib': (connection.XmlListener, connection.XmlClient),
}


# ---------------------------------------------------------------- server

_REPLIED = object()     # a server method that sent its own reply
_idents = itertools.count(1)


class Server(object):
    """Holds the managed objects and answers requests on connections.

    ``id_to_obj`` maps an identifier to ``(object, exposed names,
    method_to_typeid)``; ``id_to_refcount`` counts the proxies holding it.
    Each accepted connection gets a daemon thread running one loop.
    """

    public = ['shutdown', 'create', 'accept_connection', 'get_methods',
              'debug_info', 'number_of_objects', 'dummy', 'incref', 'decref',
              'incref_many', 'use_pipes']

    def __init__(self, registry, address, authkey, serializer):
        if not isinstance(authkey, bytes):
            raise TypeError(
                f'Authkey {authkey!r} is type {type(authkey)!s}, not bytes')
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        self.serializer = serializer
        listener_type, _ = listener_client[serializer]
        self.listener = listener_type(address=address, backlog=128)
        self.address = self.listener.address
        self.id_to_obj = {}
        self.id_to_refcount = {}
        self.id_to_local_proxy_obj = {}
        self.mutex = threading.RLock()
        self.stop_event = threading.Event()
        self._pid = os.getpid()
        # ids never repeat across servers: a stale proxy left over from an
        # earlier server at the same address cannot reach a new object
        self._ident_prefix = os.urandom(3).hex() + '.'

    # -------------------------------------------------- accepting clients

    def serve_forever(self):
        """Serve until a client asks for shutdown, then exit the process."""
        process.current_process()._manager_server = self
        threading.Thread(target=self.accepter, daemon=True).start()
        try:
            # woken by shutdown(); the timeout keeps signals deliverable
            with contextlib.suppress(KeyboardInterrupt, SystemExit):
                while not self.stop_event.wait(1.0):
                    pass
        finally:
            sys.exit(0)

    def accepter(self):
        """Accept connections; each is authenticated and served by a thread
        of its own, so a slow or hostile peer never holds up the others."""
        raw = getattr(self.listener, '_listener', None)
        while True:
            try:
                conn = raw.accept() if raw is not None else self.listener.accept()
            except OSError:
                if self.stop_event.is_set() or getattr(self.listener, '_listener', 1) is None:
                    return
                time.sleep(0.01)    # e.g. out of descriptors: do not spin
                continue
            except Exception:                                # e.g. bad authkey
                continue
            threading.Thread(target=self._welcome, args=(conn, raw is not None),
                             daemon=True).start()

    # A peer gets this long to authenticate; then its thread gives up.
    handshake_timeout = 20.0

    def _welcome(self, conn, needs_handshake):
        if needs_handshake:
            try:
                # An empty key is a key too: clients always take part in
                # the handshake (Client only skips it for authkey=None).
                with _receive_timeout(conn.fileno(), self.handshake_timeout):
                    connection.deliver_challenge(conn, self.authkey)
                    connection.answer_challenge(conn, self.authkey)
            except Exception as exc:
                util.info('refused a client: %r', exc)
                conn.close()
                return
            if self.serializer == 'xmlrpclib':
                conn = connection.ConnectionWrapper(
                    conn, connection._xml_dumps, connection._xml_loads)
        self.serve_client(conn)

    # --------------------------------------------------- the request loop

    def serve_client(self, conn):
        """Answer requests on ``conn`` until it closes."""
        recv, send = conn.recv, conn.send
        objects = self.id_to_obj
        call = self._call
        while True:
            try:
                request = recv()
            except (EOFError, OSError):
                break
            except Exception:
                reply = ('#TRACEBACK', format_exc())
            else:
                try:
                    ident, name, args, kwds = request
                    entry = objects.get(ident)      # None: the server
                    if entry is not None and name in entry[1]:
                        # the common case: an exposed method of a live object
                        result = getattr(entry[0], name)(*args, **kwds)
                        typeids = entry[2]
                        if typeids and name in typeids:
                            reply = self._new_proxy_reply(conn, typeids[name], result)
                        else:
                            reply = ('#RETURN', result)
                    else:
                        reply = call(conn, ident, name, args, kwds)
                        if reply is _REPLIED:
                            continue
                        if type(reply) is _PipePair:
                            # the client moved this conversation to pipes
                            conn.close()
                            conn = reply
                            recv, send = conn.recv, conn.send
                            continue
                except Exception as exc:
                    reply = self._error_reply(request, exc)
            try:
                send(reply)
            except Exception:
                if not self._reply_unsendable(send):
                    break
        conn.close()

    def _call(self, conn, ident, name, args, kwds):
        """The less common requests: to the server itself, to fallbacks
        (str, repr, getvalue), or for unknown objects and names."""
        if ident is None:
            # failures of the server's own methods come back as RemoteError
            try:
                if name not in self.public:
                    raise _ProtocolError(f'{name!r} is not a server method')
                result = getattr(self, name)(conn, *args, **kwds)
            except Exception:
                return ('#TRACEBACK', format_exc())
            if result is _REPLIED or type(result) is _PipePair:
                return result
            return ('#RETURN', result)
        entry = self.id_to_obj.get(ident)
        if entry is None:
            entry = self.id_to_local_proxy_obj.get(ident)
        if entry is None:
            raise _ProtocolError(f'no object with id {ident!r} on this server')
        fallback = self.fallback_mapping.get(name)
        if fallback is None:
            raise _ProtocolError(
                f'method {name!r} of {type(entry[0])!r} object is not in '
                f'exposed={entry[1]!r}')
        return ('#RETURN', fallback(self, conn, ident, entry[0]))

    def _error_reply(self, request, exc):
        # Errors raised by the managed object's method go back as the
        # exception itself; protocol errors as the server's traceback.
        if isinstance(exc, _ProtocolError) or not isinstance(request, tuple):
            return ('#TRACEBACK', format_exc())
        return ('#ERROR', exc)

    @staticmethod
    def _reply_unsendable(send):
        """After send() failed: tell the client why, if the connection
        still works (False when it does not)."""
        kind, error = sys.exc_info()[:2]
        if isinstance(error, (EOFError, ConnectionError)):
            return False
        try:
            send(('#UNSERIALIZABLE', format_exc()))
            return True
        except Exception:
            return False

    def _send_reply(self, send, reply):
        try:
            send(reply)
        except Exception:
            return self._reply_unsendable(send)
        return True

    def _new_proxy_reply(self, conn, typeid, result):
        ident, exposed = self.create(conn, typeid, result)
        return ('#PROXY', (exposed, typeid, ident))

    # kept under the standard library's names; one request each
    def handle_request(self, conn):
        """Answer a single request on ``conn``."""
        try:
            request = conn.recv()
            ident, name, args, kwds = request
            reply = self._call(conn, ident, name, args, kwds)
        except Exception as exc:
            reply = ('#TRACEBACK', format_exc())
        if reply is not _REPLIED:
            self._send_reply(conn.send, reply)

    # Answered for any referent, whether or not its type exposes them;
    # '#GETVALUE' sends the referent itself (a copy, once unpickled).
    fallback_mapping = {
        '__str__': lambda self, conn, ident, obj: str(obj),
        '__repr__': lambda self, conn, ident, obj: repr(obj),
        '#GETVALUE': lambda self, conn, ident, obj: obj,
    }
    fallback_str = fallback_mapping['__str__']
    fallback_repr = fallback_mapping['__repr__']
    fallback_getvalue = fallback_mapping['#GETVALUE']

    # ------------------------------------------------------ server methods

    def dummy(self, c):
        pass

    def accept_connection(self, c, name=None):
        """Kept for clients that announce themselves; every connection is
        already served by the same loop."""
        if name:
            threading.current_thread().name = name

    def debug_info(self, c):
        """One line per live object: id, reference count, start of repr."""
        with self.mutex:
            lines = [f'  {ident}:       refcount={self.id_to_refcount[ident]}'
                     f'\n    {str(self.id_to_obj[ident][0])[:75]}'
                     for ident in sorted(self.id_to_refcount)
                     if ident in self.id_to_obj]
        return '\n'.join(lines)

    def number_of_objects(self, c):
        """How many objects are held for proxies."""
        return len(self.id_to_refcount)

    def shutdown(self, c):
        """Reply, then stop the server (its process exits)."""
        try:
            util.debug('manager received shutdown message')
            c.send(('#RETURN', None))
        finally:
            self.stop_event.set()
        return _REPLIED

    def create(self, c, typeid, /, *args, **kwds):
        """Make a new object of ``typeid``; the caller gets one reference.
        A typeid registered without a callable adopts its one argument
        (the result of a method listed in method_to_typeid)."""
        factory, exposed, method_to_typeid, _ = self.registry[typeid]
        obj = _adopt_or_make(factory, args, kwds)
        names = list(public_methods(obj) if exposed is None else exposed)
        if method_to_typeid is not None:
            if type(method_to_typeid) is not dict:
                raise TypeError(
                    f'Method_to_typeid {method_to_typeid!r} must be a dict')
            names += method_to_typeid
        ident = f'{self._ident_prefix}{next(_idents):x}'
        with self.mutex:
            self.id_to_obj[ident] = (obj, frozenset(names), method_to_typeid)
            self.id_to_refcount[ident] = 1
        return ident, tuple(names)

    def get_methods(self, c, token):
        """The exposed names of the object ``token`` (or an id) names."""
        ident = getattr(token, 'id', token)
        return tuple(self.id_to_obj[ident][1])

    def incref(self, c, ident):
        with self.mutex:
            if ident not in self.id_to_refcount:
                kept = self.id_to_local_proxy_obj.pop(ident, None)
                if kept is None:
                    raise KeyError(f'no object with id {ident!r} to incref')
                self.id_to_obj[ident] = kept
                self.id_to_refcount[ident] = 0
            self.id_to_refcount[ident] += 1

    def use_pipes(self, c):
        """Move this conversation from the Unix socket ``c`` to two pipes
        the client passes over it (SCM_RIGHTS): on Linux a pipe round trip
        costs much less than a stream-socket one.  Protocol: we answer
        ready, the client sends [request read end, reply write end], we
        answer on the socket, then serve on the pipes."""
        import socket
        with socket.socket(fileno=os.dup(c.fileno())) as sock:
            if sock.family != socket.AF_UNIX:
                raise _ProtocolError('pipes are for Unix-socket clients only')
            c.send(('#RETURN', 'ready'))
            request_end, reply_end = reduction.recvfds(sock, 2)
        pair = _PipePair(connection.Connection(request_end, writable=False),
                         connection.Connection(reply_end, readable=False))
        c.send(('#RETURN', 'switched'))
        return pair

    def incref_many(self, c, idents):
        """One incref per listed id (a forked child's inherited proxies);
        ids no longer alive are skipped and returned."""
        missing = []
        for ident in idents:
            try:
                self.incref(c, ident)
            except KeyError:
                missing.append(ident)
        return missing

    def decref(self, c, ident):
        with self.mutex:
            count = self.id_to_refcount.get(ident)
            if count is None:
                if ident in self.id_to_obj:
                    return
                raise KeyError(f'no object with id {ident!r} to decref')
            if count > 1:
                self.id_to_refcount[ident] = count - 1
                return
            del self.id_to_refcount[ident]
            entry = self.id_to_obj.pop(ident, None)
        # the object is released here, outside the lock: its __del__ may
        # be slow or may call into proxies
        del entry

    # used by proxies living inside the server process itself
    def _is_here(self, address):
        return address == self.address and os.getpid() == self._pid


def _adopt_or_make(factory, args, kwds):
    if factory is not None:
        return factory(*args, **kwds)
    if len(args) == 1 and not kwds:
        return args[0]
    raise ValueError('Without callable, must have one non-keyword argument')


@contextlib.contextmanager
def _receive_timeout(fd, seconds):
    """Cut socket ``fd`` off (shutdown: a blocked read sees end of file) if
    the block has not finished within ``seconds``."""
    import socket
    sock = socket.socket(fileno=os.dup(fd))
    guard = threading.Lock()
    finished = False

    def cut_off():
        with guard:
            if not finished:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut_off)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with guard:
            finished = True
        timer.cancel()
        sock.close()          # only our duplicate; the connection stays open


class _ProtocolError(Exception):
    """A request the server cannot carry out (reported as RemoteError)."""


# ----------------------------------------------------- per-process links

class _PipePair(object):
    """A duplex conversation over two one-way pipe Connections (see
    Server.use_pipes)."""

    __slots__ = ('reader', 'writer', 'recv', 'send', 'poll')

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.recv, self.poll = reader.recv, reader.poll
        self.send = writer.send

    def close(self):
        self.writer.close()
        self.reader.close()

    def fileno(self):
        return self.reader.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


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
        return self._other_reply(kind, result)

    def _other_reply(self, kind, result):
        if kind == '#PROXY':
            return self._proxy_from_reply(result)
        raise convert_to_error(kind, result)

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
        return self._other_reply(kind, result)
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
    _exposed_ = ('acquire', 'release')

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


BaseListProxy = MakeProxyType('BaseListProxy', tuple("""
    __add__ __contains__ __delitem__ __getitem__ __len__ __mul__ __reversed__
    __rmul__ __setitem__ append count extend index insert pop remove reverse
    sort __imul__""".split()))


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


DictProxy = MakeProxyType('DictProxy', tuple("""
    __contains__ __delitem__ __getitem__ __iter__ __len__ __setitem__
    clear copy get items keys pop popitem setdefault update values""".split()))
# iter(d) gives a proxy to an iterator living next to the dict
DictProxy._method_to_typeid_ = {'__iter__': 'Iterator'}

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


# typeid: (what the server calls to make one, proxy type); None: AutoProxy
_SYNC_TYPES = {
    'Queue': (queue.Queue, None), 'JoinableQueue': (queue.Queue, None),
    'Event': (threading.Event, EventProxy),
    'Lock': (threading.Lock, AcquirerProxy),
    'RLock': (threading.RLock, AcquirerProxy),
    'Semaphore': (threading.Semaphore, AcquirerProxy),
    'BoundedSemaphore': (threading.BoundedSemaphore, AcquirerProxy),
    'Condition': (threading.Condition, ConditionProxy),
    'Barrier': (threading.Barrier, BarrierProxy),
    'Pool': (pool.Pool, PoolProxy),
    'list': (list, ListProxy), 'dict': (dict, DictProxy),
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
