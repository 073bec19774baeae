"""A manager server in a process of its own, served over TCP (loopback)
with an authkey: the "remote manager" pattern."""
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from multiprocess import connection
from multiprocess.managers import BaseManager, DictProxy, dispatch

pytestmark = pytest.mark.timeout(120)

AUTHKEY = b'remote-secret'

SERVER = textwrap.dedent('''
    import sys, time
    from multiprocess.managers import BaseManager, DictProxy

    shared = {}

    class Sleeper:
        def nap(self, seconds):
            time.sleep(seconds)
            return seconds

    class RemoteManager(BaseManager):
        pass

    RemoteManager.register('get_dict', callable=lambda: shared,
                           proxytype=DictProxy)
    RemoteManager.register('Sleeper', Sleeper)

    m = RemoteManager(address=('127.0.0.1', 0), authkey=%r)
    server = m.get_server()
    print(server.address[1], flush=True)
    server.serve_forever()
''') % (AUTHKEY,)

CLIENT = textwrap.dedent('''
    import sys
    from multiprocess.managers import BaseManager

    class RemoteManager(BaseManager):
        pass
    RemoteManager.register('get_dict')

    port, prefix = int(sys.argv[1]), sys.argv[2]
    m = RemoteManager(address=('127.0.0.1', port), authkey=%r)
    m.connect()
    d = m.get_dict()
    for i in range(50):
        d['%%s%%d' %% (prefix, i)] = i
    print(len(d), flush=True)
''') % (AUTHKEY,)


class RemoteManager(BaseManager):
    pass


RemoteManager.register('get_dict', proxytype=DictProxy)
RemoteManager.register('Sleeper')


@pytest.fixture
def server():
    proc = subprocess.Popen([sys.executable, '-c', SERVER],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield proc, ('127.0.0.1', port)
    finally:
        if proc.poll() is None:
            try:
                conn = connection.Client(('127.0.0.1', port), authkey=AUTHKEY)
                dispatch(conn, None, 'shutdown')
                conn.close()
                proc.wait(10)
            except Exception:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()


def connected(address, authkey=AUTHKEY):
    m = RemoteManager(address=address, authkey=authkey)
    m.connect()
    return m


@pytest.mark.timeout(120)
def test_two_client_processes_share_one_dict(server):
    proc, address = server
    clients = [subprocess.Popen([sys.executable, '-c', CLIENT,
                                 str(address[1]), prefix],
                                stdout=subprocess.PIPE, text=True)
               for prefix in ('a', 'b')]
    for c in clients:
        out, _ = c.communicate(timeout=90)
        assert c.returncode == 0
        assert 50 <= int(out) <= 100
    d = connected(address).get_dict()
    expected = {f'{p}{i}': i for p in 'ab' for i in range(50)}
    assert d.copy() == expected


@pytest.mark.timeout(60)
def test_wrong_authkey_is_refused_and_server_keeps_serving(server):
    proc, address = server
    with pytest.raises(mp_auth_error()):
        connected(address, authkey=b'not the key')
    d = connected(address).get_dict()
    d['after'] = 1
    assert d['after'] == 1
    assert proc.poll() is None


def mp_auth_error():
    from multiprocess import AuthenticationError
    return AuthenticationError


@pytest.mark.timeout(60)
def test_client_disconnecting_mid_call_does_not_kill_server(server):
    proc, address = server
    conn = connection.Client(address, authkey=AUTHKEY)
    ident, _ = dispatch(conn, None, 'create', ('Sleeper',))
    conn.send((ident, 'nap', (0.3,), {}))
    conn.close()                       # gone before the reply is sent
    # a peer that dies half-way through a frame, before authenticating
    with socket.create_connection(address) as raw:
        raw.sendall(b'\x00\x00')
    time.sleep(0.6)
    d = connected(address).get_dict()
    d['alive'] = True
    assert d['alive'] is True
    assert proc.poll() is None


@pytest.mark.timeout(60)
def test_silent_peer_does_not_block_other_clients(server):
    proc, address = server
    with socket.create_connection(address):       # never answers the challenge
        start = time.monotonic()
        d = connected(address).get_dict()
        d['x'] = 1
        assert d['x'] == 1
        assert time.monotonic() - start < 10


@pytest.mark.timeout(60)
def test_remote_error_for_unknown_object(server):
    from multiprocess.managers import RemoteError
    proc, address = server
    conn = connection.Client(address, authkey=AUTHKEY)
    try:
        with pytest.raises(RemoteError):
            dispatch(conn, 'no-such-id', 'keys')
        assert dispatch(conn, None, 'number_of_objects') >= 0
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_shutdown_request_stops_server(server):
    proc, address = server
    conn = connection.Client(address, authkey=AUTHKEY)
    dispatch(conn, None, 'shutdown')
    conn.close()
    assert proc.wait(20) == 0


@pytest.mark.timeout(60)
def test_peer_that_never_authenticates_is_dropped():
    import threading
    from multiprocess.managers import Server
    server = Server(RemoteManager._registry, ('127.0.0.1', 0), AUTHKEY, 'pickle')
    server.handshake_timeout = 0.5
    threading.Thread(target=server.accepter, daemon=True).start()
    try:
        with socket.create_connection(server.address) as silent:
            silent.settimeout(10)
            received = b''
            while True:                 # the challenge, then end of stream
                chunk = silent.recv(4096)
                if not chunk:
                    break
                received += chunk
            assert b'#CHALLENGE#' in received
        # and a well-behaved client is still served
        conn = connection.Client(server.address, authkey=AUTHKEY)
        with conn:
            assert dispatch(conn, None, 'number_of_objects') == 0
    finally:
        server.listener.close()
