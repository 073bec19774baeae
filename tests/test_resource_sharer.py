"""resource_sharer: handing fds to processes that are already running."""
import os
import pickle
import socket
import struct

import pytest

import multiprocess
from multiprocess import resource_sharer
from multiprocess.connection import Client
from multiprocess.exceptions import AuthenticationError

# Every test here may block on a pipe or socket: none may hang the run.
pytestmark = pytest.mark.timeout(60)


def open_fds():
    return set(int(n) for n in os.listdir('/proc/self/fd'))


@pytest.fixture(autouse=True)
def stopped_sharer():
    resource_sharer.stop(timeout=10)
    yield
    resource_sharer.stop(timeout=10)


def _write_through_ticket(ticket, data):
    fd = pickle.loads(ticket).detach()
    os.write(fd, data)
    os.close(fd)


@pytest.mark.timeout(60)
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_running_child_collects_fd(method):
    r, w = os.pipe()
    try:
        ticket = pickle.dumps(resource_sharer.DupFd(w))
        ctx = multiprocess.get_context(method)
        p = ctx.Process(target=_write_through_ticket, args=(ticket, b'hi'))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert os.read(r, 10) == b'hi'
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.timeout(30)
def test_ticket_is_good_once():
    r, w = os.pipe()
    try:
        dup = resource_sharer.DupFd(w)
        fd = dup.detach()
        assert fd != w
        os.write(fd, b'x')
        os.close(fd)
        assert os.read(r, 1) == b'x'
        with pytest.raises(EOFError):
            dup.detach()
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.timeout(30)
def test_dupfd_copy_survives_closing_the_original():
    r, w = os.pipe()
    dup = resource_sharer.DupFd(w)
    os.close(w)
    fd = dup.detach()
    os.write(fd, b'y')
    os.close(fd)
    assert os.read(r, 1) == b'y'
    os.close(r)


@pytest.mark.timeout(30)
def test_stop_closes_uncollected_fds_and_restarts_on_demand():
    r, w = os.pipe()
    try:
        baseline = open_fds()
        resource_sharer.DupFd(w)
        resource_sharer.DupFd(w)
        assert len(open_fds() - baseline) >= 3       # 2 dups + listener
        resource_sharer.stop(timeout=10)
        assert open_fds() <= baseline
        resource_sharer.stop(timeout=10)             # idempotent
        fd = resource_sharer.DupFd(w).detach()       # starts again
        os.close(fd)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.timeout(30)
def test_strangers_are_refused_and_service_continues():
    r, w = os.pipe()
    try:
        dup = resource_sharer.DupFd(w)
        address, key, secret = dup._id
        with pytest.raises(AuthenticationError):
            Client(address, authkey=b'guess')
        # garbage before authentication
        s = socket.socket(socket.AF_UNIX)
        s.connect(address)
        s.sendall(struct.pack('!i', 0x7fffffff))
        s.close()
        # an authenticated but malformed request
        with Client(address, authkey=secret) as c:
            c.send_bytes(b'short')
            with pytest.raises(EOFError):
                c.recv_bytes()
        fd = dup.detach()
        os.close(fd)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.timeout(30)
def test_forked_child_forgets_parent_sharer_but_can_use_its_tickets():
    r, w = os.pipe()
    try:
        parent_dup = resource_sharer.DupFd(w)
        parent_address = parent_dup._id[0]
        pid = os.fork()
        if pid == 0:                                 # child
            code = 1
            try:
                sharer = resource_sharer._resource_sharer
                assert sharer._listener is None and not sharer._fds
                fd = parent_dup.detach()             # served by the parent
                os.write(fd, b'p')
                os.close(fd)
                own = resource_sharer.DupFd(w)       # a sharer of its own
                assert own._id[0] != parent_address
                fd = own.detach()
                os.write(fd, b'c')
                os.close(fd)
                resource_sharer.stop(timeout=10)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.read(r, 2) == b'pc'
    finally:
        os.close(r)
        os.close(w)
