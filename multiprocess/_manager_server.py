"""Manager server side: tokens, the request protocol and its errors, and
the server that owns the shared objects (see managers.py for the design)."""

# A private module: its names are reached through the public modules,
# none through `import *` (CPython's suite checks every module has __all__).
__all__ = []

import array
import contextlib
import itertools
import os
import sys
import threading
import time
from traceback import format_exc

from . import connection
from . import process
from . import reduction
from . import util


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
    return _reply_value(*c.recv())


def _reply_value(kind, result):
    """The value of a '#RETURN' reply; any other reply is raised as its error.

    The raised error's traceback holds this frame, so no local may still
    point at the error when it leaves: the two would keep each other alive
    until the cycle collector ran (an '#ERROR' reply's result is the error
    itself)."""
    if kind == '#RETURN':
        return result
    error, result = convert_to_error(kind, result), None
    try:
        raise error
    finally:
        error = None


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


# ------------------------------------------------------- pipe pairs

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
