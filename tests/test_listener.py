"""Listener and Client: families, addresses, authentication (also against
the standard library's implementation), and hostile peers."""
import os
import resource
import socket
import struct
import sys
import threading
import time

import pytest

import multiprocessing.connection as std

import multiprocess
from multiprocess import connection
from multiprocess.connection import Client, Listener
from multiprocess.exceptions import AuthenticationError

# Every test here may block on a pipe or socket: none may hang the run.
pytestmark = pytest.mark.timeout(60)

KEY = b'the right key'


def in_thread(func, *args):
    """Run func(*args) in a thread; return a function that joins it and
    returns its result or re-raises its exception."""
    box = {}

    def run():
        try:
            box['value'] = func(*args)
        except BaseException as exc:       # handed back to the test
            box['error'] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def result(timeout=20):
        t.join(timeout)
        assert not t.is_alive(), 'thread did not finish'
        if 'error' in box:
            raise box['error']
        return box['value']
    return result


def client_round_trip(address, authkey=None, client=Client):
    with client(address, authkey=authkey) as c:
        c.send(('ping', os.getpid()))
        return c.recv()


# -- families and addresses -------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize('family', connection.families)
def test_listener_client_round_trip(family):
    with Listener(family=family) as l:
        assert connection.address_type(l.address) == family
        done = in_thread(client_round_trip, l.address)
        with l.accept() as conn:
            assert conn.recv() == ('ping', os.getpid())
            conn.send('pong')
        assert done() == 'pong'
        if family == 'AF_INET':
            assert isinstance(l.last_accepted, tuple)
        else:
            assert l.last_accepted is not None


@pytest.mark.timeout(30)
@pytest.mark.parametrize('name', ['\0mp-test-abstract-%d' % os.getpid(),
                                  b'\0mp-test-abstract-b-%d' % os.getpid()])
def test_abstract_namespace_address(name):
    with Listener(name) as l:
        assert connection.address_type(l.address) == 'AF_UNIX'
        with Client(l.address) as c, l.accept() as d:
            c.send(1729)
            assert d.recv() == 1729
    with pytest.raises(OSError):
        l.accept()


@pytest.mark.timeout(30)
def test_unix_socket_file_removed_on_close(tmp_path):
    path = str(tmp_path / 'sock')
    l = Listener(path)
    assert l.address == path and os.path.exists(path)
    l.close()
    assert not os.path.exists(path)
    l.close()                              # twice is harmless
    with pytest.raises(OSError, match='closed'):
        l.accept()


@pytest.mark.timeout(30)
def test_default_unix_address_is_fresh_and_cleaned_up():
    with Listener() as a, Listener() as b:
        assert a.address != b.address
        assert os.path.exists(a.address)
        path = a.address
    assert not os.path.exists(path)


@pytest.mark.timeout(30)
@pytest.mark.parametrize('family', connection.families)
def test_binding_a_taken_address_fails(family):
    with Listener(family=family) as l:
        with pytest.raises(OSError):
            Listener(l.address, family)


def test_invalid_family_and_address():
    with pytest.raises(ValueError):
        Listener(r'\\.\test')
    with pytest.raises(ValueError):
        Listener(family='AF_PIPE')
    with pytest.raises(ValueError):
        Listener(family='AF_BOGUS')
    with pytest.raises(ValueError):
        Client(r'\\.\pipe\x')
    with pytest.raises(ValueError):
        Listener(42)


def test_authkey_must_be_bytes(tmp_path):
    path = str(tmp_path / 'sock')
    with pytest.raises(TypeError):
        Listener(path, authkey='text')
    assert not os.path.exists(path)        # refused before binding
    with Listener() as l:
        with pytest.raises(TypeError):
            Client(l.address, authkey='text')


@pytest.mark.timeout(30)
def test_connect_to_nothing_fails():
    with pytest.raises(OSError):
        Client(connection.arbitrary_address('AF_UNIX'))


@pytest.mark.timeout(30)
def test_socket_default_timeout_does_not_leak_into_connections():
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.05)
    try:
        with Listener(family='AF_INET') as l:
            c = Client(l.address)
            d = l.accept()

            def late_send():
                time.sleep(0.3)
                c.send('late')
            done = in_thread(late_send)
            assert d.recv() == 'late'      # blocking, not timing out
            done()
            c.close()
            d.close()
        a, b = connection.Pipe()
        threading.Timer(0.3, a.send, args=('pipe',)).start()
        assert b.recv() == 'pipe'
        a.close()
        b.close()
    finally:
        socket.setdefaulttimeout(old)


def _child_client(address, authkey):
    with Client(address, authkey=authkey) as c:
        c.send(('child', os.getpid()))


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_client_in_child_process(method):
    ctx = multiprocess.get_context(method)
    with Listener(authkey=KEY) as l:
        p = ctx.Process(target=_child_client, args=(l.address, KEY))
        p.start()
        with l.accept() as conn:
            assert conn.recv() == ('child', p.pid)
        p.join(30)
        assert p.exitcode == 0


# -- authentication ----------------------------------------------------------

@pytest.mark.timeout(30)
def test_matching_authkeys():
    with Listener(authkey=KEY) as l:
        done = in_thread(client_round_trip, l.address, KEY)
        with l.accept() as conn:
            assert conn.recv()[0] == 'ping'
            conn.send('pong')
        assert done() == 'pong'


@pytest.mark.timeout(30)
def test_wrong_authkey_fails_on_both_sides():
    with Listener(authkey=KEY) as l:
        done = in_thread(client_round_trip, l.address, b'wrong key')
        with pytest.raises(AuthenticationError):
            l.accept()
        with pytest.raises(AuthenticationError):
            done()
        # the listener keeps working for an honest client
        done = in_thread(client_round_trip, l.address, KEY)
        with l.accept() as conn:
            conn.recv()
            conn.send('ok')
        assert done() == 'ok'


@pytest.mark.timeout(30)
def test_client_without_key_is_refused_by_keyed_listener():
    with Listener(authkey=KEY) as l:
        c = Client(l.address)
        c.send('hello, no key')
        with pytest.raises(AuthenticationError):
            l.accept()
        c.close()


@pytest.mark.timeout(30)
def test_empty_authkey_pair_connects_at_once():
    # b'' is a key like any other (bpo-43952): both ends run the handshake,
    # so neither waits for a challenge the other never sends.
    with Listener(authkey=b'') as l:
        done = in_thread(client_round_trip, l.address, b'')
        with l.accept() as conn:
            assert conn.recv()[0] == 'ping'
            conn.send('open')
        assert done(10) == 'open'


@pytest.mark.timeout(30)
def test_empty_authkey_listener_refuses_client_with_a_key():
    with Listener(authkey=b'') as l:
        done = in_thread(client_round_trip, l.address, KEY)
        with pytest.raises(AuthenticationError):
            l.accept()
        with pytest.raises(AuthenticationError):
            done()


@pytest.mark.timeout(30)
def test_stdlib_client_with_empty_authkey_to_our_listener():
    with Listener(authkey=b'') as l:
        done = in_thread(client_round_trip, l.address, b'', std.Client)
        with l.accept() as conn:
            assert conn.recv()[0] == 'ping'
            conn.send('open')
        assert done(10) == 'open'


def _stdlib_listener_challenges_empty_key():
    # Older patch releases (3.10.x, 3.11 before the bpo-43952 fix, 3.12.1)
    # skip the handshake in Listener for b'' while their Client runs it, so
    # no Client can connect to them with b'', not even their own.
    with std.Listener(authkey=b'') as l:
        raw = connection.SocketClient(l.address)
        try:
            accepted = in_thread(l.accept)
            challenged = raw.poll(5)
            raw.close()
            try:
                accepted().close()
            except Exception:
                pass
            return challenged
        finally:
            raw.close()


@pytest.mark.timeout(30)
def test_our_client_with_empty_authkey_to_stdlib_listener():
    if not _stdlib_listener_challenges_empty_key():
        pytest.skip("this Python's stdlib Listener skips the handshake for "
                    "authkey=b'' while every Client runs it")
    with std.Listener(authkey=b'') as l:
        done = in_thread(client_round_trip, l.address, b'')
        with l.accept() as conn:
            assert conn.recv()[0] == 'ping'
            conn.send('open')
        assert done(10) == 'open'


def test_deliver_challenge_rejects_bogus_digest():
    sent = []

    class Fake:
        def recv_bytes(self, maxlength):
            assert maxlength <= 256
            return b'something bogus'

        def send_bytes(self, data):
            sent.append(bytes(data))
    with pytest.raises(AuthenticationError):
        connection.deliver_challenge(Fake(), b'abc')
    assert sent[0].startswith(connection._CHALLENGE)
    tag = b'{sha256}' if sys.version_info >= (3, 12) else b''
    assert sent[0][len(connection._CHALLENGE):].startswith(tag)
    assert len(sent[0]) == (len(connection._CHALLENGE) + len(tag)
                            + connection.MESSAGE_LENGTH)
    assert sent[-1] == connection._FAILURE


def test_answer_challenge_rejected_digest():
    replies = iter([connection._CHALLENGE + b'x' * 20, b'something bogus'])

    class Fake:
        def recv_bytes(self, maxlength):
            return next(replies)

        def send_bytes(self, data):
            pass
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(Fake(), b'abc')


def test_answer_challenge_refuses_non_challenge():
    class Fake:
        def recv_bytes(self, maxlength):
            return b'#NOT-A-CHALLENGE#'

        def send_bytes(self, data):
            raise AssertionError('must not answer')
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(Fake(), b'abc')


def test_handshake_needs_bytes_key():
    with pytest.raises(ValueError):
        connection.deliver_challenge(None, 'text')
    with pytest.raises(ValueError):
        connection.answer_challenge(None, 'text')


# -- the handshake of the running Python --------------------------------------

PY312 = sys.version_info >= (3, 12)


def test_handshake_names_follow_the_running_python():
    # 3.12 made CHALLENGE/WELCOME/FAILURE private and doubled the nonce.
    assert connection.MESSAGE_LENGTH == (40 if PY312 else 20)
    for name in ('CHALLENGE', 'WELCOME', 'FAILURE'):
        assert hasattr(connection, name) == (not PY312) == hasattr(std, name)
    for name in ('_create_response', '_verify_challenge'):
        assert hasattr(connection, name) == PY312 == hasattr(std, name)


# A peer of Python 3.11 or older, written from its wire format: a bare
# 20-byte nonce, answered with a bare HMAC-MD5 of whatever follows the
# challenge marker.
def _legacy_deliver(conn, key):
    import hmac
    nonce = os.urandom(20)
    conn.send_bytes(b'#CHALLENGE#' + nonce)
    ok = hmac.compare_digest(conn.recv_bytes(256),
                             hmac.new(key, nonce, 'md5').digest())
    conn.send_bytes(b'#WELCOME#' if ok else b'#FAILURE#')
    if not ok:
        raise AuthenticationError('legacy peer: wrong digest')


def _legacy_answer(conn, key):
    import hmac
    challenge = conn.recv_bytes(256)
    assert challenge.startswith(b'#CHALLENGE#')
    conn.send_bytes(hmac.new(key, challenge[11:], 'md5').digest())
    if conn.recv_bytes(256) != b'#WELCOME#':
        raise AuthenticationError('legacy peer: rejected')


def _legacy_client(address, key):
    with connection.SocketClient(address) as c:
        _legacy_answer(c, key)
        _legacy_deliver(c, key)
        c.send('legacy')
        return c.recv()


@pytest.mark.timeout(30)
def test_legacy_md5_client_to_our_listener():
    with Listener(authkey=KEY) as l:
        done = in_thread(_legacy_client, l.address, KEY)
        with l.accept() as conn:
            assert conn.recv() == 'legacy'
            conn.send('welcome, old friend')
        assert done() == 'welcome, old friend'


@pytest.mark.timeout(30)
def test_legacy_md5_client_with_wrong_key_is_refused():
    with Listener(authkey=KEY) as l:
        done = in_thread(_legacy_client, l.address, b'wrong')
        with pytest.raises(AuthenticationError):
            l.accept()
        with pytest.raises(AuthenticationError):
            done()


@pytest.mark.timeout(30)
def test_our_client_to_legacy_md5_listener():
    listener = connection.SocketListener(
        connection.arbitrary_address('AF_UNIX'), 'AF_UNIX')
    try:
        done = in_thread(client_round_trip, listener._address, KEY)
        with listener.accept() as conn:
            _legacy_deliver(conn, KEY)
            _legacy_answer(conn, KEY)
            assert conn.recv()[0] == 'ping'
            conn.send('from 3.11')
        assert done() == 'from 3.11'
    finally:
        listener.close()


@pytest.mark.skipif(not PY312, reason='the tagged handshake is 3.12+')
def test_challenge_and_answer_are_tagged_with_the_digest():
    sent = []

    class Peer:
        def __init__(self, replies):
            self.replies = iter(replies)

        def recv_bytes(self, maxlength):
            return next(self.replies)

        def send_bytes(self, data):
            sent.append(bytes(data))

    message = b'{sha256}' + b'n' * 40
    connection.answer_challenge(
        Peer([connection._CHALLENGE + message, connection._WELCOME]), KEY)
    import hmac
    assert sent == [b'{sha256}' + hmac.new(KEY, message, 'sha256').digest()]


@pytest.mark.skipif(not PY312, reason='the tagged handshake is 3.12+')
@pytest.mark.parametrize('tag', [b'', b'{md5}', b'{sha256}', b'{sha384}'])
def test_create_response_is_verified_for_each_digest(tag):
    message = tag + b'is-twenty-bytes-long'
    response = connection._create_response(KEY, message)
    assert response.startswith(tag)
    connection._verify_challenge(KEY, message, response)
    with pytest.raises(AuthenticationError):
        connection._verify_challenge(b'other key', message, response)
    # our answers are accepted by the standard library's check, and its by ours
    std._verify_challenge(KEY, message, response)
    connection._verify_challenge(KEY, message,
                                 std._create_response(KEY, message))


@pytest.mark.skipif(not PY312, reason='the tagged handshake is 3.12+')
@pytest.mark.parametrize('message', [
    b'x' * 30,                          # neither legacy length nor tagged
    b'{sha1}' + b'x' * 40,              # a digest that is not allowed
    b'{sha256' + b'x' * 40,             # no closing brace
], ids=['untagged', 'sha1', 'unclosed'])
def test_unsupported_challenge_is_authentication_error(message):
    with pytest.raises(AuthenticationError):
        connection._create_response(KEY, message)
    with pytest.raises(AuthenticationError):
        connection._verify_challenge(KEY, message, message)


@pytest.mark.skipif(not PY312, reason='the tagged handshake is 3.12+')
def test_short_challenge_is_refused_before_answering():
    class Peer:
        def recv_bytes(self, maxlength):
            return connection._CHALLENGE + b'short'

        def send_bytes(self, data):
            raise AssertionError('must not answer')
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(Peer(), KEY)


# -- interoperability with the standard library ---------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize('authkey', [None, KEY])
def test_stdlib_client_to_our_listener(authkey):
    with Listener(authkey=authkey) as l:
        done = in_thread(client_round_trip, l.address, authkey, std.Client)
        with l.accept() as conn:
            assert conn.recv()[0] == 'ping'
            conn.send('from multiprocess')
        assert done() == 'from multiprocess'


@pytest.mark.timeout(30)
@pytest.mark.parametrize('authkey', [None, KEY])
def test_our_client_to_stdlib_listener(authkey):
    with std.Listener(authkey=authkey) as l:
        done = in_thread(client_round_trip, l.address, authkey)
        with l.accept() as conn:
            assert conn.recv()[0] == 'ping'
            conn.send('from multiprocessing')
        assert done() == 'from multiprocessing'


@pytest.mark.timeout(30)
def test_stdlib_client_with_wrong_key_is_refused():
    with Listener(authkey=KEY) as l:
        done = in_thread(client_round_trip, l.address, b'nope', std.Client)
        with pytest.raises(AuthenticationError):
            l.accept()
        with pytest.raises(std.AuthenticationError):
            done()


@pytest.mark.timeout(30)
def test_our_client_with_wrong_key_is_refused_by_stdlib():
    with std.Listener(authkey=KEY) as l:
        done = in_thread(client_round_trip, l.address, b'nope')
        with pytest.raises(std.AuthenticationError):
            l.accept()
        with pytest.raises(AuthenticationError):
            done()


# -- hostile peers before authentication -------------------------------------

def _raw_peer(address, payload):
    family = getattr(socket, connection.address_type(address))
    s = socket.socket(family)
    s.connect(address)
    s.sendall(payload)
    return s


def _max_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.timeout(30)
@pytest.mark.parametrize('payload', [
    struct.pack('!i', 0x7fffffff),                   # 2 GiB frame announced
    struct.pack('!iQ', -1, 1 << 62),                 # 4 EiB long frame
    struct.pack('!i', 257) + b'x' * 257,             # just over the cap
    struct.pack('!i', -7) + b'x' * 64,               # nonsense length
], ids=['2GiB', 'huge-long-form', 'over-cap', 'negative'])
def test_oversized_or_malformed_frame_is_rejected_cheaply(payload):
    with Listener(authkey=KEY) as l:
        before = _max_rss_kb()
        peer = _raw_peer(l.address, payload)
        try:
            t = time.monotonic()
            with pytest.raises((OSError, AuthenticationError)):
                l.accept()
            assert time.monotonic() - t < 5
        finally:
            peer.close()
        assert _max_rss_kb() - before < 64 * 1024    # no big allocation
        # still serving honest clients
        done = in_thread(client_round_trip, l.address, KEY)
        with l.accept() as conn:
            conn.recv()
            conn.send('still fine')
        assert done() == 'still fine'


@pytest.mark.timeout(30)
def test_garbage_digest_of_right_size_is_authentication_error():
    with Listener(authkey=KEY) as l:
        peer = _raw_peer(l.address, struct.pack('!i', 16) + b'\xff' * 16)
        try:
            with pytest.raises(AuthenticationError):
                l.accept()
        finally:
            peer.close()


@pytest.mark.timeout(30)
def test_truncated_frame_then_hangup_is_an_error():
    with Listener(authkey=KEY) as l:
        peer = _raw_peer(l.address, struct.pack('!i', 16) + b'abc')
        peer.shutdown(socket.SHUT_WR)
        try:
            with pytest.raises((OSError, EOFError, AuthenticationError)):
                l.accept()
        finally:
            peer.close()


@pytest.mark.timeout(30)
def test_client_refuses_oversized_challenge():
    # A hostile listener cannot make a Client allocate either.
    server = socket.socket(socket.AF_UNIX)
    address = connection.arbitrary_address('AF_UNIX')
    server.bind(address)
    server.listen(1)
    try:
        def hostile():
            s, _ = server.accept()
            s.sendall(struct.pack('!i', 0x7fffffff))
            return s
        done = in_thread(hostile)
        with pytest.raises((OSError, AuthenticationError)):
            Client(address, authkey=KEY)
        done().close()
    finally:
        server.close()
        os.unlink(address)


# -- other serializations ----------------------------------------------------

@pytest.mark.timeout(30)
def test_xml_listener_and_client():
    with connection.XmlListener(authkey=KEY) as l:
        def xml_client():
            with connection.XmlClient(l.address, authkey=KEY) as c:
                c.send({'numbers': [1, 2, 3], 'text': 'hi'})
                return c.recv()
        done = in_thread(xml_client)
        conn = l.accept()
        assert conn.recv() == {'numbers': [1, 2, 3], 'text': 'hi'}
        assert conn.poll(0) is False
        conn.send(['reply', 4.5])
        assert done() == ['reply', 4.5]
        conn.close()
