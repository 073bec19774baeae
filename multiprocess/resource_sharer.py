"""Hand duplicated file descriptors to other processes on request.

When a connection (or any fd wrapper) is pickled while no child is being
spawned, say to travel through a queue to a process that already runs,
nobody can pass the fd along at start-up.  ``DupFd(fd)`` covers that case:
it duplicates the fd at once and registers the copy with this process's
sharer, and what gets pickled is only a ticket ``(address, key, secret)``.
Whoever unpickles the ticket calls ``detach()``, which connects to the
sharer, presents the key and receives the fd over the Unix socket
(SCM_RIGHTS, via ``reduction.send_handle``).  Each ticket is good once.

The sharer is one daemon thread per process, started on first use, serving
an abstract-namespace Unix socket (nothing appears in the file system).
Peers authenticate with a random per-sharer secret carried in the ticket,
so the fd goes only to a holder of the pickled ticket.

Fork safety: a forked child inherits the sharer's state but not its thread.
An ``os.register_at_fork`` hook makes the child forget it all (closing its
copies of the pending fds and of the listening socket), so the child starts
a sharer of its own if it needs one, while tickets it inherited still point
at, and are served by, the parent.
"""

__all__ = ['DupFd', 'stop']

import os
import signal
import socket
import struct
import sys
import threading
import time

from . import util
from .exceptions import AuthenticationError

# A request names the resource and the requesting pid; an empty request
# asks the serving thread to stop.
_REQUEST = struct.Struct('!QQ')
_BACKLOG = 32


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


class DupFd(object):
    """A picklable handle on a duplicate of ``fd`` that another process
    (or this one) can collect once with ``detach()``."""

    def __init__(self, fd):
        self._id = _resource_sharer.register_fd(os.dup(fd))

    def detach(self):
        """Collect the duplicated fd; only the first call can succeed."""
        return _resource_sharer.fetch(self._id)


class _ResourceSharer(object):
    """The per-process registry of fds waiting to be collected, and the
    thread serving them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._forget()

    def _forget(self):
        self._fds = {}            # key -> duplicated fd not yet collected
        self._next_key = 1
        self._listener = None
        self._thread = None
        self._address = None
        self._secret = None

    # -- owning side --------------------------------------------------------

    def register_fd(self, fd):
        """Take ownership of ``fd`` (closed once collected or at stop())
        and return the ticket that lets a peer collect it."""
        with self._lock:
            if self._listener is None:
                try:
                    self._start()
                except BaseException:
                    _close_quietly(fd)      # ours now, even on failure
                    raise
            key = self._next_key
            self._next_key += 1
            self._fds[key] = fd
            return (self._address, key, self._secret)

    def _start(self):
        from .connection import Listener
        self._secret = os.urandom(32)
        name = '\0multiprocess-fds-%d-%s' % (os.getpid(), os.urandom(8).hex())
        self._listener = Listener(name, 'AF_UNIX', backlog=_BACKLOG,
                                  authkey=self._secret)
        self._address = self._listener.address
        util.debug('starting listener and thread for sending handles')
        self._thread = threading.Thread(
            target=self._serve, args=(self._listener,),
            name='multiprocess-resource-sharer', daemon=True)
        self._thread.start()

    def _serve(self, listener):
        # Signals are for the main thread to handle; keep them away from
        # this one so a handler never runs here at an odd moment.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while self._listener is listener:
            try:
                conn = listener.accept()
            except (AuthenticationError, EOFError):
                continue          # a peer failed the handshake or hung up
            except OSError:
                # Shut down by stop() (the while test ends the loop), or a
                # passing shortage such as EMFILE: do not spin on it.
                time.sleep(0.01)
                continue
            try:
                with conn:
                    if not self._answer(conn):
                        return
            except (OSError, EOFError, struct.error):
                pass              # a malformed request or a vanished peer
            except Exception:
                if not sys.is_finalizing():
                    sys.excepthook(*sys.exc_info())

    def _answer(self, conn):
        # One request per connection.  Returns False when asked to stop.
        request = conn.recv_bytes(_REQUEST.size)
        if not request:
            return False
        key, pid = _REQUEST.unpack(request)
        fd = self._fds.pop(key, None)
        if fd is not None:
            # An unknown or already collected key just gets the connection
            # closed: the requester sees end of file.
            from . import reduction
            try:
                reduction.send_handle(conn, fd, pid)
            finally:
                _close_quietly(fd)
        return True

    def stop(self, timeout=None):
        """Stop serving, close every fd nobody collected, and forget the
        tickets handed out so far.  The next DupFd starts a new sharer."""
        with self._lock:
            listener, thread, fds = self._listener, self._thread, self._fds
            self._forget()
        if listener is None:
            return
        # Shutting the listening socket down wakes a blocked accept() at
        # once (Linux), and the loop sees it no longer serves self._listener.
        try:
            listener._listener._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        thread.join(timeout)
        if thread.is_alive():
            util.sub_warning('_ResourceSharer thread did not stop when asked')
        listener.close()
        for fd in fds.values():
            _close_quietly(fd)

    def _after_fork_in_child(self):
        # The serving thread did not survive the fork, and the lock may have
        # been held by a thread that did not either.
        self._lock = threading.Lock()
        listener, fds = self._listener, self._fds
        self._forget()
        for fd in fds.values():
            _close_quietly(fd)
        if listener is not None:
            listener.close()      # abstract address: nothing to unlink

    # -- collecting side ----------------------------------------------------

    @staticmethod
    def fetch(ident):
        """Connect to the sharer named in the ticket ``ident`` and receive
        the fd it holds (EOFError if it was already collected)."""
        from .connection import Client
        from . import reduction
        address, key, secret = ident
        with Client(address, authkey=secret) as conn:
            conn.send_bytes(_REQUEST.pack(key, os.getpid()))
            return reduction.recv_handle(conn)


_resource_sharer = _ResourceSharer()
stop = _resource_sharer.stop
os.register_at_fork(after_in_child=_resource_sharer._after_fork_in_child)
