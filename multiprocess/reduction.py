"""Pickling for multiprocess: C-pickle speed, dill's reach.

Everything that crosses a process boundary (connection messages, queue
items, pool tasks, the process object of a spawned child) goes through
``ForkingPickler``.  Its design, and why:

Plain data stays in C.
    A message made only of exact None, bool, int (64-bit), float, str,
    bytes, list, tuple and dict is written by ``_multiprocess.dumps_plain``
    (plainpickle.c) in one pass, about twice as fast as the C pickler; for
    anything else in it, that returns None and the whole message goes to
    ``ForkingPickler``, a subclass of the C pickler (``_pickle.Pickler``).
    The C pickler serializes those types, and bytearray, set and frozenset,
    without calling back into Python.  Every payload we write is an
    ordinary pickle, whatever it carries, and ``loads`` is
    ``_multiprocess.loads``: pickle.loads, except that a pickle of plain
    data (the same types; from us, the stdlib or anyone) is read by a small
    C machine (plainunpickle.c) that hands anything else, malformed data
    included, to pickle.loads untouched.

Everything else gets one cheap look.
    For any other object the C pickler first calls ``reducer_override``.
    Ours is one dictionary lookup keyed by the exact type, which serves both
    the reducers registered with ``register`` and the few types that need
    dill's help; for every other type it returns ``NotImplemented`` and the
    C pickler carries on as usual (``copyreg.dispatch_table``, read live,
    then ``__reduce_ex__``).  Because registered reducers are found there,
    no per-pickler copy of the dispatch table is made, and later edits of
    ``copyreg.dispatch_table`` take effect immediately.  (Module-level types
    are remembered in that table after their first sight, as needing
    nothing or, for classes with a custom metaclass, as classes.)  That
    Python call per non-plain object is the price of dill's reach: payloads
    made of many small class instances (datetimes, Decimals, user objects)
    take about 1.2x the standard library's time; plain data does not pay it.

When dill is used.
    A function or class that pickle can name -- found again under its
    ``__module__`` and ``__qualname__`` as the very same object, in a module
    other than ``__main__`` -- goes by reference, exactly as in the standard
    library.  A plain Python function that cannot be named that way (a
    lambda, a closure or other nested function, a function of ``__main__``)
    travels by value without dill: its marshalled code, names, defaults,
    attributes and closure, rebuilt by ``_make_function`` with the globals
    of the receiver's ``__main__`` or of its module imported there, as dill
    would by default; unusual ones (see ``_plain_function``) go to dill.
    Anything else that cannot be named is serialized by dill and embedded
    as a nested payload (a ``bytes`` object handed to ``_load_dill``):
    those unusual functions, classes of ``__main__`` (a script, ``python
    -c``, a script read from stdin, an interactive session) and other
    local classes, code objects, cells, properties, the
    ``__main__`` module.  Classes of ``__main__`` travel by value but are
    matched by name on arrival: if the receiver's ``__main__`` defines a
    class of that qualified name (a forked child, a spawned child that
    re-ran the script) that class is used, so ``isinstance`` keeps working,
    as with dill's own default (``dill.settings['ignore']`` False); in a
    fresh interpreter the transported copy is used.  A function or class of
    ``__main__`` that dill cannot copy (a thread lock among its class
    attributes or defaults, say) is sent by name only, which is what the
    standard library does with all of them.  As a last resort, if
    the C pickler fails on the whole object with PicklingError, TypeError
    or AttributeError, the whole object is handed to dill, wrapped the same
    way.

    ``dill.settings`` are honoured when dill has been imported (otherwise
    its defaults apply): ``byref`` sends nameable ``__main__`` functions and
    classes by reference, ``recurse`` is dill's own (only the globals a
    function uses travel with it), ``protocol`` is the default protocol,
    ``ignore`` turns the by-name matching of ``__main__`` classes off.

What it costs.
    dill is imported on first need, never before (about 25 ms): a process
    that only ever exchanges plain data or plain functions never imports
    it.  A function sent without dill costs about 25 us to dump and load
    (its code is marshalled once per code object, and unmarshalled once per
    receiver for up to 256 codes).  A dill payload is
    produced by a pure Python pickler, 0.1-0.3 ms for a small function or
    class and more for large closures; the payload of a function or class
    is then reused while the object is unchanged (see "reuse" below), so a
    __main__ class sent with every task costs that once.
    Identity is kept only inside one dill payload: an object reached both
    from a class and from the surrounding data arrives as two copies (a
    function sent without dill shares the message's memo).
    Thread locks are refused with a TypeError in the sender, also on the
    dill path (dill would copy them, silently producing an unrelated lock in
    the receiver).

Where it lives.
    _pickling.py decides (plain or not, the protocol, the dill fallback,
    what goes by name); _byvalue.py holds the per-type reducers and
    functions by value, _dillpayload.py dill's nested payloads; this module
    is ForkingPickler, the native Codec every sender uses (``CODEC``), the
    registry, and passing file descriptors.

dill 0.4 runs ``from multiprocessing.reduction import _reduce_socket`` when
it is imported.  multiprocess never imports the standard library's
multiprocessing, so while dill is being imported this module stands in for
``multiprocessing.reduction`` in ``sys.modules`` (an import of a dotted name
already present there does not touch its parent package), and is removed
again afterwards.
"""

import array
import copyreg
import functools
import io
import os
import pickle
import _socket
import sys
import types
from abc import ABCMeta

import _multiprocess as _native
from _multiprocess import dumps_plain as _dumps_plain
from _multiprocess import loads as _loads

from . import _pickling
from . import context
from ._byvalue import (_OWN_LOADERS, _code_bytes, _fill_function,
                       _first_sight, _make_function, _plain_function,
                       _rebuild_module)
from ._dillpayload import (_load_dill, _load_main_object, _reusable,
                           _whole_object_fallback)
from ._pickling import (_LATE_REDUCERS, _PLAIN, _extra_reducers,
                        _import_dill, _lookup, _overrides, _settings,
                        retry_with_dill)

__all__ = ['send_handle', 'recv_handle', 'ForkingPickler', 'register', 'dump',
           'DupFd', 'sendfds', 'recvfds']

# Asked of _socket: the socket module itself (2-3 ms) is imported only by
# the functions that use it, so a spawned child that never meets a socket
# does not pay for it.
HAVE_SEND_HANDLE = all((hasattr(_socket, 'CMSG_LEN'),
                        hasattr(_socket, 'SCM_RIGHTS'),
                        hasattr(_socket.socket, 'sendmsg')))

# Receipt of passed fds is never acknowledged on Linux (macOS needed it).
ACKNOWLEDGE = False

# (kept importable from here: tests look at these tables, the fork server
# warms dill up through _import_dill)
_private = (_code_bytes, _plain_function, _reusable, _import_dill, _settings)

# The loaders every payload names are named as this module's: a receiver
# unpickling one imports the whole reduction layer (dill needs it as its
# stand-in for multiprocessing.reduction), and payloads read the same as
# before the layer was split.
for _loader in (_load_dill, _load_main_object, _make_function,
                _fill_function, _rebuild_module):
    _loader.__module__ = __name__
del _loader


# ------------------------------------------------------------- the pickler

class ForkingPickler(pickle.Pickler):
    """The pickler behind every message between processes.

    A C pickler: plain data never leaves C; functions, classes and a few
    other kinds that pickle cannot send by name are serialized with dill
    (see the module docstring).  ``loads`` is ``pickle.loads`` with plain
    pickles read in C first.
    """

    _extra_reducers = _extra_reducers
    _copyreg_dispatch_table = copyreg.dispatch_table

    def __init__(self, file, protocol=None, *args, **kwargs):
        if protocol is None:
            protocol = _pickling.protocol()
        super().__init__(file, protocol, *args, **kwargs)
        self._file = file
        self._protocol = protocol

    def reducer_override(self, obj, _get=_overrides.get):
        # Called by the C pickler for every object that is not plain data:
        # keep the common path (nothing to do) to one lookup and one test.
        reduce = _get(type(obj))
        if reduce is _PLAIN:
            return NotImplemented
        if reduce is not None:
            return reduce(obj)
        return _first_sight(obj)

    def dump(self, obj):
        """Write the pickle of obj to the file given at construction.

        When the C pickler cannot handle obj, dill's payload is written
        instead, provided the file can be rewound to where this call began
        (otherwise the original error is raised).
        """
        file = self._file
        try:
            start = file.tell() if file.seekable() else None
        except (AttributeError, OSError, ValueError):
            start = None
        try:
            super().dump(obj)
        except Exception as exc:
            if start is None or not retry_with_dill(exc):
                raise
            data = _whole_object_fallback(obj, self._protocol, exc)
            file.seek(start)
            file.truncate()
            file.write(data)

    @classmethod
    def register(cls, type, reduce):
        """Pickle objects whose exact type is ``type`` with ``reduce(obj)``."""
        cls._extra_reducers[type] = reduce
        _overrides[type] = reduce

    @classmethod
    def dumps(cls, obj, protocol=None):
        """Return the pickle of obj as a bytes-like object."""
        if cls is ForkingPickler and protocol is None:
            # what Connection.send writes: plain data in C, a reused
            # pickler, the dill fallback (see CODEC below)
            return memoryview(CODEC.dumps(obj))
        if protocol is None:
            protocol = _pickling.protocol()
        if cls is ForkingPickler:
            data = _dumps_plain(obj, protocol)
            if data is not None:
                return memoryview(data)
        buf = io.BytesIO()
        pickler = cls(buf, protocol)
        # Our own dump() would only add the rewind bookkeeping; a subclass's
        # dump() is honoured.
        dump = cls.dump
        if dump is ForkingPickler.dump:
            dump = pickle.Pickler.dump
        try:
            dump(pickler, obj)
        except Exception as exc:
            if not retry_with_dill(exc):
                raise
            return _whole_object_fallback(
                obj, getattr(pickler, '_protocol', protocol), exc)
        return buf.getbuffer()

    loads = _loads


# ------------------------------------------------------------- the codec
#
# What every sender pickles with: Connection.send (endpoint.c), and
# Codec.dumps for ForkingPickler.dumps (queues, the pool, managers' own
# messages go through connections).  Its fields are the policy's:
#
# * new_pickler: building a ForkingPickler costs several times more than
#   pickling a small message with it, so the codec keeps idle ones (same
#   class, same reducers, only the construction is saved).  Each writes
#   into a plain list (one chunk for a small pickle, so nothing is copied;
#   big byte strings come as chunks of their own, written with one writev)
#   and is cleared after every message, keeping nothing of it alive;
# * dump, clear_memo: the C pickler's own (ForkingPickler.dump adds a
#   rewind-and-retry for file targets, which fallback replaces here);
# * fallback: after that pickler failed, the one more try (dill) or the
#   error the caller must see; nothing was written;
# * protocol: _pickling.protocol, asked per message.

class _Chunks(list):
    __slots__ = ()
    write = list.append


def _new_pickler(protocol):
    chunks = _Chunks()
    return ForkingPickler(chunks, protocol), chunks


def _fallback(obj, protocol, error):
    if not retry_with_dill(error):
        raise error
    return _whole_object_fallback(obj, protocol, error)


CODEC = _native.Codec(new_pickler=_new_pickler, dump=pickle.Pickler.dump,
                      clear_memo=pickle.Pickler.clear_memo,
                      fallback=_fallback, loads=_loads,
                      protocol=_pickling.protocol)

register = ForkingPickler.register


def dump(obj, file, protocol=None):
    """Pickle obj with ForkingPickler and write it to ``file``."""
    file.write(ForkingPickler.dumps(obj, protocol))


# ------------------------------------------------- file descriptor passing

def sendfds(sock, fds):
    """Send the file descriptors ``fds`` over the AF_UNIX socket ``sock``."""
    import socket
    packed = array.array('i', fds)
    # One byte of real data must accompany the ancillary data; it carries
    # the count (mod 256) so that the receiver can check nothing was lost.
    marker = bytes((len(packed) & 0xff,))
    sock.sendmsg([marker], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, packed)])


def recvfds(sock, size):
    """Receive at most ``size`` file descriptors sent by ``sendfds``."""
    import socket
    width = array.array('i').itemsize
    marker, ancillary, _flags, _addr = sock.recvmsg(
        1, socket.CMSG_SPACE(size * width))
    if not marker and not ancillary:
        raise EOFError
    received = array.array('i')
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % width
            received.frombytes(data[:usable])
    fds = received.tolist()
    if (len(ancillary) == 1 and fds and marker
            and len(fds) & 0xff == marker[0]):
        return fds
    for fd in fds:          # do not leak what did arrive
        try:
            os.close(fd)
        except OSError:
            pass
    raise RuntimeError('Invalid data received: expected file descriptors, '
                       'got %d ancillary item(s) and %d byte(s) of data'
                       % (len(ancillary), len(marker)))


def send_handle(conn, handle, destination_pid):
    """Send the file descriptor ``handle`` over the connection ``conn``."""
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM,
                       fileno=os.dup(conn.fileno())) as sock:
        sendfds(sock, [handle])


def recv_handle(conn):
    """Receive one file descriptor sent with ``send_handle``."""
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM,
                       fileno=os.dup(conn.fileno())) as sock:
        return recvfds(sock, 1)[0]


def DupFd(fd):
    """Return a picklable stand-in for ``fd`` whose ``detach()``, called in
    the receiving process, gives a file descriptor for the same file."""
    popen = context.get_spawning_popen()
    if popen is not None:
        # Pickled for a child being started: it inherits the fd directly.
        return popen.DupFd(popen.duplicate_for_child(fd))
    if not HAVE_SEND_HANDLE:
        raise ValueError('SCM_RIGHTS appears not to be available')
    # A process already running gets it from our fd sharer, a server above
    # this layer that the package plugs into the context.
    return context._fd_sharer(fd)


# ----------------------------------------- reducers registered by default

def _bind(func, owner):
    return types.MethodType(func, owner)


def _reduce_method(meth):
    # A bound method is its object plus the attribute to look up again --
    # unless that lookup would not give it back (a function stored under
    # another name, a lambda attribute): then the pair is rebound.
    owner, func = meth.__self__, meth.__func__
    name = getattr(func, '__name__', None)
    try:
        found = getattr(owner, name) == meth
    except Exception:
        found = False
    if found:
        return getattr, (owner, name)
    return _bind, (func, owner)


def _reduce_method_descriptor(meth):
    return getattr, (meth.__objclass__, meth.__name__)


def _rebuild_partial(func, args, keywords):
    return functools.partial(func, *args, **keywords)


def _reduce_partial(part):
    return _rebuild_partial, (part.func, part.args, dict(part.keywords or ()))


def _rebuild_socket(df, family, type, proto):
    import socket
    return socket.socket(family, type, proto, fileno=df.detach())


def _reduce_socket(sock):
    return _rebuild_socket, (DupFd(sock.fileno()), sock.family, sock.type,
                             sock.proto)


_DEFAULT_REDUCERS = (
    (types.MethodType, _reduce_method),
    (types.MethodDescriptorType, _reduce_method_descriptor),
    (types.WrapperDescriptorType, _reduce_method_descriptor),
    (functools.partial, _reduce_partial),
)

# Reducers for types of modules we do not import ourselves, keyed by
# (module, qualified name): registered now if the module is loaded, else by
# _first_sight when the first such object is pickled (it exists, so its
# module has been imported by then).
_LATE_REDUCERS[('socket', 'socket')] = _reduce_socket

_OWN_LOADERS.update((_bind, _rebuild_partial, _rebuild_socket))


def _register_defaults():
    for kind, reduce in _DEFAULT_REDUCERS:
        register(kind, reduce)
    for (modname, qualname), reduce in _LATE_REDUCERS.items():
        kind = _lookup(sys.modules.get(modname), qualname)
        if isinstance(kind, type):
            register(kind, reduce)


_register_defaults()


class AbstractReducer(metaclass=ABCMeta):
    """Base for a replacement of the reduction machinery; a context's
    ``reducer`` may be set to a module or an instance offering these names.
    Instantiating it (re)registers the default reducers."""

    ForkingPickler, register, dump = ForkingPickler, register, dump
    send_handle, recv_handle = send_handle, recv_handle
    sendfds, recvfds, DupFd = sendfds, recvfds, DupFd
    _reduce_method, _reduce_method_descriptor = (_reduce_method,
                                                 _reduce_method_descriptor)
    _rebuild_partial = _rebuild_partial
    _reduce_socket, _rebuild_socket = _reduce_socket, _rebuild_socket

    def __init__(self, *args):
        _register_defaults()


# Loaded: the package and context may now offer this module as plain
# attributes (see context._reduction_imported).
context._reduction_imported(sys.modules[__name__])
