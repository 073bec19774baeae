"""_multiprocess framed I/O: send_bytes / recv_bytes / recv_bytes_into /
poll / wait_fds on raw file descriptors (pipes and sockets).

Pins down the wire format (interoperable with the standard library's
Connection in both directions), partial reads/writes, every end-of-file and
error case, timeouts, and signals arriving while blocked.

Run this file as a script for the benchmark against the standard library:
    python tests/test_native_connection.py
"""
import array
import errno
import fcntl
import mmap
import os
import resource
import signal
import socket
import struct
import sys
import threading
import time

import pytest

import _multiprocess as native
from multiprocessing.connection import Connection as StdlibConnection


@pytest.fixture(params=["pipe", "socket"])
def channel(request):
    """(read_fd, write_fd) of a fresh pipe or socket pair; closed after."""
    if request.param == "pipe":
        rfd, wfd = os.pipe()
    else:
        a, b = socket.socketpair()
        rfd, wfd = a.detach(), b.detach()
    fds = [rfd, wfd]
    yield rfd, wfd
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture(params=["single-threaded", "threaded"])
def threads(request):
    """Run the test with and without a second Python thread alive: the
    native code only probes fds for ready bytes when another thread could
    want the GIL, so both paths need covering."""
    if request.param == "single-threaded":
        yield
        return
    stop = threading.Event()
    idler = threading.Thread(target=stop.wait, daemon=True)
    idler.start()
    yield
    stop.set()
    idler.join()


def close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def run_in_thread(fn, *args):
    out = {}

    def target():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # reported to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def read_exactly(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        assert chunk, "unexpected EOF"
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# --- round trips and wire format ---------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [0, 1, 4, 4095, 4096, 4097, 16385,
                                  65536, 1 << 20])
def test_round_trip_sizes(threads, channel, size):
    rfd, wfd = channel
    payload = os.urandom(size)
    t, out = run_in_thread(native.send_bytes, wfd, payload)
    assert native.recv_bytes(rfd) == payload
    t.join(10)
    assert "error" not in out


def test_wire_format_short_frame(channel):
    rfd, wfd = channel
    native.send_bytes(wfd, b"hello")
    assert os.read(rfd, 100) == b"\x00\x00\x00\x05hello"


def test_long_frame_header_is_decoded(channel):
    rfd, wfd = channel
    os.write(wfd, struct.pack("!i", -1) + struct.pack("!Q", 3) + b"abc")
    assert native.recv_bytes(rfd) == b"abc"


def test_corrupt_negative_length_raises(channel):
    rfd, wfd = channel
    os.write(wfd, struct.pack("!i", -7))
    with pytest.raises(OSError, match="bad message length"):
        native.recv_bytes(rfd)


def test_send_accepts_any_contiguous_buffer(channel):
    rfd, wfd = channel
    native.send_bytes(wfd, bytearray(b"ba"))
    native.send_bytes(wfd, memoryview(b"abcdef")[1:4])
    native.send_bytes(wfd, array.array("i", [1, 2, 3]))
    assert native.recv_bytes(rfd) == b"ba"
    assert native.recv_bytes(rfd) == b"bcd"
    assert native.recv_bytes(rfd) == array.array("i", [1, 2, 3]).tobytes()


def test_send_rejects_non_buffers_and_non_contiguous(channel):
    rfd, wfd = channel
    with pytest.raises(TypeError):
        native.send_bytes(wfd, "text")
    with pytest.raises((TypeError, BufferError, ValueError)):
        native.send_bytes(wfd, memoryview(b"abcdef")[::2])
    assert not native.poll(rfd, 0)   # nothing half-written


class _ChunkList(list):
    """Like the pickler output list in multiprocess.connection."""
    write = list.append


def test_send_pieces_writes_one_frame(channel):
    rfd, wfd = channel
    native._test_send_pieces(wfd, [b"ab", bytearray(b"cd"),
                             memoryview(b"xefx")[1:3]])
    native._test_send_pieces(wfd, (b"", b"g", b""))
    native._test_send_pieces(wfd, [])
    native._test_send_pieces(wfd, _ChunkList([b"h", b"i"]))
    assert read_exactly(rfd, 10) == b"\x00\x00\x00\x06abcdef"
    assert native.recv_bytes(rfd) == b"g"
    assert native.recv_bytes(rfd) == b""
    assert native.recv_bytes(rfd) == b"hi"


def test_send_bytes_does_not_gather(channel):
    rfd, wfd = channel
    with pytest.raises(TypeError):
        native.send_bytes(wfd, [b"a"])        # as the stdlib: not a buffer
    with pytest.raises(TypeError):
        native._test_send_pieces(wfd, b"abc")       # needs a list or tuple
    with pytest.raises(TypeError):
        native._test_send_pieces(wfd)
    assert not native.poll(rfd, 0)


@pytest.mark.timeout(60)
def test_send_pieces_more_than_iov_max(channel):
    rfd, wfd = channel
    pieces = [bytes([i % 251]) * (1 + i % 7) for i in range(5000)]
    t, out = run_in_thread(native._test_send_pieces, wfd, pieces)
    assert native.recv_bytes(rfd) == b"".join(pieces)
    t.join(10)
    assert "error" not in out


@pytest.mark.timeout(60)
def test_send_pieces_frame_read_by_stdlib(channel):
    rfd, wfd = channel
    receiver = StdlibConnection(os.dup(rfd))
    pieces = [b"head", os.urandom(300000), b"tail"]
    try:
        t, _ = run_in_thread(native._test_send_pieces, wfd, pieces)
        assert receiver.recv_bytes() == b"".join(pieces)
        t.join(10)
    finally:
        receiver.close()


def test_send_pieces_with_a_bad_piece_writes_nothing(channel):
    rfd, wfd = channel
    with pytest.raises(TypeError):
        native._test_send_pieces(wfd, [b"ok", "not bytes", b"ok"])
    with pytest.raises(TypeError):
        native._test_send_pieces(wfd, [b"x"] * 20 + [None])
    assert not native.poll(rfd, 0)


def test_fd_may_be_an_object_with_fileno(channel):
    rfd, wfd = channel

    class Holder:
        def __init__(self, fd):
            self.fd = fd

        def fileno(self):
            return self.fd

    native.send_bytes(Holder(wfd), b"x")
    assert native.recv_bytes(Holder(rfd)) == b"x"


def test_argument_count_errors(channel):
    rfd, wfd = channel
    with pytest.raises(TypeError):
        native.send_bytes(wfd)
    with pytest.raises(TypeError):
        native.recv_bytes()
    with pytest.raises(TypeError):
        native.recv_bytes_into(rfd, bytearray(1))
    with pytest.raises(TypeError):
        native.poll()
    with pytest.raises(TypeError):
        native.wait_fds()


# --- interoperability with the standard library ----------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [0, 10, 16384, 16385, 300000])
def test_stdlib_sender_native_receiver(channel, size):
    rfd, wfd = channel
    sender = StdlibConnection(os.dup(wfd))
    payload = os.urandom(size)
    try:
        t, out = run_in_thread(sender.send_bytes, payload)
        assert native.recv_bytes(rfd) == payload
        t.join(10)
        assert "error" not in out
    finally:
        sender.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [0, 10, 16384, 16385, 300000])
def test_native_sender_stdlib_receiver(channel, size):
    rfd, wfd = channel
    receiver = StdlibConnection(os.dup(rfd))
    payload = os.urandom(size)
    try:
        t, out = run_in_thread(native.send_bytes, wfd, payload)
        assert receiver.recv_bytes() == payload
        t.join(10)
        assert "error" not in out
    finally:
        receiver.close()


def test_stdlib_reads_long_frame_header_we_decode(channel):
    rfd, wfd = channel
    receiver = StdlibConnection(os.dup(rfd))
    try:
        os.write(wfd, struct.pack("!i", -1) + struct.pack("!Q", 2) + b"ok")
        assert receiver.recv_bytes() == b"ok"
    finally:
        receiver.close()


@pytest.mark.timeout(120)
def test_send_over_2gib_uses_long_header():
    """A payload over 0x7fffffff bytes gets the -1 + 8-byte header.  The
    buffer is an untouched anonymous mapping (the zero page), so this needs
    no RAM; a child drains the pipe and reports the header it saw."""
    size = 0x80000000 + 5
    buf = mmap.mmap(-1, size)
    rfd, wfd = os.pipe()
    try:        # a roomier pipe: fewer round trips through the scheduler
        fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(wfd)
            head = read_exactly(rfd, 12)
            marker, = struct.unpack("!i", head[:4])
            length, = struct.unpack("!Q", head[4:])
            left = length
            # spliced into /dev/null: drained without a copy to user space
            with open(os.devnull, 'wb') as null:
                while left:
                    n = os.splice(rfd, null.fileno(), min(left, 1 << 30))
                    assert n
                    left -= n
            code = 0 if (marker, length) == (-1, size) else 2
        finally:
            os._exit(code)
    os.close(rfd)
    try:
        native.send_bytes(wfd, buf)
    finally:
        os.close(wfd)
        buf.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- end of file ----------------------------------------------------------------

def test_eof_before_frame_raises_eoferror(channel):
    rfd, wfd = channel
    os.close(wfd)
    with pytest.raises(EOFError):
        native.recv_bytes(rfd)


def test_eof_inside_header_raises_oserror(channel):
    rfd, wfd = channel
    os.write(wfd, b"\x00\x00")
    os.close(wfd)
    with pytest.raises(OSError, match="end of file during message"):
        native.recv_bytes(rfd)


def test_eof_inside_long_header_raises_oserror(channel):
    rfd, wfd = channel
    os.write(wfd, struct.pack("!i", -1) + b"\x00\x00")
    os.close(wfd)
    with pytest.raises(OSError, match="end of file during message"):
        native.recv_bytes(rfd)


def test_eof_after_header_raises_oserror(channel):
    rfd, wfd = channel
    os.write(wfd, struct.pack("!i", 10))
    os.close(wfd)
    with pytest.raises(OSError, match="end of file during message"):
        native.recv_bytes(rfd)


@pytest.mark.parametrize("size", [10, 100000])
def test_eof_mid_payload_raises_oserror(threads, channel, size):
    rfd, wfd = channel
    t, _ = run_in_thread(os.write, wfd, struct.pack("!i", size) + b"x" * 5)
    t.join(10)
    os.close(wfd)
    with pytest.raises(OSError, match="end of file during message") as info:
        native.recv_bytes(rfd)
    assert not isinstance(info.value, EOFError)


def test_eof_mid_payload_into_buffer(channel):
    rfd, wfd = channel
    os.write(wfd, struct.pack("!i", 10) + b"abc")
    os.close(wfd)
    with pytest.raises(OSError, match="end of file during message"):
        native.recv_bytes_into(rfd, bytearray(20), 0)


def test_send_to_closed_reader_raises_broken_pipe(channel):
    rfd, wfd = channel
    os.close(rfd)
    with pytest.raises(BrokenPipeError):
        native.send_bytes(wfd, b"x" * 100)


def test_bad_fd_raises_oserror():
    rfd, wfd = os.pipe()
    os.close(rfd)
    os.close(wfd)
    with pytest.raises(OSError) as info:
        native.recv_bytes(rfd)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError):
        native.send_bytes(wfd, b"x")
    with pytest.raises(OSError):
        native.poll(rfd, 0)
    with pytest.raises(ValueError):
        native.recv_bytes(-1)


# --- maxlength -------------------------------------------------------------------

def test_maxlength_too_short_returns_none_and_leaves_payload(threads, channel):
    rfd, wfd = channel
    native.send_bytes(wfd, b"0123456789")
    native.send_bytes(wfd, b"next")
    assert native.recv_bytes(rfd, 9) is None
    assert read_exactly(rfd, 10) == b"0123456789"
    assert native.recv_bytes(rfd, 4) == b"next"


def test_maxlength_boundaries(channel):
    rfd, wfd = channel
    for data in (b"", b"abc", b"z" * 10000):
        native.send_bytes(wfd, data)
        assert native.recv_bytes(rfd, len(data)) == data
    native.send_bytes(wfd, b"z" * 10000)
    assert native.recv_bytes(rfd, 5000) is None
    read_exactly(rfd, 10000)
    native.send_bytes(wfd, b"q")
    assert native.recv_bytes(rfd, None) == b"q"
    native.send_bytes(wfd, b"q")
    assert native.recv_bytes(rfd, -1) == b"q"


# --- recv_bytes_into -------------------------------------------------------------

def test_recv_into_at_offset(channel):
    rfd, wfd = channel
    buf = bytearray(b"." * 10)
    native.send_bytes(wfd, b"abc")
    assert native.recv_bytes_into(rfd, buf, 4) == 3
    assert buf == bytearray(b"....abc...")


def test_recv_into_exact_fit_and_empty(channel):
    rfd, wfd = channel
    buf = bytearray(5)
    native.send_bytes(wfd, b"12345")
    assert native.recv_bytes_into(rfd, buf, 0) == 5
    native.send_bytes(wfd, b"")
    assert native.recv_bytes_into(rfd, buf, 5) == 0
    assert buf == bytearray(b"12345")


def test_recv_into_too_small_returns_whole_message(threads, channel):
    rfd, wfd = channel
    buf = bytearray(b"." * 8)
    message = b"x" * 7
    native.send_bytes(wfd, message)
    native.send_bytes(wfd, b"after")
    got = native.recv_bytes_into(rfd, buf, 2)
    assert got == message and type(got) is bytes
    assert buf == bytearray(b"." * 8)        # untouched
    assert native.recv_bytes(rfd) == b"after"  # stream still in step


def test_recv_into_large_message_too_small(channel):
    rfd, wfd = channel
    message = os.urandom(200000)
    t, _ = run_in_thread(native.send_bytes, wfd, message)
    assert native.recv_bytes_into(rfd, bytearray(100), 0) == message
    t.join(10)


def test_recv_into_typed_array_offset_in_bytes(channel):
    rfd, wfd = channel
    arr = array.array("i", [0] * 4)
    payload = array.array("i", [7, 8]).tobytes()
    native.send_bytes(wfd, payload)
    assert native.recv_bytes_into(rfd, arr, arr.itemsize) == len(payload)
    assert list(arr) == [0, 7, 8, 0]


def test_recv_into_offset_errors(channel):
    rfd, wfd = channel
    native.send_bytes(wfd, b"kept")
    with pytest.raises(ValueError, match="negative offset"):
        native.recv_bytes_into(rfd, bytearray(4), -1)
    with pytest.raises(ValueError, match="offset too large"):
        native.recv_bytes_into(rfd, bytearray(4), 5)
    with pytest.raises((TypeError, BufferError)):
        native.recv_bytes_into(rfd, b"readonly", 0)
    assert native.recv_bytes(rfd) == b"kept"     # nothing was consumed


# --- poll and wait_fds -------------------------------------------------------

def test_poll_without_data(threads, channel):
    rfd, wfd = channel
    assert native.poll(rfd, 0) is False
    assert native.poll(rfd, -3) is False
    assert native.poll(rfd) is False


@pytest.mark.timeout(20)
def test_poll_timeout_waits(threads, channel):
    rfd, _ = channel
    start = time.monotonic()
    assert native.poll(rfd, 0.2) is False
    assert 0.19 <= time.monotonic() - start < 5


@pytest.mark.timeout(20)
def test_poll_sees_data_and_eof(threads, channel):
    rfd, wfd = channel
    native.send_bytes(wfd, b"x")
    assert native.poll(rfd, 0) is True
    assert native.poll(rfd, None) is True
    native.recv_bytes(rfd)
    os.close(wfd)
    assert native.poll(rfd, 0) is True   # EOF is "readable": recv won't block


@pytest.mark.timeout(20)
def test_poll_forever_wakes_on_data(threads, channel):
    rfd, wfd = channel
    threading.Timer(0.1, native.send_bytes, (wfd, b"late")).start()
    assert native.poll(rfd, None) is True
    assert native.recv_bytes(rfd) == b"late"


def test_poll_timeout_type_errors(channel):
    rfd, _ = channel
    with pytest.raises(TypeError):
        native.poll(rfd, "1")
    with pytest.raises(ValueError):
        native.poll(rfd, float("nan"))


@pytest.mark.timeout(20)
def test_wait_fds_reports_ready_in_given_order():
    pipes = [os.pipe() for _ in range(4)]
    try:
        native.send_bytes(pipes[3][1], b"a")
        native.send_bytes(pipes[1][1], b"b")
        reads = [r for r, _ in pipes]
        assert native.wait_fds(reads, 0) == [reads[1], reads[3]]
        assert native.wait_fds(reads, None) == [reads[1], reads[3]]
        os.close(pipes[0][1])
        assert native.wait_fds(reads, 1) == [reads[0], reads[1], reads[3]]
    finally:
        for r, w in pipes:
            close_quietly(r)
            close_quietly(w)


@pytest.mark.timeout(20)
def test_wait_fds_timeout_and_empty(threads, channel):
    rfd, _ = channel
    start = time.monotonic()
    assert native.wait_fds([rfd], 0.2) == []
    assert 0.19 <= time.monotonic() - start < 5
    assert native.wait_fds([], 0) == []
    assert native.wait_fds((rfd,), 0) == []


@pytest.mark.timeout(20)
def test_wait_fds_blocks_until_data(channel):
    rfd, wfd = channel
    threading.Timer(0.1, native.send_bytes, (wfd, b"x")).start()
    assert native.wait_fds([rfd], None) == [rfd]


def test_wait_fds_argument_errors(channel):
    rfd, _ = channel
    with pytest.raises(TypeError):
        native.wait_fds(5, 0)
    with pytest.raises(ValueError):
        native.wait_fds([-1], 0)
    with pytest.raises(TypeError):
        native.wait_fds(["x"], 0)


def test_wait_fds_reports_closed_fd():
    rfd, wfd = os.pipe()
    os.close(rfd)
    os.close(wfd)
    assert native.wait_fds([rfd], 0) == [rfd]


# --- big messages and partial I/O ------------------------------------------

@pytest.mark.timeout(120)
def test_64mb_message(channel):
    rfd, wfd = channel
    payload = os.urandom(1 << 20) * 64
    t, out = run_in_thread(native.send_bytes, wfd, payload)
    got = native.recv_bytes(rfd)
    t.join(60)
    assert "error" not in out
    assert len(got) == len(payload) and got == payload


@pytest.mark.timeout(120)
def test_64mb_message_into_buffer(channel):
    rfd, wfd = channel
    payload = os.urandom(1 << 20) * 64
    buf = bytearray(len(payload) + 16)
    t, _ = run_in_thread(native.send_bytes, wfd, payload)
    assert native.recv_bytes_into(rfd, buf, 16) == len(payload)
    t.join(60)
    assert buf[16:] == payload


@pytest.mark.timeout(60)
def test_payload_trickling_in_while_other_threads_run(channel):
    """Threaded readers first consume only bytes known to be waiting; a
    frame arriving in pieces must still be assembled (and not block with
    the GIL held: the writer thread needs it to send the rest)."""
    rfd, wfd = channel
    header = struct.pack("!i", 3000)

    def trickle():
        os.write(wfd, header[:2])
        time.sleep(0.05)
        os.write(wfd, header[2:] + b"a" * 1000)
        time.sleep(0.05)
        os.write(wfd, b"b" * 1000)
        time.sleep(0.05)
        os.write(wfd, b"c" * 1000)

    t, _ = run_in_thread(trickle)
    time.sleep(0.01)
    assert native.recv_bytes(rfd) == b"a" * 1000 + b"b" * 1000 + b"c" * 1000
    t.join(10)


@pytest.mark.timeout(60)
def test_ready_frames_are_read_in_threaded_process(channel):
    rfd, wfd = channel
    stop = threading.Event()
    spinner = threading.Thread(target=stop.wait)
    spinner.start()
    try:
        for size in (0, 5, 5000, 60000):
            t, _ = run_in_thread(native.send_bytes, wfd, b"r" * size)
            t.join(10)
            assert native.recv_bytes(rfd) == b"r" * size
    finally:
        stop.set()
        spinner.join()


@pytest.mark.timeout(60)
def test_nonblocking_fds_still_send_and_receive_whole_frames(channel):
    rfd, wfd = channel
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    payload = os.urandom(3 << 20)      # far more than the pipe holds
    t, out = run_in_thread(native.send_bytes, wfd, payload)
    time.sleep(0.05)
    assert native.recv_bytes(rfd) == payload
    t.join(30)
    assert "error" not in out


@pytest.mark.timeout(60)
def test_blocked_recv_releases_the_gil(channel):
    rfd, wfd = channel
    counter = [0]

    def spin():
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            counter[0] += 1
        native.send_bytes(wfd, b"done")

    t = threading.Thread(target=spin)
    t.start()
    assert native.recv_bytes(rfd) == b"done"
    t.join()
    assert counter[0] > 1000


@pytest.mark.timeout(60)
def test_concurrent_writers_frames_stay_whole():
    """Small frames go out in one writev, so processes sharing a pipe do
    not interleave their frames."""
    rfd, wfd = os.pipe()
    writers, per_writer = 4, 500
    pids = []
    for w in range(writers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(rfd)
                for i in range(per_writer):
                    native.send_bytes(wfd, bytes([w]) * (1 + i % 2000))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(wfd)
    seen = {w: 0 for w in range(writers)}
    try:
        while True:
            try:
                msg = native.recv_bytes(rfd)
            except EOFError:
                break
            assert msg == msg[:1] * len(msg)
            assert len(msg) == 1 + seen[msg[0]] % 2000
            seen[msg[0]] += 1
    finally:
        os.close(rfd)
        for pid in pids:
            os.waitpid(pid, 0)
    assert seen == {w: per_writer for w in range(writers)}


# --- signals --------------------------------------------------------------------

def _signal_main_after(delay, signum):
    main = threading.main_thread().ident
    timer = threading.Timer(delay, signal.pthread_kill, (main, signum))
    timer.start()
    return timer


@pytest.fixture
def usr1_counter():
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *a: seen.append(1))
    yield seen
    signal.signal(signal.SIGUSR1, old)


@pytest.mark.timeout(20)
def test_sigint_interrupts_blocked_recv(threads, channel):
    rfd, _ = channel
    timer = _signal_main_after(0.2, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        native.recv_bytes(rfd)
    timer.join()


@pytest.mark.timeout(20)
def test_sigint_interrupts_blocked_poll_and_wait(threads, channel):
    rfd, _ = channel
    for call in (lambda: native.poll(rfd, None),
                 lambda: native.poll(rfd, 30),
                 lambda: native.wait_fds([rfd], None)):
        timer = _signal_main_after(0.1, signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            call()
        timer.join()


@pytest.mark.timeout(20)
def test_quiet_signal_during_recv_resumes_mid_frame(channel, usr1_counter):
    rfd, wfd = channel

    def writer():
        os.write(wfd, struct.pack("!i", 6) + b"abc")
        time.sleep(0.2)
        os.write(wfd, b"def")

    t, _ = run_in_thread(writer)
    _signal_main_after(0.1, signal.SIGUSR1)
    assert native.recv_bytes(rfd) == b"abcdef"
    t.join()
    assert usr1_counter == [1]


@pytest.mark.timeout(30)
def test_quiet_signal_during_blocked_send_keeps_frame_whole(channel,
                                                           usr1_counter):
    rfd, wfd = channel
    payload = os.urandom(4 << 20)      # blocks until the reader drains
    timers = [_signal_main_after(d, signal.SIGUSR1) for d in (0.05, 0.1)]

    def reader():
        time.sleep(0.3)
        return native.recv_bytes(rfd)

    t, out = run_in_thread(reader)
    native.send_bytes(wfd, payload)
    t.join(20)
    for timer in timers:
        timer.join()
    assert out.get("value") == payload
    assert len(usr1_counter) >= 1     # two close signals may coalesce


@pytest.mark.timeout(20)
def test_sigint_interrupts_send_blocked_on_full_pipe(channel):
    rfd, wfd = channel
    timer = _signal_main_after(0.2, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        native.send_bytes(wfd, b"z" * (16 << 20))   # nobody reads
    timer.join()


@pytest.mark.timeout(20)
def test_quiet_signal_during_poll_keeps_remaining_timeout(channel,
                                                          usr1_counter):
    rfd, _ = channel
    for d in (0.1, 0.2):
        _signal_main_after(d, signal.SIGUSR1)
    start = time.monotonic()
    assert native.poll(rfd, 0.4) is False
    elapsed = time.monotonic() - start
    assert 0.39 <= elapsed < 1.5
    assert len(usr1_counter) == 2


# --- benchmark (python tests/test_native_connection.py) ----------------------

def _bench_pair(transport):
    if transport == "socket":
        a, b = socket.socketpair()
        a, b = a.detach(), b.detach()
        return (a, a), (b, b)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    return (r1, w2), (r2, w1)


def _bench_endpoints(impl, rfd, wfd):
    if impl == "raw":
        return (lambda: os.read(rfd, 65536)), (lambda d: os.write(wfd, d))
    if impl == "stdlib":
        # on dups: the Connection objects close what they own
        r = StdlibConnection(os.dup(rfd))
        w = r if wfd == rfd else StdlibConnection(os.dup(wfd))
        return r.recv_bytes, w.send_bytes
    recv, send = native.recv_bytes, native.send_bytes
    return (lambda: recv(rfd)), (lambda d: send(wfd, d))


def _cpu_seconds(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _bench_once(transport, impl, payload, count, mode):
    """Returns (wall seconds, CPU seconds of both processes).  CPU time is
    the steadier figure on a loaded machine: it is what our code costs."""
    (prd, pwr), (crd, cwr) = _bench_pair(transport)
    children_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    pid = os.fork()
    if pid == 0:
        recv, send = _bench_endpoints(impl, crd, cwr)
        if mode == "pingpong":
            for _ in range(count):
                send(recv())
        else:
            for _ in range(count):
                recv()
            send(b"done")
        os._exit(0)
    recv, send = _bench_endpoints(impl, prd, pwr)
    cpu = _cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if mode == "pingpong":
        for _ in range(count):
            send(payload)
            recv()
    else:
        for _ in range(count):
            send(payload)
        recv()
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu
    os.waitpid(pid, 0)
    cpu += _cpu_seconds(resource.RUSAGE_CHILDREN) - children_before
    for fd in {prd, pwr, crd, cwr}:
        close_quietly(fd)
    return elapsed, cpu


def bench(rounds=7):
    small, big = b"x" * 64, b"y" * (4 << 20)
    n_small, n_big = 20000, 60
    for transport in ("pipe", "socket"):
        rt, rt_cpu, tp, tp_cpu = {}, {}, {}, {}
        for _ in range(rounds):        # interleaved: load hits all alike
            for impl in ("raw", "stdlib", "native"):
                wall, cpu = _bench_once(transport, impl, small, n_small,
                                        "pingpong")
                rt[impl] = min(rt.get(impl, 1e9), wall / n_small * 1e6)
                rt_cpu[impl] = min(rt_cpu.get(impl, 1e9), cpu / n_small * 1e6)
                if impl != "raw":
                    wall, cpu = _bench_once(transport, impl, big, n_big,
                                            "stream")
                    tp[impl] = max(tp.get(impl, 0), n_big * 4 / wall)
                    tp_cpu[impl] = max(tp_cpu.get(impl, 0), n_big * 4 / cpu)
        print("%-6s 64 B round trip, wall: raw %.1f us, stdlib %.1f us, "
              "native %.1f us (stdlib/native %.2fx)"
              % (transport, rt["raw"], rt["stdlib"], rt["native"],
                 rt["stdlib"] / rt["native"]))
        print("%-6s 64 B round trip, CPU:  raw %.1f us, stdlib %.1f us, "
              "native %.1f us (stdlib/native %.2fx)"
              % (transport, rt_cpu["raw"], rt_cpu["stdlib"], rt_cpu["native"],
                 rt_cpu["stdlib"] / rt_cpu["native"]))
        print("%-6s 4 MB stream, wall: stdlib %.0f MB/s, native %.0f MB/s "
              "(%.2fx); per CPU second: %.0f vs %.0f MB (%.2fx)"
              % (transport, tp["stdlib"], tp["native"],
                 tp["native"] / tp["stdlib"], tp_cpu["stdlib"],
                 tp_cpu["native"], tp_cpu["native"] / tp_cpu["stdlib"]))


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
