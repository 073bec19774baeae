"""Listener and Client: families, addresses, authentication (also against
the standard library's implementation), and hostile peers."""
import os
import resource
import socket
import struct
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
def test_empty_authkey_on_listener_means_no_authentication():
    with Listener(authkey=b'') as l:
        done = in_thread(client_round_trip, l.address)
        with l.accept() as conn:
            conn.recv()
            conn.send('open')
        assert done() == 'open'


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
    assert sent[0].startswith(connection.CHALLENGE)
    assert len(sent[0]) == len(connection.CHALLENGE) + connection.MESSAGE_LENGTH
    assert sent[-1] == connection.FAILURE


def test_answer_challenge_rejected_digest():
    replies = iter([connection.CHALLENGE + b'x' * 20, b'something bogus'])

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
