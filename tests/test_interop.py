"""A standard-library multiprocessing process and a multiprocess process talk
over one connection, both ways: the wire format (4-byte big-endian length,
then the payload; pickles for send/recv) and the authentication handshake are
the stdlib's, so plain data crosses in either direction.

The stdlib peer always runs in a subprocess of its own, so that the two
packages never share an interpreter.
"""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

# plain data only: the stdlib peer unpickles with plain pickle
OBJECTS = [
    None, True, 0, -1, 2 ** 70, 3.5, "text", "\u00e9t\u00e9", b"\x00\x01",
    (1, "two", 3.0), [1, [2, [3]]], {"a": 1, "b": [1, 2], "c": {"d": None}},
    {1, 2, 3}, frozenset({"x"}), bytearray(b"abc"), list(range(1000)),
    "x" * 100_000,
]
BIG = os.urandom(3 * 1024 * 1024)  # several MB: more than one write/read

# The stdlib peer: receives every object and sends back (kind, object),
# then sends its own objects and echoes raw bytes, then says goodbye.
PEER = textwrap.dedent(r"""
    import sys, pickle
    import multiprocessing.connection as mc
    assert 'multiprocess' not in sys.modules
    def serve(conn):
        n = conn.recv()
        for _ in range(n):
            obj = conn.recv()
            conn.send(('stdlib saw', obj))
        conn.send_bytes(conn.recv_bytes())          # big raw buffer echo
        conn.send({'from': 'stdlib', 'list': [1, 2, 3], 'tuple': (None, 1.5)})
        conn.send(conn.recv())                      # one more echo
        conn.close()
    mode = sys.argv[1]
    if mode == 'fd':
        serve(mc.Connection(int(sys.argv[2])))
    elif mode == 'client':
        family = 'AF_UNIX' if sys.argv[2].startswith('/') else 'AF_INET'
        addr = sys.argv[2] if family == 'AF_UNIX' else (sys.argv[2].split(':')[0], int(sys.argv[2].split(':')[1]))
        serve(mc.Client(addr, family=family, authkey=sys.argv[3].encode()))
    elif mode == 'listener':
        with mc.Listener(('127.0.0.1', 0), authkey=sys.argv[2].encode()) as lst:
            print('%s:%d' % lst.address, flush=True)
            serve(lst.accept())
""")


def _exchange(conn):
    """Our side of the conversation PEER serves."""
    conn.send(len(OBJECTS))
    for obj in OBJECTS:
        conn.send(obj)
        assert conn.poll(60), "the stdlib peer did not answer"
        kind, back = conn.recv()
        assert kind == "stdlib saw"
        assert back == obj and type(back) is type(obj)
    conn.send_bytes(BIG)
    assert conn.recv_bytes() == BIG
    assert conn.recv() == {"from": "stdlib", "list": [1, 2, 3], "tuple": (None, 1.5)}
    conn.send(("last", 1))
    assert conn.recv() == ("last", 1)
    with pytest.raises(EOFError):
        conn.recv()


def _peer(*args, **kw):
    return subprocess.Popen([sys.executable, "-c", PEER, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _finish(proc):
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    return out


@pytest.mark.timeout(120)
def test_inherited_socketpair_both_directions():
    from multiprocess.connection import Connection
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = _peer("fd", theirs.fileno(), pass_fds=[theirs.fileno()])
        theirs.close()
        conn = Connection(ours.detach())
        try:
            _exchange(conn)
        finally:
            conn.close()
        _finish(proc)


@pytest.mark.timeout(120)
def test_inherited_pipe_end_both_directions():
    import multiprocess
    ours, theirs = multiprocess.Pipe()
    proc = _peer("fd", theirs.fileno(), pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        _exchange(ours)
    finally:
        ours.close()
    _finish(proc)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("family", ["AF_INET", "AF_UNIX"])
def test_our_listener_with_a_stdlib_client(family):
    from multiprocess.connection import Listener
    key = "interop-key"
    with Listener(family=family, authkey=key.encode()) as lst:
        addr = lst.address if family == "AF_UNIX" else "%s:%d" % lst.address
        proc = _peer("client", addr, key)
        conn = lst.accept()
        try:
            _exchange(conn)
        finally:
            conn.close()
    _finish(proc)


@pytest.mark.timeout(120)
def test_stdlib_listener_with_our_client():
    from multiprocess.connection import Client
    key = "interop-key-2"
    proc = _peer("listener", key)
    try:
        line = proc.stdout.readline().strip()
        assert line, proc.stderr.read()
        host, port = line.split(":")
        conn = Client((host, int(port)), authkey=key.encode())
        try:
            _exchange(conn)
        finally:
            conn.close()
    finally:
        if proc.poll() is None:
            proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


@pytest.mark.timeout(120)
def test_wrong_authkey_is_refused_across_implementations():
    from multiprocess import AuthenticationError
    from multiprocess.connection import Client
    proc = _peer("listener", "right-key")
    try:
        line = proc.stdout.readline().strip()
        host, port = line.split(":")
        with pytest.raises(AuthenticationError):
            Client((host, int(port)), authkey=b"wrong-key")
    finally:
        proc.kill()
        proc.wait(timeout=60)
