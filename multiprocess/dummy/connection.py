"""Connections between threads, built on ``queue.Queue``.

Same surface as ``multiprocess.connection`` (``Listener``, ``Client``,
``Pipe``); objects are passed as they are, never pickled.  A listener's
``address`` is its backlog queue: pass it to ``Client``.
"""

from queue import Queue

__all__ = ['Client', 'Listener', 'Pipe']

families = [None]


class Connection(object):
    """One end of a thread connection: reads one queue, writes the other."""

    def __init__(self, _in, _out):
        self._in, self._out = _in, _out
        self.send = self.send_bytes = _out.put
        self.recv = self.recv_bytes = _in.get

    def poll(self, timeout=0.0):
        """Whether something can be received, waiting up to ``timeout``."""
        incoming = self._in
        if incoming.qsize() > 0 or timeout <= 0.0:
            return incoming.qsize() > 0
        with incoming.not_empty:
            incoming.not_empty.wait(timeout)
        return incoming.qsize() > 0

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def Pipe(duplex=True):
    """Two connected ends (always duplex between threads)."""
    left_to_right, right_to_left = Queue(), Queue()
    return (Connection(left_to_right, right_to_left),
            Connection(right_to_left, left_to_right))


class Listener(object):
    """Accepts connections from ``Client(listener.address)``."""

    def __init__(self, address=None, family=None, backlog=1):
        self._backlog_queue = Queue(backlog)

    @property
    def address(self):
        return self._backlog_queue

    def accept(self):
        client_in, client_out = self._backlog_queue.get()
        return Connection(client_out, client_in)

    def close(self):
        self._backlog_queue = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def Client(address):
    """Connect to the listener whose ``address`` is given."""
    to_client, to_server = Queue(), Queue()
    address.put((to_client, to_server))
    return Connection(to_client, to_server)
