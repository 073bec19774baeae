"""Large received payloads reuse the last one's buffer (connection.c,
MP_RECV_KEEP_MIN).

A payload of 128 KiB to 8 MiB is read into the bytes object that held the
previous one once nobody else holds it, so a stream of 1 MB messages does
not fault in fresh pages for each.  What must hold: a result somebody still
holds never changes, a reused one never carries a stale hash, and in the
steady state a receive faults in (almost) no pages.
"""
import os
import resource
import threading

import pytest

import _multiprocess as native
import multiprocess


def _send_all(fd, payloads):
    def run():
        for p in payloads:
            native.send_bytes(fd, p)
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.timeout(60)
def test_a_received_payload_somebody_holds_never_changes(pipe_fds):
    r, w = pipe_fds
    size = 1 << 20
    payloads = [bytes([i]) * size for i in range(6)]
    t = _send_all(w, payloads)
    held = [native.recv_bytes(r) for _ in range(3)]
    for i in range(3, 6):
        assert native.recv_bytes(r) == payloads[i]   # dropped at once
    t.join(30)
    assert held == payloads[:3]


@pytest.mark.timeout(60)
def test_a_reused_buffer_does_not_keep_a_stale_hash(pipe_fds):
    r, w = pipe_fds
    for size in (1 << 20, 300_000):
        first, second = os.urandom(size), os.urandom(size)
        t = _send_all(w, [first, second])
        got = native.recv_bytes(r)
        assert got == first
        table = {got: 1}              # caches the hash of `got`
        del table, got
        got = native.recv_bytes(r)
        t.join(30)
        assert got == second
        assert hash(got) == hash(bytes(bytearray(got)))
        assert {second: 2}[got] == 2


@pytest.mark.timeout(60)
def test_payloads_of_changing_sizes_arrive_whole(pipe_fds):
    r, w = pipe_fds
    sizes = [1 << 20, 200_000, 3 << 20, 1 << 20, (1 << 20) + 1, 1 << 20,
             (8 << 20) + 7, 150_000]
    payloads = [os.urandom(n) for n in sizes]
    t = _send_all(w, payloads)
    for p in payloads:
        assert native.recv_bytes(r) == p
    t.join(30)


def _faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _consume(conn, count, report):
    for _ in range(5):
        conn.recv()
    before = _faults()
    for _ in range(count):
        got = conn.recv()
        del got
    report.send((_faults() - before) / count)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["Pipe", "Queue"])
def test_a_stream_of_megabyte_messages_faults_in_no_fresh_pages(how):
    # A megabyte is 256 pages; without the reuse a consumer process faulted
    # in about twice that many per message (the receive buffer, then the
    # unpickled copy, as malloc handed back memory it had just returned).
    ctx = multiprocess.get_context("fork")
    item = b"m" * (1 << 20)
    count = 60
    if how == "Pipe":
        source, sink = ctx.Pipe()
    else:
        sink = source = ctx.Queue()
        source.send, sink.recv = source.put, sink.get
    report_r, report_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_consume, args=(sink, count, report_w))
    p.start()
    for _ in range(count + 5):
        source.send(item)
    assert report_r.poll(60)
    per_message = report_r.recv()
    p.join(30)
    assert p.exitcode == 0
    assert per_message < 64, per_message
