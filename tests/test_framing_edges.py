"""Frames a conforming sender never writes (connection.c, the wire format
in docs/architecture.md).

A length that is negative but not -1 raises OSError in every reader (the
standard library's reader returns b'' there, by accident of its loop).  A
length is the peer's word: a payload beyond a few MiB is read into a buffer
that grows as bytes arrive, so a peer that claims gigabytes and sends little
costs what it sent, while long frames that are what they claim still
arrive whole.
"""
import os
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

import _multiprocess as native
import multiprocess
from multiprocess import connection



@pytest.mark.timeout(30)
@pytest.mark.parametrize("length", [-2, -7, -(1 << 31)])
def test_a_negative_length_other_than_minus_one_raises_oserror(pipe_fds,
                                                               length):
    r, w = pipe_fds
    readers = [
        lambda: native.recv_bytes(r),
        lambda: native.recv_bytes(r, 100),
        lambda: native.recv_bytes_into(r, bytearray(10), 0),
    ]
    for read in readers:
        os.write(w, struct.pack("!i", length) + b"after")
        with pytest.raises(OSError, match="bad message length"):
            read()
        # only the 4-byte header was taken
        assert os.read(r, 100) == b"after"


@pytest.mark.timeout(30)
def test_a_negative_length_raises_oserror_from_connection_recv():
    r, w = connection.Pipe(duplex=False)
    os.write(w.fileno(), struct.pack("!i", -5))
    with pytest.raises(OSError, match="bad message length"):
        r.recv()
    os.write(w.fileno(), struct.pack("!i", -5))
    with pytest.raises(OSError, match="bad message length"):
        r.recv_bytes()
    r.close()
    w.close()


_CLAIM_MORE_THAN_SENT = textwrap.dedent("""
    import os, resource, struct, sys
    import _multiprocess as native
    from multiprocess import connection
    # Address space for the interpreter, not for an 8 GiB payload buffer.
    limit = 768 << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    claim = struct.pack("!iQ", -1, 8 << 30)
    for how in ("recv_bytes", "recv_bytes_into", "recv"):
        r, w = os.pipe()
        os.write(w, claim + b"x" * 4096)
        os.close(w)
        conn = connection.Connection(r, writable=False)
        try:
            if how == "recv_bytes":
                native.recv_bytes(r)
            elif how == "recv_bytes_into":
                native.recv_bytes_into(r, bytearray(16), 0)
            else:
                conn.recv()
        except MemoryError:
            print(how, "MemoryError")
        except OSError as exc:
            print(how, "OSError", exc)
        conn.close()
""")


@pytest.mark.timeout(120)
def test_a_header_claiming_gigabytes_costs_only_what_was_sent():
    out = subprocess.run([sys.executable, "-c", _CLAIM_MORE_THAN_SENT],
                         capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [
        how + " OSError got end of file during message"
        for how in ("recv_bytes", "recv_bytes_into", "recv")], out.stdout


def _send_in_thread(fd, payload):
    t = threading.Thread(target=native.send_bytes, args=(fd, payload))
    t.start()
    return t


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [(8 << 20) - 1, 8 << 20, (8 << 20) + 1,
                                  (40 << 20) + 12345])
def test_long_frames_arrive_whole_while_the_buffer_grows(pipe_fds, size):
    r, w = pipe_fds
    payload = os.urandom(1 << 20) * (size >> 20) + os.urandom(size % (1 << 20))
    t = _send_in_thread(w, payload)
    assert native.recv_bytes(r) == payload
    t.join(60)
    t = _send_in_thread(w, payload)
    assert native.recv_bytes_into(r, bytearray(100), 0) == payload
    t.join(60)


@pytest.mark.timeout(120)
def test_a_long_frame_cut_short_raises_oserror_not_a_partial_result():
    r, w = os.pipe()

    def send_part_and_close():
        view = memoryview(struct.pack("!i", 20 << 20) + b"y" * (12 << 20))
        while view:
            view = view[os.write(w, view):]
        os.close(w)
    t = threading.Thread(target=send_part_and_close)
    t.start()
    try:
        with pytest.raises(OSError, match="end of file during message"):
            native.recv_bytes(r)
    finally:
        t.join(60)
        os.close(r)


@pytest.mark.timeout(60)
def test_connection_round_trips_a_long_message():
    a, b = multiprocess.Pipe()
    payload = {"blob": os.urandom(20 << 20)}
    t = threading.Thread(target=a.send, args=(payload,))
    t.start()
    assert b.recv() == payload
    t.join(30)
    a.close()
    b.close()
