"""Message connections between processes.

A connection carries whole messages over one file descriptor (a pipe end or
a connected stream socket): byte strings with ``send_bytes``/``recv_bytes``
and pickled objects with ``send``/``recv``.  The wire format is the standard
library's, so a ``multiprocess`` process and a ``multiprocessing`` process
can talk over the same pipe or socket, and a stdlib ``Client`` can
authenticate to our ``Listener`` and the other way round.

Who does what:

* ``_multiprocess`` (C, frameio.c, spinwait.c, endpoint.c) owns the mechanics: framing, partial
  reads and writes, blocking without the GIL, EINTR, readiness.  The I/O
  methods below hand the raw fd straight to it.
* This module owns the policy: which end may read or write, argument
  checking, pickling (through ``reduction``, i.e. with dill's reach),
  address families, listeners and clients, and the HMAC handshake.

Per-call cost matters here (queues and pools send every task and result
through ``send``/``recv``), so a connection keeps two plain integer
attributes, ``_rfd`` and ``_wfd``: the fd when that direction is usable,
-1 otherwise.  One comparison replaces the "is it closed? is it readable?"
checks; only the failing case pays for working out which error to raise.
"""

__all__ = ['Client', 'Listener', 'Pipe', 'wait']

import itertools
import operator
import os
import socket
import sys

import _multiprocess as _core

from . import reduction
from . import util
from .exceptions import AuthenticationError, BufferTooShort

# The C entry points, bound once so the hot methods do one global lookup.
_frame_out = _core.send_bytes
_frame_in = _core.recv_bytes
_frame_into = _core.recv_bytes_into
_readable_within = _core.poll
_ready_fds = _core.wait_fds


def _recv_spin_seconds():
    # How long a blocking receive polls before it sleeps, on an fd whose
    # messages have been arriving within that time (frameio.c,
    # "Spinning before a blocking receive").  Waking a sleeping process on
    # another CPU costs a VM tens of microseconds per message; a receiver
    # still polling pays none of it.  With one usable CPU the peer cannot
    # run while we poll, so there is nothing to gain; with more, the C
    # side still skips the spin whenever the CPUs are oversubscribed.
    # MULTIPROCESS_RECV_SPIN_US=0 turns it off.
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return 0.0
    return min(util._spin_seconds_from_env('MULTIPROCESS_RECV_SPIN_US', 50),
               1.0)


_core.set_recv_spin(_recv_spin_seconds())

# send() and recv() are done in C (``_core.Endpoint``, the base class of
# Connection) in one call each, pickling with the policy's codec
# (reduction.CODEC, see _pickling.py).
_CODEC = reduction.CODEC


# 3.14 raised the stdlib's buffer size to 64 KiB (its reads go in chunks of
# that much).  Our reads land straight in the message's own buffer, so this
# is only the constant code may read from here.
BUFSIZE = 64 * 1024 if sys.version_info >= (3, 14) else 8192
# How long a local peer may reasonably take to answer (kept for code that
# reads it from this module, as the standard library offers it).
CONNECTION_TIMEOUT = 20.0

# This package targets Linux: TCP sockets and Unix domain sockets (file
# system paths and the abstract namespace).  Windows named pipes ('AF_PIPE')
# are recognised by address_type() only so that they can be refused clearly.
families = ['AF_INET', 'AF_UNIX']
default_family = 'AF_UNIX'

_address_serial = itertools.count()


def _is_abstract_unix_address(address):
    # Linux abstract-namespace socket names start with a NUL byte.
    if isinstance(address, bytes):
        return address[:1] == b'\0'
    if isinstance(address, str):
        return address[:1] == '\0'
    return False


def address_type(address):
    """The family name ('AF_INET', 'AF_UNIX' or 'AF_PIPE') of an address."""
    if type(address) is tuple:
        return 'AF_INET'
    if type(address) is str:
        return 'AF_PIPE' if address.startswith('\\\\') else 'AF_UNIX'
    if _is_abstract_unix_address(address):
        return 'AF_UNIX'
    raise ValueError('address type of %r unrecognized' % (address,))


def _validate_family(family):
    """Refuse families this platform cannot provide (ValueError)."""
    if family not in families:
        raise ValueError('Family %s is not recognized.' % (family,))


def arbitrary_address(family):
    """A fresh address of ``family`` that nothing is bound to yet."""
    if family == 'AF_INET':
        return ('localhost', 0)
    if family == 'AF_UNIX':
        # A random name inside this process's private temporary directory
        # (removed at exit); the random part keeps concurrent listeners of
        # one process, and of forked children, apart.
        name = 'listener-%d-%d-%s' % (os.getpid(), next(_address_serial),
                                      os.urandom(4).hex())
        return os.path.join(util.get_temp_dir(), name)
    raise ValueError('unrecognized family')


#
# Connections
#

class _ClosesOnExit:
    """``with x:`` closes x on the way out."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _ConnectionBase(_ClosesOnExit, _core.Endpoint):
    """State shared by every connection: the fd, its allowed directions,
    closing, and the context-manager protocol.  send() and recv() come from
    the C base, which reads the fast fds ``_rfd``/``_wfd`` (-1 until set)."""

    # Slots for the attributes the Python methods read: an instance of a
    # subclass of a C type keeps its attributes in a dict whose reads
    # CPython does not specialize (about 40 ns more each than on a plain
    # object), while a slot read is specialized.  __dict__ and __weakref__
    # stay available as before.
    __slots__ = ('_fd', '_readable', '_writable', '__dict__', '__weakref__')

    def __init__(self, handle, readable=True, writable=True):
        # Set here rather than as class defaults (which slots exclude
        # anyway).  __del__, repr() and the refusals read _fd with a
        # default, for an object whose __init__ raised or never ran.
        self._fd = None
        self._readable = self._writable = False
        self._codec = _CODEC
        fd = operator.index(handle)
        if fd < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError(
                "at least one of `readable` and `writable` must be True")
        self._readable = bool(readable)
        self._writable = bool(writable)
        self._handle = fd

    # ``_handle`` is the standard library's name for the fd; code (CPython's
    # test suite among it) assigns None to it to disown a descriptor.  Going
    # through a property keeps the fast-path fds in step with it.
    @property
    def _handle(self):
        return self._fd

    @_handle.setter
    def _handle(self, fd):
        self._fd = fd
        self._sync_fast_fds()

    def _sync_fast_fds(self):
        fd = self._fd
        open_ = fd is not None
        self._rfd = fd if open_ and self._readable else -1
        self._wfd = fd if open_ and self._writable else -1

    def _refuse(self, writing):
        # Reached only when the matching fast fd is -1: say why.  (An
        # object whose __init__ never ran has no _fd at all.)
        if getattr(self, '_fd', None) is None:
            raise OSError("handle is closed")
        if writing:
            raise OSError("connection is read-only")
        raise OSError("connection is write-only")

    def _bad_message_length(self):
        # The unread payload of an over-long message is still in the pipe,
        # so this end can never read a message boundary again: stop reading
        # (or close, when reading was all it could do).
        if self._writable:
            self._readable = False
            self._sync_fast_fds()
        else:
            self.close()
        raise OSError("bad message length")

    # The getters are Python functions: 3.12+ specialize a property read
    # only then (an operator.attrgetter getter is not).
    def _is_closed(self):
        return self._fd is None

    def _may_receive(self):
        return self._readable

    def _may_send(self):
        return self._writable

    closed = property(_is_closed, doc="True once close() has been called.")
    readable = property(_may_receive, doc="True if this end may receive.")
    writable = property(_may_send, doc="True if this end may send.")

    def fileno(self):
        """The underlying file descriptor (OSError once closed)."""
        if self._fd is None:
            raise OSError("handle is closed")
        return self._fd

    def close(self):
        """Close the connection; closing twice is harmless."""
        fd = self._fd
        if fd is not None:
            # Forget the fd first: even if close() fails the number may
            # already belong to someone else, and must not be used again.
            self._handle = None
            os.close(fd)

    def __del__(self, _close=os.close):
        fd = getattr(self, '_fd', None)
        if fd is not None:
            self._fd = None
            _close(fd)

    def __repr__(self):
        fd = getattr(self, '_fd', None)
        if fd is None:
            return '<%s closed>' % type(self).__name__
        mode = ('r' if self._readable else '') + ('w' if self._writable else '')
        return '<%s fd=%d mode=%s>' % (type(self).__name__, fd, mode)


class Connection(_ConnectionBase):
    """A connection over a file descriptor: a pipe end or a stream socket."""

    def send_bytes(self, buf, offset=0, size=None):
        """Send ``buf[offset:offset+size]`` (offsets in bytes) as one message."""
        fd = self._wfd
        if fd < 0:
            self._refuse(True)
        if offset == 0 and size is None:
            _frame_out(fd, buf)
            return
        with memoryview(buf) as whole:
            flat = whole.cast('B') if whole.format != 'B' or whole.ndim != 1 \
                else whole
            total = flat.nbytes
            if offset < 0:
                raise ValueError("offset is negative")
            if offset > total:
                raise ValueError("buffer length < offset")
            if size is None:
                size = total - offset
            elif size < 0:
                raise ValueError("size is negative")
            elif offset + size > total:
                raise ValueError("buffer length < offset + size")
            _frame_out(fd, flat[offset:offset + size])

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes.  A message longer than
        ``maxlength`` raises OSError and leaves this end unreadable."""
        fd = self._rfd
        if fd < 0:
            self._refuse(False)
        if maxlength is None:
            return _frame_in(fd)
        if maxlength < 0:
            raise ValueError("negative maxlength")
        data = _frame_in(fd, maxlength)
        if data is None:
            self._bad_message_length()
        return data

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into the writable buffer ``buf`` starting at
        byte ``offset``; return its length.  If it does not fit, raise
        BufferTooShort carrying the whole message."""
        fd = self._rfd
        if fd < 0:
            self._refuse(False)
        with memoryview(buf) as view:
            room = view.nbytes
        if offset < 0:
            raise ValueError("negative offset")
        if offset > room:
            raise ValueError("offset too large")
        got = _frame_into(fd, buf, offset)
        if type(got) is not int:
            raise BufferTooShort(got)
        return got

    def poll(self, timeout=0.0):
        """Whether a message (or end of file) can be read within ``timeout``
        seconds; None waits for ever, zero or less does not wait."""
        fd = self._rfd
        if fd < 0:
            self._refuse(False)
        return _readable_within(fd, timeout)


def Pipe(duplex=True):
    """Return ``(conn1, conn2)``, the two ends of a new pipe.  With
    ``duplex`` both ends send and receive (a socket pair); otherwise conn1
    only receives and conn2 only sends (an OS pipe)."""
    if not duplex:
        rfd, wfd = os.pipe()
        return Connection(rfd, writable=False), Connection(wfd, readable=False)
    left, right = socket.socketpair()
    # A process-wide socket.setdefaulttimeout() would make new sockets
    # non-blocking under the hood; connections need blocking fds.
    left.setblocking(True)
    right.setblocking(True)
    return Connection(left.detach()), Connection(right.detach())


#
# Listening and connecting
#

def _unlink_socket_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class SocketListener:
    """A socket bound to ``address`` and listening; accept() returns
    Connections.  The socket file of a (non-abstract) Unix address is
    removed on close, or at exit by whichever process created it."""

    def __init__(self, address, family, backlog=1):
        sock = socket.socket(getattr(socket, family))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(True)
            sock.bind(address)
            sock.listen(backlog)
            self._address = sock.getsockname()
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        self._family = family
        self._last_accepted = None
        self._unlink = None
        if family == 'AF_UNIX' and not _is_abstract_unix_address(address):
            # util.Finalize only fires in the process that created it, so a
            # forked child never removes its parent's socket file.
            self._unlink = util.Finalize(self, _unlink_socket_file,
                                         args=(address,), exitpriority=0)

    def accept(self):
        sock, self._last_accepted = self._socket.accept()
        sock.setblocking(True)
        return Connection(sock.detach())

    def close(self):
        try:
            self._socket.close()
        finally:
            unlink, self._unlink = self._unlink, None
            if unlink is not None:
                unlink()


def SocketClient(address):
    """A Connection to the listening socket at ``address``."""
    with socket.socket(getattr(socket, address_type(address))) as sock:
        sock.setblocking(True)
        sock.connect(address)
        return Connection(sock.detach())


def _check_authkey_type(authkey):
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError('authkey should be a byte string')


class Listener(_ClosesOnExit):
    """Accepts connections made with Client() on ``address``.

    ``family`` defaults to the one ``address`` implies, and ``address`` to a
    fresh one of ``family``.  With an ``authkey`` (bytes; b'' is a key too)
    every accepted peer must prove it knows the same key, else accept()
    raises AuthenticationError.
    """

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        if not family:
            family = address_type(address) if address else default_family
        if not address:
            address = arbitrary_address(family)
        _validate_family(family)
        _check_authkey_type(authkey)
        self._listener = SocketListener(address, family, backlog)
        self._authkey = authkey

    def accept(self):
        """Wait for a client and return a Connection to it."""
        listener = self._listener
        if listener is None:
            raise OSError('listener is closed')
        conn = listener.accept()
        if self._authkey is not None:
            try:
                deliver_challenge(conn, self._authkey)
                answer_challenge(conn, self._authkey)
            except BaseException:
                conn.close()
                raise
        return conn

    def close(self):
        """Stop listening (and remove a Unix socket file)."""
        if self._listener is not None:
            self._listener, listener = None, self._listener
            listener.close()

    address = property(lambda self: self._listener._address,
                       doc="The address clients connect to.")
    last_accepted = property(lambda self: self._listener._last_accepted,
                             doc="The address of the latest accepted peer.")


def Client(address, family=None, authkey=None):
    """Connect to the Listener at ``address`` and return a Connection; with
    ``authkey``, take part in the handshake (AuthenticationError if the
    listener's key differs)."""
    _validate_family(family or address_type(address))
    _check_authkey_type(authkey)
    conn = SocketClient(address)
    if authkey is not None:
        try:
            answer_challenge(conn, authkey)
            deliver_challenge(conn, authkey)
        except BaseException:
            conn.close()
            raise
    return conn


#
# Authentication.  Each side proves that it knows authkey by answering the
# other's challenge; a listener challenges first, then answers the client.
# A challenge is _CHALLENGE followed by a random message; the answer is an
# HMAC of that message keyed with authkey, and the challenger replies
# _WELCOME or _FAILURE.  Every handshake read is capped at _HANDSHAKE_MAX
# bytes, so an unauthenticated peer cannot make us allocate more than that
# (a longer frame raises OSError, see recv_bytes).
#
# The digests follow the running Python's standard library, so that either
# peer may be stdlib multiprocessing of the same interpreter:
#
# * up to 3.11, the message is 20 random bytes and the answer is the bare
#   16-byte HMAC-MD5;
# * from 3.12, the message is a digest tag and 40 random bytes
#   (b'{sha256}' + nonce) and the answer is tagged too: b'{name}' + the
#   HMAC-name of the whole message, tag included, so a peer in the middle
#   cannot swap the tag.  Untagged messages of the old lengths still come
#   from peers of 3.11 and older: their 20-byte challenge gets a bare
#   HMAC-MD5 back, and their bare 16-byte HMAC-MD5 of our (whole, tagged)
#   challenge is accepted.  No tagged message has either length, so the two
#   kinds cannot be mistaken for each other.
#

_CHALLENGE = b'#CHALLENGE#'
_WELCOME = b'#WELCOME#'
_FAILURE = b'#FAILURE#'

_HANDSHAKE_MAX = 256
_LEGACY_MESSAGE_LENGTH = 20     # a challenge from a peer of 3.11 or older
_LEGACY_ANSWER_LENGTH = 16      # its answer: an MD5 digest

if sys.version_info >= (3, 12):
    MESSAGE_LENGTH = 40
    _ALLOWED_DIGESTS = frozenset(
        (b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'))
    _LONGEST_DIGEST_NAME = max(map(len, _ALLOWED_DIGESTS))
else:
    MESSAGE_LENGTH = _LEGACY_MESSAGE_LENGTH
    # Public up to 3.11; 3.12 made them private.
    CHALLENGE, WELCOME, FAILURE = _CHALLENGE, _WELCOME, _FAILURE


def _check_key(authkey):
    if not isinstance(authkey, bytes):
        raise ValueError("Authkey must be bytes, not %s" % type(authkey))


def _hmac(authkey, message, digest_name):
    import hmac
    return hmac.new(authkey, message, digest_name).digest()


def _challenge(connection, authkey, message, verify):
    # verify(authkey, message, answer) raises AuthenticationError on a
    # wrong answer; the peer is told either way.
    connection.send_bytes(_CHALLENGE + message)
    answer = connection.recv_bytes(_HANDSHAKE_MAX)
    try:
        verify(authkey, message, answer)
    except AuthenticationError:
        connection.send_bytes(_FAILURE)
        raise
    connection.send_bytes(_WELCOME)


def _answer(connection, authkey, respond):
    challenge = connection.recv_bytes(_HANDSHAKE_MAX)
    if not challenge.startswith(_CHALLENGE):
        raise AuthenticationError(
            'expected an authentication challenge, got %r' % challenge[:32])
    connection.send_bytes(respond(authkey, challenge[len(_CHALLENGE):]))
    if connection.recv_bytes(_HANDSHAKE_MAX) != _WELCOME:
        raise AuthenticationError('digest sent was rejected')


if sys.version_info >= (3, 12):
    def _split_tag(message):
        """``(digest name, rest)`` of a handshake message; the name is ''
        for an untagged message of a legacy length (HMAC-MD5 is meant)."""
        if len(message) in (_LEGACY_MESSAGE_LENGTH, _LEGACY_ANSWER_LENGTH):
            return '', message
        if message[:1] == b'{':
            end = message.find(b'}', 1, _LONGEST_DIGEST_NAME + 2)
            if end > 0 and message[1:end] in _ALLOWED_DIGESTS:
                return message[1:end].decode('ascii'), message[end + 1:]
        raise AuthenticationError(
            'unsupported message length, missing digest prefix, '
            'or unsupported digest: %r' % (message[:32],))

    def _create_response(authkey, message):
        """The answer to a challenge ``message``: tagged with the digest the
        message names, or a bare HMAC-MD5 for an untagged legacy one."""
        digest_name = _split_tag(message)[0]
        if not digest_name:
            try:
                return _hmac(authkey, message, 'md5')
            except ValueError:
                # No MD5 in this build (FIPS mode): answer in the new
                # protocol; a legacy peer will refuse it, as it must.
                digest_name = 'sha256'
        return b'{%s}%s' % (digest_name.encode('ascii'),
                            _hmac(authkey, message, digest_name))

    def _verify_challenge(authkey, message, response):
        """Raise AuthenticationError unless ``response`` is a right answer
        to ``message``, with the digest it names (bare: HMAC-MD5)."""
        import hmac
        digest_name, mac = _split_tag(response)
        digest_name = digest_name or 'md5'
        try:
            expected = _hmac(authkey, message, digest_name)
        except ValueError:
            raise AuthenticationError(
                'digest %r is unsupported here' % digest_name) from None
        if len(mac) != len(expected):
            raise AuthenticationError(
                'expected a %s digest of %d bytes, got %d'
                % (digest_name, len(expected), len(mac)))
        if not hmac.compare_digest(mac, expected):
            raise AuthenticationError('digest received was wrong')

    def _respond(authkey, message):
        if len(message) < _LEGACY_MESSAGE_LENGTH:
            raise AuthenticationError(
                'challenge too short: %d bytes' % len(message))
        return _create_response(authkey, message)

    def deliver_challenge(connection, authkey, digest_name='sha256'):
        """Challenge the peer to prove it knows ``authkey`` (answering with
        ``digest_name``, or with HMAC-MD5 if it predates 3.12); raise
        AuthenticationError, after telling the peer, if it does not."""
        _check_key(authkey)
        message = b'{%s}%s' % (digest_name.encode('ascii'),
                               os.urandom(MESSAGE_LENGTH))
        _challenge(connection, authkey, message, _verify_challenge)

    def answer_challenge(connection, authkey):
        """Prove to the peer that we know ``authkey``; raise
        AuthenticationError if the peer rejects our answer."""
        _check_key(authkey)
        _answer(connection, authkey, _respond)

else:
    def _verify_md5(authkey, message, response):
        import hmac
        if not (isinstance(response, bytes) and hmac.compare_digest(
                response, _hmac(authkey, message, 'md5'))):
            raise AuthenticationError('digest received was wrong')

    def _respond_md5(authkey, message):
        return _hmac(authkey, message, 'md5')

    def deliver_challenge(connection, authkey):
        """Challenge the peer to prove it knows ``authkey``; raise
        AuthenticationError (after telling the peer) if it does not."""
        _check_key(authkey)
        _challenge(connection, authkey, os.urandom(MESSAGE_LENGTH),
                   _verify_md5)

    def answer_challenge(connection, authkey):
        """Prove to the peer that we know ``authkey``; raise
        AuthenticationError if the peer rejects our answer."""
        _check_key(authkey)
        _answer(connection, authkey, _respond_md5)


#
# Connections speaking another serialization (the managers' 'xmlrpclib'
# serializer uses these).
#

class ConnectionWrapper(_ClosesOnExit):
    """A connection whose send()/recv() use the given ``dumps``/``loads``
    (both working on bytes) instead of pickle; everything else is passed
    through to the wrapped connection."""

    _passed_through = frozenset(
        ('fileno', 'close', 'poll', 'recv_bytes', 'send_bytes', 'closed',
         'readable', 'writable', 'recv_bytes_into'))

    def __init__(self, conn, dumps, loads):
        self._conn = conn
        self._dumps = dumps
        self._loads = loads

    def __getattr__(self, name):
        if name in ConnectionWrapper._passed_through:
            return getattr(self._conn, name)
        raise AttributeError(name)

    def send(self, obj):
        self._conn.send_bytes(self._dumps(obj))

    def recv(self):
        return self._loads(self._conn.recv_bytes())


def _xml_dumps(obj):
    import xmlrpc.client
    return xmlrpc.client.dumps((obj,), None, None, None, 1).encode('utf-8')


def _xml_loads(data):
    import xmlrpc.client
    params, _method = xmlrpc.client.loads(data.decode('utf-8'))
    return params[0]


class XmlListener(Listener):
    """A Listener whose connections serialize with XML-RPC."""

    def accept(self):
        return ConnectionWrapper(Listener.accept(self), _xml_dumps, _xml_loads)


def XmlClient(*args, **kwds):
    """Client() whose connection serializes with XML-RPC."""
    return ConnectionWrapper(Client(*args, **kwds), _xml_dumps, _xml_loads)


#
# Waiting on several things at once
#

def _fd_of(obj):
    fd = obj if isinstance(obj, int) else obj.fileno()
    if fd < 0:
        raise ValueError('invalid file descriptor: %r' % (obj,))
    return fd


def wait(object_list, timeout=None):
    """Wait until some of ``object_list`` are ready and return those.

    The objects may be connections, sockets, anything with fileno(), or
    raw fds (process sentinels are fds).  "Ready" means a read would not
    block: data, end of file, or a process that has exited.  With a
    ``timeout`` (seconds) the result may be an empty list.
    """
    objects = list(object_list)
    fds = [_fd_of(obj) for obj in objects]
    if timeout is not None and timeout < 0:
        timeout = 0
    ready = set(_ready_fds(fds, timeout))
    if not ready:
        return []
    return [obj for obj, fd in zip(objects, fds) if fd in ready]


#
# Sending connections to other processes: the fd travels as a DupFd (passed
# to a child being spawned, or served by the resource sharer otherwise) and
# is wrapped in a new Connection on arrival.
#

def rebuild_connection(dup, readable, writable):
    return Connection(dup.detach(), readable, writable)


def reduce_connection(conn):
    return rebuild_connection, (reduction.DupFd(conn.fileno()),
                                conn.readable, conn.writable)


reduction.register(Connection, reduce_connection)
