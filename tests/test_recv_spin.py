"""Spinning before a blocking receive (connection.c, `set_recv_spin`).

A receive that finds nothing waiting polls for a moment before it sleeps,
but only on an fd whose previous message arrived within that moment.  What
must hold: messages, end of file and signals behave exactly as without the
spin; an fd that goes quiet stops costing CPU; the setting comes from
MULTIPROCESS_RECV_SPIN_US and is off with a single usable CPU.
"""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import _multiprocess as native
import multiprocess
from multiprocess import connection


def test_setting_is_validated_and_returns_the_previous_one(spin):
    spin(0.0002)
    assert spin(0.0001) == pytest.approx(0.0002)
    for bad in (-1e-6, 2.0, float("nan")):
        with pytest.raises(ValueError):
            native.set_recv_spin(bad)
    with pytest.raises(TypeError):
        native.set_recv_spin("fast")
    assert native.set_recv_spin(0.0001) == pytest.approx(0.0001)


def _configured(env_value=None, one_cpu=False):
    code = textwrap.dedent("""
        import os, sys
        if %r:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import multiprocess.connection, _multiprocess
        print(_multiprocess.set_recv_spin(0))
    """ % one_cpu)
    env = dict(os.environ)
    env.pop("MULTIPROCESS_RECV_SPIN_US", None)
    if env_value is not None:
        env["MULTIPROCESS_RECV_SPIN_US"] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, timeout=60,
                         capture_output=True, text=True, check=True).stdout
    return float(out)


@pytest.mark.timeout(120)
def test_environment_sets_the_spin_and_one_cpu_turns_it_off():
    multi = len(os.sched_getaffinity(0)) > 1
    assert _configured() == (pytest.approx(50e-6) if multi else 0.0)
    assert _configured("0") == 0.0
    assert _configured("250") == (pytest.approx(250e-6) if multi else 0.0)
    assert _configured("not a number") == (pytest.approx(50e-6) if multi
                                           else 0.0)
    assert _configured("250", one_cpu=True) == 0.0


def _echo(conn, count):
    for _ in range(count):
        conn.send(conn.recv())
    conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seconds", [0.0, 50e-6, 0.01])
def test_a_conversation_is_unchanged_by_spinning(spin, seconds):
    spin(seconds)
    a, b = multiprocess.Pipe()
    ctx = multiprocess.get_context("fork")
    p = ctx.Process(target=_echo, args=(b, 300))
    p.start()
    b.close()
    for i in range(300):
        msg = {"i": i, "blob": bytes(i % 7) * i}
        a.send(msg)
        assert a.recv() == msg
    with pytest.raises(EOFError):
        a.recv()
    p.join(10)
    assert p.exitcode == 0


@pytest.mark.timeout(30)
def test_end_of_file_ends_a_spin_at_once(spin):
    spin(0.5)
    r, w = connection.Pipe(duplex=False)
    w.send_bytes(b"warm")             # a quick message: the fd is warm
    assert r.recv_bytes() == b"warm"
    threading.Timer(0.05, w.close).start()
    t = time.monotonic()
    with pytest.raises(EOFError):
        r.recv_bytes()
    assert time.monotonic() - t < 0.4


@pytest.mark.timeout(60)
@pytest.mark.parametrize("with_thread", [False, True])
def test_a_signal_during_a_spin_runs_its_handler(spin, with_thread):
    # A signal that lands while the receive polls interrupts no system
    # call: the handler must still run once the spin ends, not wait for the
    # next message (here: none ever comes).  SIGUSR1, not SIGALRM, which
    # pytest-timeout needs.  Another thread alive changes the read path.
    spin(0.3)
    r, w = connection.Pipe(duplex=False)
    w.send(1)
    assert r.recv() == 1

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    stop = threading.Event()
    idler = threading.Thread(target=stop.wait, daemon=True)
    if with_thread:
        idler.start()
    old = signal.signal(signal.SIGUSR1, handler)
    main = threading.get_ident()
    timer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGUSR1))
    try:
        timer.start()
        t = time.monotonic()
        with pytest.raises(Interrupted):
            r.recv()
        assert time.monotonic() - t < 5
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
        stop.set()
    w.send(2)                         # and the connection still works
    assert r.recv() == 2


def _cpu_while_receiving(r, w, gap, count):
    """CPU seconds this thread spends receiving `count` messages that a
    thread sends `gap` seconds apart."""
    def sender():
        for i in range(count):
            time.sleep(gap)
            w.send_bytes(b"x")
    t = threading.Thread(target=sender)
    t.start()
    cpu = time.thread_time()
    for _ in range(count):
        assert r.recv_bytes() == b"x"
    cpu = time.thread_time() - cpu
    t.join()
    return cpu


@pytest.mark.timeout(60)
def test_a_quiet_fd_stops_spinning(spin):
    # A spin of 50 ms against messages 200 ms apart: the first receive
    # spins in vain and marks the fd cold; the others sleep at once.
    # Without that, six receives would burn about 300 ms of CPU.
    spin(0.05)
    r, w = connection.Pipe(duplex=False)
    w.send_bytes(b"x")
    r.recv_bytes()
    cpu = _cpu_while_receiving(r, w, 0.2, 6)
    assert cpu < 0.15, cpu


@pytest.mark.timeout(60)
def test_no_spin_no_cpu(spin):
    spin(0.0)
    r, w = connection.Pipe(duplex=False)
    cpu = _cpu_while_receiving(r, w, 0.05, 6)
    assert cpu < 0.05, cpu
