"""Connections and Pipe(): messages, errors, pickling, wait(), and talking to
the standard library's multiprocessing over the same pipe."""
import array
import inspect
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import multiprocess
from multiprocess import connection
from multiprocess.connection import Connection, Pipe, wait
from multiprocess.exceptions import BufferTooShort
from .conftest import START_METHODS

# Every test here may block on a pipe or socket: none may hang the run.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def duplex():
    a, b = Pipe()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def simplex():
    r, w = Pipe(duplex=False)
    yield r, w
    r.close()
    w.close()


# -- messages ---------------------------------------------------------------

@pytest.mark.timeout(30)
def test_objects_round_trip_both_ways(duplex):
    a, b = duplex
    for obj in (None, 1, 2.5, 'text', b'bytes', [1, (2, 3)], {'k': {1, 2}}):
        a.send(obj)
        assert b.recv() == obj
        b.send(obj)
        assert a.recv() == obj


@pytest.mark.timeout(30)
def test_bytes_round_trip_keeps_message_boundaries(duplex):
    a, b = duplex
    msgs = [b'', b'a', b'bc', b'x' * 70000, b'']
    for m in msgs:
        a.send_bytes(m)
    assert [b.recv_bytes() for _ in msgs] == msgs


@pytest.mark.timeout(60)
def test_big_message_through_a_thread(duplex):
    a, b = duplex
    big = os.urandom(1 << 20) * 16
    t = threading.Thread(target=a.send_bytes, args=(big,))
    t.start()
    assert b.recv_bytes() == big
    t.join()


@pytest.mark.timeout(30)
def test_simplex_pipe_directions(simplex):
    r, w = simplex
    assert (r.readable, r.writable, w.readable, w.writable) == \
        (True, False, False, True)
    w.send({'a': 1})
    assert r.recv() == {'a': 1}
    with pytest.raises(OSError, match='read-only'):
        r.send(1)
    with pytest.raises(OSError, match='read-only'):
        r.send_bytes(b'x')
    with pytest.raises(OSError, match='write-only'):
        w.recv()
    with pytest.raises(OSError, match='write-only'):
        w.recv_bytes()
    with pytest.raises(OSError, match='write-only'):
        w.poll()
    with pytest.raises(OSError, match='write-only'):
        w.recv_bytes_into(bytearray(4))


def test_lambda_and_closure_cross_the_pipe(duplex):
    a, b = duplex
    k = 7
    a.send(lambda x: x * k)
    assert b.recv()(6) == 42


@pytest.mark.timeout(30)
def test_sent_objects_are_not_kept_alive(duplex):
    import weakref
    a, b = duplex

    class Payload:
        pass
    thing = Payload()
    thing.data = b'x' * 10000       # fits in the socket buffer
    ref = weakref.ref(thing)
    a.send(thing)
    del thing
    assert ref() is None            # the reused pickler's memo let it go
    assert len(b.recv().data) == 10000


class _SendsWhilePickled:
    def __init__(self, conn):
        self.conn = conn

    def __reduce__(self):
        self.conn.send('nested')     # re-entrant send() during pickling
        return (str, ('outer',))


@pytest.mark.timeout(30)
def test_send_during_pickling_of_another_send():
    a, b = Pipe()
    c, d = Pipe()
    try:
        a.send([_SendsWhilePickled(c), 1])
        assert d.recv() == 'nested'
        assert b.recv() == ['outer', 1]
    finally:
        for conn in (a, b, c, d):
            conn.close()


@pytest.mark.timeout(60)
def test_threads_sending_at_once_keep_messages_whole():
    pipes = [Pipe() for _ in range(4)]

    def talk(conn, tag):
        for i in range(2000):
            conn.send((tag, i, 'x' * (i % 50)))

    threads = [threading.Thread(target=talk, args=(w, n))
               for n, (r, w) in enumerate(pipes)]
    for t in threads:
        t.start()
    for n, (r, w) in enumerate(pipes):
        for i in range(2000):
            assert r.recv() == (n, i, 'x' * (i % 50))
    for t in threads:
        t.join()
    for r, w in pipes:
        r.close()
        w.close()


@pytest.mark.timeout(30)
def test_dill_protocol_setting_is_honoured(duplex):
    import dill
    a, b = duplex
    old = dill.settings.get('protocol')
    try:
        dill.settings['protocol'] = 2
        a.send({'k': 1})
        assert b.recv_bytes()[:2] == b'\x80\x02'
        dill.settings['protocol'] = 5
        a.send({'k': 1})
        assert b.recv_bytes()[:2] == b'\x80\x05'
    finally:
        dill.settings['protocol'] = old


# -- send_bytes / recv_bytes arguments ---------------------------------------

def test_send_bytes_offset_and_size(duplex):
    a, b = duplex
    msg = b'abcdefghijklmnopqrstuvwxyz'
    a.send_bytes(msg, 5)
    assert b.recv_bytes() == msg[5:]
    a.send_bytes(msg, 7, 8)
    assert b.recv_bytes() == msg[7:15]
    a.send_bytes(msg, 26)
    assert b.recv_bytes() == b''
    a.send_bytes(msg, 26, 0)
    assert b.recv_bytes() == b''
    for args in ((27,), (22, 5), (26, 1), (-1,), (4, -1)):
        with pytest.raises(ValueError):
            a.send_bytes(msg, *args)
    assert not b.poll()          # nothing was sent by the failed calls


def test_send_bytes_offsets_count_bytes_not_items(duplex):
    a, b = duplex
    arr = array.array('i', range(6))
    a.send_bytes(arr)
    assert b.recv_bytes() == arr.tobytes()
    a.send_bytes(arr, arr.itemsize * 2, arr.itemsize * 3)
    assert b.recv_bytes() == arr[2:5].tobytes()
    a.send_bytes(memoryview(arr.tobytes()).cast('B', (2, 12)), 1)
    assert b.recv_bytes() == arr.tobytes()[1:]


def test_send_bytes_rejects_non_buffers(duplex):
    a, b = duplex
    with pytest.raises(TypeError):
        a.send_bytes('text')
    with pytest.raises(TypeError):
        a.send_bytes('text', 1)
    assert not b.poll()


def test_recv_bytes_negative_maxlength(duplex):
    a, b = duplex
    a.send_bytes(b'x')
    with pytest.raises(ValueError):
        b.recv_bytes(-1)
    assert b.recv_bytes() == b'x'        # the message is still there


def test_recv_bytes_too_long_disables_reading_on_duplex(duplex):
    a, b = duplex
    a.send_bytes(b'x' * 100)
    with pytest.raises(OSError, match='bad message length'):
        b.recv_bytes(10)
    assert not b.readable and b.writable and not b.closed
    with pytest.raises(OSError):
        b.recv_bytes()
    b.send(1)                            # still usable for sending
    assert a.recv() == 1


def test_recv_bytes_too_long_closes_simplex_reader(simplex):
    r, w = simplex
    w.send_bytes(b'x' * 100)
    with pytest.raises(OSError, match='bad message length'):
        r.recv_bytes(99)
    assert r.closed


def test_recv_bytes_exact_maxlength_is_fine(duplex):
    a, b = duplex
    a.send_bytes(b'x' * 10)
    assert b.recv_bytes(10) == b'x' * 10


def test_recv_bytes_into_with_offset(duplex):
    a, b = duplex
    arr = array.array('i', range(4))
    buf = array.array('i', [0] * 10)
    a.send_bytes(arr)
    assert b.recv_bytes_into(buf, 3 * buf.itemsize) == 4 * buf.itemsize
    assert list(buf) == [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]


def test_recv_bytes_into_too_small_carries_whole_message(duplex):
    a, b = duplex
    msg = b'hello world' * 10
    a.send_bytes(msg)
    with pytest.raises(BufferTooShort) as info:
        b.recv_bytes_into(bytearray(40))
    assert info.value.args == (msg,)
    assert isinstance(info.value, multiprocess.BufferTooShort)
    a.send_bytes(b'next')                # the stream is still in step
    assert b.recv_bytes() == b'next'


def test_recv_bytes_into_bad_offsets(duplex):
    a, b = duplex
    with pytest.raises(ValueError):
        b.recv_bytes_into(bytearray(4), -1)
    with pytest.raises(ValueError):
        b.recv_bytes_into(bytearray(4), 5)
    a.send_bytes(b'abcd')
    buf = bytearray(8)
    assert b.recv_bytes_into(buf, 4) == 4    # offset == free room is fine
    assert buf == b'\0\0\0\0abcd'


# -- failure modes ---------------------------------------------------------

def test_unpicklable_object_raises_in_sender_and_sends_nothing(duplex):
    a, b = duplex

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('refuses to be pickled')

    with pytest.raises(RuntimeError, match='refuses'):
        a.send(Unpicklable())
    assert not b.poll(0.1)
    a.send('next good object')
    assert b.recv() == 'next good object'


@pytest.mark.timeout(30)
def test_eof_when_peer_closed(duplex):
    a, b = duplex
    a.send('last')
    a.close()
    assert b.recv() == 'last'
    assert b.poll(5)                     # end of file counts as readable
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    with pytest.raises(EOFError):
        b.recv_bytes_into(bytearray(10))


@pytest.mark.timeout(30)
def test_eof_on_simplex_pipe(simplex):
    r, w = simplex
    w.close()
    with pytest.raises(EOFError):
        r.recv()


@pytest.mark.timeout(30)
def test_peer_closing_mid_message_is_oserror_not_eof():
    a, b = Pipe()
    os.write(a.fileno(), b'\0\0\0\x10half')      # header promises 16 bytes
    a.close()
    with pytest.raises(OSError):
        b.recv_bytes()
    b.close()


def test_long_form_header_is_understood():
    # Frames over 2 GiB announce their length as -1 then 8 bytes; any
    # frame may use that form, and the standard library reads it too.
    import multiprocessing.connection as std
    a, b = Pipe()
    try:
        frame = b'\xff\xff\xff\xff' + (5).to_bytes(8, 'big') + b'hello'
        os.write(a.fileno(), frame)
        assert b.recv_bytes() == b'hello'
        os.write(a.fileno(), frame)
        theirs = std.Connection(os.dup(b.fileno()))
        assert theirs.recv_bytes() == b'hello'
        theirs.close()
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_send_to_closed_peer_raises_broken_pipe(duplex):
    a, b = duplex
    b.close()
    with pytest.raises(OSError):
        for _ in range(100):
            a.send_bytes(b'x' * 65536)


def test_closed_handle_raises_oserror(duplex):
    a, b = duplex
    a.close()
    assert a.closed
    a.close()                            # twice is harmless
    for call in (lambda: a.send(1), lambda: a.send_bytes(b'x'), a.recv,
                 a.recv_bytes, lambda: a.recv_bytes_into(bytearray(1)),
                 a.poll, a.fileno):
        with pytest.raises(OSError, match='handle is closed'):
            call()


def test_context_manager_closes(duplex):
    a, b = duplex
    with a, b:
        a.send(1729)
        assert b.recv() == 1729
        assert not a.closed
    assert a.closed and b.closed
    with pytest.raises(OSError):
        a.recv()


def test_invalid_handles():
    with pytest.raises(ValueError):
        Connection(-1)
    with pytest.raises(ValueError):
        Connection(0, readable=False, writable=False)
    with pytest.raises(TypeError):
        Connection('3')
    conn = Connection(44977608)
    try:
        with pytest.raises(OSError):
            conn.poll()
    finally:
        conn._handle = None              # disown: nothing to close
    assert conn.closed


def test_fileno_is_the_fd():
    r, w = os.pipe()
    conn = Connection(r, writable=False)
    assert conn.fileno() == r
    os.write(w, b'\0\0\0\x02hi')
    assert conn.recv_bytes() == b'hi'
    conn.close()
    os.close(w)
    with pytest.raises(OSError):
        os.fstat(r)                      # close() closed the fd


# -- poll and wait ---------------------------------------------------------

@pytest.mark.timeout(30)
def test_poll_timeouts(duplex):
    a, b = duplex
    t = time.monotonic()
    assert a.poll() is False
    assert a.poll(-1) is False
    # neither waits: a poll that blocked would never return at all, so the
    # bound only has to rule out waiting, with room for a busy CI machine
    assert time.monotonic() - t < 5.0
    t = time.monotonic()
    assert a.poll(0.2) is False
    assert time.monotonic() - t >= 0.18
    b.send_bytes(b'')
    assert a.poll() is True
    assert a.poll(None) is True
    assert a.recv_bytes() == b''


@pytest.mark.timeout(30)
def test_poll_blocks_until_message(duplex):
    a, b = duplex
    threading.Timer(0.2, b.send, args=('late',)).start()
    assert a.poll(None)
    assert a.recv() == 'late'


@pytest.mark.timeout(30)
def test_wait_mixes_connections_sockets_and_fds():
    a, b = Pipe()
    s1, s2 = socket.socketpair()
    rfd, wfd = os.pipe()
    try:
        things = [a, s1, rfd]
        assert wait(things, 0.05) == []
        assert wait(things, -1) == []
        b.send(None)
        assert wait(things, 5) == [a]
        s2.send(b'x')
        os.write(wfd, b'y')
        assert wait(things, 5) == [a, s1, rfd]
        assert wait([rfd, rfd], 0) == [rfd, rfd]
    finally:
        for c in (a, b, s1, s2):
            c.close()
        os.close(rfd)
        os.close(wfd)


@pytest.mark.timeout(30)
def test_wait_sees_process_exit_through_sentinel():
    ctx = multiprocess.get_context('fork')
    p = ctx.Process(target=time.sleep, args=(0.3,))
    p.start()
    a, b = Pipe()
    try:
        t = time.monotonic()
        assert wait([a, p.sentinel], 20) == [p.sentinel]
        assert time.monotonic() - t < 10
    finally:
        p.join()
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_wait_rejects_negative_fds():
    with pytest.raises(ValueError):
        wait([-1], 0)


@pytest.mark.timeout(30)
def test_poll_survives_signals(duplex):
    a, b = duplex
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *args: got.append(1))
    try:
        threading.Timer(0.1, os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
        t = time.monotonic()
        assert a.poll(0.6) is False
        assert time.monotonic() - t >= 0.5
        assert got == [1]
    finally:
        signal.signal(signal.SIGUSR1, old)


# -- connections between processes -----------------------------------------

def _echo_upper(conn):
    for msg in iter(conn.recv, None):
        conn.send(msg.upper())
    conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', START_METHODS)
def test_connection_passed_to_child_at_start(method):
    ctx = multiprocess.get_context(method)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo_upper, args=(b,))
    p.start()
    b.close()
    a.send('hello')
    assert a.recv() == 'HELLO'
    a.send(None)
    p.join(30)
    assert p.exitcode == 0
    a.close()


def _receive_and_use_connection(carrier):
    conn = carrier.recv()
    conn.send(('via', os.getpid(), conn.readable, conn.writable))
    conn.close()
    carrier.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_connection_sent_to_running_child(method):
    # No child is being spawned when the connection is pickled, so the fd
    # goes through the resource sharer.
    ctx = multiprocess.get_context(method)
    carrier, carrier_child = ctx.Pipe()
    p = ctx.Process(target=_receive_and_use_connection, args=(carrier_child,))
    p.start()
    carrier_child.close()
    r, w = ctx.Pipe(duplex=False)
    carrier.send(w)
    w.close()
    assert r.recv() == ('via', p.pid, False, True)
    p.join(30)
    assert p.exitcode == 0
    r.close()
    carrier.close()


def test_pickling_outside_process_start_needs_forking_pickler():
    from multiprocess import reduction
    a, b = Pipe()
    try:
        data = reduction.ForkingPickler.dumps(a)
        copy = reduction.ForkingPickler.loads(data)
        assert copy.fileno() != a.fileno()
        copy.send('through the copy')
        assert b.recv() == 'through the copy'
        copy.close()
    finally:
        a.close()
        b.close()


# -- interoperability with the standard library ---------------------------

_STDLIB_PEER = textwrap.dedent('''
    import sys
    from multiprocessing.connection import Connection
    conn = Connection(int(sys.argv[1]))
    assert sys.modules.get('multiprocess') is None
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(('stdlib saw', obj))
    raw = conn.recv_bytes()
    conn.send_bytes(raw[::-1])
    conn.send_bytes(b'z' * (1 << 22))
    conn.close()
''')


@pytest.mark.timeout(60)
def test_stdlib_process_and_ours_share_a_pipe_both_ways():
    ours, theirs = Pipe()
    proc = subprocess.Popen([sys.executable, '-c', _STDLIB_PEER,
                             str(theirs.fileno())],
                            pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        for obj in (1, 'two', [3.0, {'four': (5,)}], b'six'):
            ours.send(obj)
            assert ours.recv() == ('stdlib saw', obj)
        ours.send(None)
        ours.send_bytes(b'abc' * 1000)
        assert ours.recv_bytes() == (b'abc' * 1000)[::-1]
        assert ours.recv_bytes() == b'z' * (1 << 22)
        with pytest.raises(EOFError):
            ours.recv()
    finally:
        ours.close()
        assert proc.wait(30) == 0


_STDLIB_CHILD_WITH_OUR_CHILD = textwrap.dedent('''
    import sys
    from multiprocessing.connection import Connection
    def main():
        ours = Connection(int(sys.argv[1]))
        ours.send({'from': 'stdlib'})
        assert ours.recv() == {'from': 'multiprocess'}
        ours.close()
    main()
''')


def _our_side(conn):
    assert conn.recv() == {'from': 'stdlib'}
    conn.send({'from': 'multiprocess'})
    conn.close()


@pytest.mark.timeout(60)
def test_stdlib_process_talks_to_multiprocess_process():
    ctx = multiprocess.get_context('fork')
    mine, stdlibs = Pipe()
    proc = subprocess.Popen([sys.executable, '-c',
                             _STDLIB_CHILD_WITH_OUR_CHILD,
                             str(stdlibs.fileno())],
                            pass_fds=[stdlibs.fileno()])
    stdlibs.close()
    p = ctx.Process(target=_our_side, args=(mine,))
    p.start()
    mine.close()
    p.join(30)
    assert p.exitcode == 0
    assert proc.wait(30) == 0


# -- module surface --------------------------------------------------------

def test_module_surface_matches_stdlib():
    # Compared with the running Python's module: 3.12 renamed the handshake
    # markers (CHALLENGE -> _CHALLENGE, ...) and added _create_response and
    # _verify_challenge, which CPython's own suite calls.
    import multiprocessing.connection as std
    names = ['Client', 'Listener', 'Pipe', 'wait', 'Connection',
             '_ConnectionBase', 'SocketListener', 'SocketClient',
             'address_type', 'arbitrary_address', '_validate_family',
             'default_family', 'families', 'BUFSIZE', 'MESSAGE_LENGTH',
             'CHALLENGE', 'WELCOME', 'FAILURE', '_CHALLENGE', '_WELCOME',
             '_FAILURE', '_create_response', '_verify_challenge',
             'deliver_challenge', 'answer_challenge', 'XmlListener',
             'XmlClient', 'ConnectionWrapper', 'rebuild_connection',
             'reduce_connection', 'CONNECTION_TIMEOUT']
    for name in names:
        if name.startswith('_'):        # private: we may have more
            assert hasattr(connection, name) or not hasattr(std, name), name
        else:
            assert hasattr(connection, name) == hasattr(std, name), name
    for name in ('MESSAGE_LENGTH', 'CHALLENGE', 'WELCOME', 'FAILURE',
                 '_CHALLENGE', '_WELCOME', '_FAILURE',
                 'BUFSIZE', 'default_family', 'families'):
        if hasattr(std, name):
            assert getattr(connection, name) == getattr(std, name), name
    for name in ('deliver_challenge', 'answer_challenge'):
        assert (list(inspect.signature(getattr(connection, name)).parameters)
                == list(inspect.signature(getattr(std, name)).parameters))
    assert set(connection.__all__) == set(std.__all__)
    assert issubclass(Connection, connection._ConnectionBase)


def test_address_type():
    assert connection.address_type(('localhost', 0)) == 'AF_INET'
    assert connection.address_type('/tmp/sock') == 'AF_UNIX'
    assert connection.address_type('\0abstract') == 'AF_UNIX'
    assert connection.address_type(b'\0abstract') == 'AF_UNIX'
    assert connection.address_type(r'\\.\pipe\x') == 'AF_PIPE'
    for bad in (b'/tmp/sock', 42, ['x'], None):
        with pytest.raises(ValueError):
            connection.address_type(bad)


def test_arbitrary_address():
    assert connection.arbitrary_address('AF_INET') == ('localhost', 0)
    a = connection.arbitrary_address('AF_UNIX')
    b = connection.arbitrary_address('AF_UNIX')
    assert a != b and os.path.isabs(a) and not os.path.exists(a)
    with pytest.raises(ValueError):
        connection.arbitrary_address('AF_PIPE')


def test_validate_family():
    connection._validate_family('AF_INET')
    connection._validate_family('AF_UNIX')
    for bad in ('AF_PIPE', 'AF_BOGUS'):
        with pytest.raises(ValueError):
            connection._validate_family(bad)



# -- the C send()/recv() (Endpoint) ------------------------------------------

def test_send_and_recv_are_the_native_ones():
    import _multiprocess
    assert Connection.send is _multiprocess.Endpoint.send
    assert Connection.recv is _multiprocess.Endpoint.recv
    assert issubclass(Connection, _multiprocess.Endpoint)


def test_fast_fds_follow_handle_and_direction(simplex):
    r, w = simplex
    assert (r._rfd, r._wfd) == (r.fileno(), -1)
    assert (w._rfd, w._wfd) == (-1, w.fileno())
    r.close()
    assert (r._rfd, r._wfd) == (-1, -1)


def test_wrong_direction_names_it(simplex):
    r, w = simplex
    with pytest.raises(OSError, match='read-only'):
        r.send(1)
    with pytest.raises(OSError, match='write-only'):
        w.recv()


def test_disowned_handle_stops_the_fast_path(duplex):
    # CPython's suite sets _handle = None to take a descriptor away.
    a, b = duplex
    fd = a.fileno()
    a._handle = None
    try:
        with pytest.raises(OSError, match='handle is closed'):
            a.send(1)
        with pytest.raises(OSError, match='handle is closed'):
            a.recv()
    finally:
        os.close(fd)


def test_uninitialised_connection_refuses_cleanly():
    conn = Connection.__new__(Connection)
    with pytest.raises(OSError, match='handle is closed'):
        conn.send(1)
    with pytest.raises(OSError, match='handle is closed'):
        conn.recv()


def test_codec_must_be_a_native_codec(duplex):
    a, _ = duplex
    with pytest.raises(TypeError, match='codec'):
        a._codec = (1, 2, 3)
    assert a._codec is connection._CODEC
    a._codec = None
    with pytest.raises(RuntimeError, match='not initialised'):
        a.send(1)


def test_big_multi_chunk_pickle_arrives_whole(duplex):
    # Big byte strings leave the pickler as separate chunks: one frame.
    a, b = duplex
    payload = [b'a' * 300000, bytearray(b'b' * 200000), 'tail']
    t = threading.Thread(target=a.send, args=(payload,))
    t.start()
    assert b.recv() == payload
    t.join()


def test_failed_write_keeps_sending_usable(duplex):
    a, b = duplex
    b.close()
    with pytest.raises(OSError):
        a.send({'x': 1})
    c, d = Pipe()
    try:
        c.send({'x': 2})                  # picklers went back to the pool
        assert d.recv() == {'x': 2}
    finally:
        c.close()
        d.close()


def test_keyboard_interrupt_while_pickling_propagates(duplex):
    a, b = duplex

    class Interrupts:
        def __reduce__(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        a.send(Interrupts())
    assert not b.poll(0.1)
    a.send('after')
    assert b.recv() == 'after'


def test_pickle_error_falls_back_to_dumps(duplex):
    # The reused pickler fails on a lambda in __main__-less context only if
    # reduction says so; whatever dumps() produces is what goes out.
    a, b = duplex
    f = (lambda x: x * 3)
    a.send(f)
    assert b.recv()(5) == 15


def test_unpickling_error_reaches_the_receiver(duplex):
    a, b = duplex
    a.send_bytes(b'not a pickle')
    with pytest.raises(pickle.UnpicklingError):
        b.recv()
    a.send('fine')
    assert b.recv() == 'fine'
