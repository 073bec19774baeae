"""The 'forkserver' start method's server.

A single-threaded server process, started once per program from a fresh
interpreter, forks a child for every Process started.  Children so start from
a clean, quiet state (no threads, no inherited fds of the parent) yet do not
pay for a fresh interpreter each.  Modules named with
``set_forkserver_preload`` (default: the main script) are imported once in
the server, so children get them for free.

Request, from any process of the program:

    client                                  server
      | connect to the server's AF_UNIX socket  |
      | send fds: data_r, status_w, alive_w,    |
      |           tracker_w, extra fds...       |
      |                                         |-- fork --> child: runs
      | <------- status pipe: child's pid ------|   spawn._main(data_r)
      | --- data pipe: preparation + process -->|
      | <------- status pipe: exit code --------|   (on SIGCHLD)

The server stops when it sees EOF on its "alive" pipe, i.e. once every
process holding the write end (the launcher and every child) has exited.
"""

import contextlib
import errno
import os
import select
import signal
import socket
import struct
import sys
import threading

from . import process
from . import resource_tracker
from . import spawn
from . import util
from .exceptions import AuthenticationError

__all__ = ['ensure_running', 'get_inherited_fds', 'connect_to_new_process',
           'set_forkserver_preload']

# Most fds a single request may carry (ours plus the caller's).
MAXFDS_TO_SEND = 256

# pids and exit codes travel as native signed 64-bit integers.
SIGNED_STRUCT = struct.Struct('q')

# fds a request always carries ahead of the caller's own.
_FIXED_FDS = 4

# From 3.14 on, as the stdlib does, a client proves it knows the server's
# key (and the server that it knows it too) before a request is served.
# The socket file is already reachable by our user only, so before 3.14
# requests go unauthenticated, as they did in the stdlib.
_AUTHENTICATE_CLIENTS = sys.version_info >= (3, 14)
_AUTHKEY_LEN = 32       # one atomic write to an empty pipe


class ForkServer(object):
    """Client side: starts the server and asks it for children."""

    def __init__(self):
        self._lock = threading.Lock()
        self._preload_modules = ['__main__']
        self._preload_on_error = 'ignore'
        # Extra fds of a request, in a process the server forked.
        self._inherited_fds = None
        self._forget_server()

    def _forget_server(self):
        # address: the server's AF_UNIX socket; alive_fd: our write end of
        # its alive pipe; pid and launcher_pid: the server and who started
        # it (a forked child inherits all four from its parent).
        for attr in ('_forkserver_address', '_forkserver_alive_fd',
                     '_forkserver_pid', '_launcher_pid', '_forkserver_authkey'):
            setattr(self, attr, None)

    def _stop(self):
        """Ask the server to exit and wait for it (used by tests)."""
        with self._lock:
            pid, address = self._forkserver_pid, self._forkserver_address
            if pid is None:
                return
            ours = self._launcher_pid == os.getpid()
            # EOF on the alive pipe is the server's signal to exit (once
            # every holder of the write end has closed it)
            os.close(self._forkserver_alive_fd)
            self._forget_server()
            if ours:
                os.waitpid(pid, 0)
                _remove_socket_file(address)

    def set_forkserver_preload(self, modules_names, *, on_error='ignore'):
        """Name the modules the server imports before serving requests,
        and what an ImportError doing so does (see _PRELOAD_ON_ERROR)."""
        names = list(modules_names)
        if any(type(name) is not str for name in names):
            raise TypeError('module_names must be a list of strings')
        if on_error not in _PRELOAD_ON_ERROR:
            raise ValueError('on_error must be one of %s, not %r'
                             % (', '.join(map(repr, _PRELOAD_ON_ERROR)),
                                on_error))
        self._preload_modules = names
        self._preload_on_error = on_error

    def get_inherited_fds(self):
        """The extra fds this process received from the server's client,
        or None when this process was not started by a fork server."""
        return self._inherited_fds

    def connect_to_new_process(self, fds):
        """Ask the server for a new child that inherits ``fds``.

        Returns ``(status_r, data_w)``: read the child's pid and later its
        exit code from ``status_r``; write the pickled job to ``data_w``.
        """
        self.ensure_running()
        if len(fds) + _FIXED_FDS >= MAXFDS_TO_SEND:
            raise ValueError('too many fds')
        from . import reduction
        status_r, status_w = os.pipe()
        data_r, data_w = os.pipe()
        handed_over = [data_r, status_w, self._forkserver_alive_fd,
                       resource_tracker.getfd()] + list(fds)
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(self._forkserver_address)
                if self._forkserver_authkey is not None:
                    _authenticate(client, self._forkserver_authkey,
                                  client_side=True)
                reduction.sendfds(client, handed_over)
        except BaseException:
            os.close(status_r)
            os.close(data_w)
            raise
        finally:
            # the server holds its own copies now
            os.close(data_r)
            os.close(status_w)
        return status_r, data_w

    def ensure_running(self):
        """Start the server unless this process already has a live one.

        Callable from any process.  A server that died is replaced.
        """
        with self._lock:
            resource_tracker.ensure_running()
            if self._forkserver_pid is not None:
                if self._launcher_pid != os.getpid():
                    # Inherited through fork: our parent's server, kept
                    # alive by the alive fd we inherited with it.
                    return
                reaped, _ = os.waitpid(self._forkserver_pid, os.WNOHANG)
                if not reaped:
                    return
                # it died: start another one
                os.close(self._forkserver_alive_fd)
                _remove_socket_file(self._forkserver_address)
                self._forget_server()
            self._launch()

    def _launch(self):
        settings = {}
        if self._preload_on_error != 'ignore':
            settings['on_error'] = self._preload_on_error
        if self._preload_modules:
            # What the server needs to import the modules the way we would.
            prep = spawn.get_preparation_data('ignore')
            settings['sys_path'] = prep['sys_path']
            if 'init_main_from_path' in prep:
                settings['main_path'] = prep['init_main_from_path']
        # A file in our private (0o700) temp dir, itself 0o600: only our
        # user may ask the server for a fork.  (An abstract socket would
        # let any local user connect.)
        address = os.path.join(util.get_temp_dir(),
                               'forkserver-%s' % os.urandom(8).hex())
        listener = _listening_socket(address)
        with listener:
            # Every client holds alive_w: when all are gone the server
            # reads EOF on alive_r and exits.
            alive_r, alive_w = os.pipe()
            keep = [listener.fileno(), alive_r]
            authkey = key_r = None
            if _AUTHENTICATE_CLIENTS:
                # handed over through a pipe: a command line is public
                authkey = os.urandom(_AUTHKEY_LEN)
                key_r, key_w = os.pipe()
                try:
                    os.write(key_w, authkey)
                finally:
                    os.close(key_w)
                settings['authkey_r'] = key_r
                keep.append(key_r)
            program = 'from %s import main; main(%d, %d, %r, **%r)' % (
                __name__, listener.fileno(), alive_r, self._preload_modules,
                settings)
            try:
                pid = spawn._run_helper(program, keep)
            except BaseException:
                util.close_fds(alive_r, alive_w)
                raise
            finally:
                if key_r is not None:
                    os.close(key_r)
            os.close(alive_r)
        self._forkserver_address = address
        self._forkserver_alive_fd = alive_w
        self._forkserver_pid = pid
        self._launcher_pid = os.getpid()
        self._forkserver_authkey = authkey


def _authenticate(sock, authkey, client_side):
    """Both ends of a request prove they know ``authkey`` (the client
    answers first); AuthenticationError if either does not."""
    from . import connection
    # a Connection over a duplicate, so that closing it leaves ``sock`` open
    with connection.Connection(os.dup(sock.fileno())) as conn:
        if client_side:
            connection.answer_challenge(conn, authkey)
            connection.deliver_challenge(conn, authkey)
        else:
            connection.deliver_challenge(conn, authkey)
            connection.answer_challenge(conn, authkey)


def _listening_socket(address):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)    # only our user may ask for forks
        sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_socket_file(address):
    if address and not util.is_abstract_socket_namespace(address):
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------
# the server process

# What set_forkserver_preload(on_error=) may ask of a failed preload:
#   'ignore'  carry on silently (every version's default);
#   'warn'    carry on after an ImportWarning on the server's stderr;
#   'fail'    let the error end the server, so that the failure shows
#             instead of children quietly importing the module themselves.
_PRELOAD_ON_ERROR = ('ignore', 'warn', 'fail')


def _preload_failed(what, exc, on_error):
    if on_error == 'fail':
        if hasattr(exc, 'add_note'):    # 3.11+
            exc.add_note('(while the forkserver preloaded %s)' % what)
        raise exc
    if on_error == 'warn':
        import warnings
        # shown even where warnings are ignored or turned into errors: the
        # server must go on serving
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.warn('forkserver: failed to preload %s: %s: %s'
                          % (what, type(exc).__name__, exc), ImportWarning)


def _preload(modules, main_path, on_error='ignore'):
    if '__main__' in modules and main_path is not None:
        me = process.current_process()
        # Marked as bootstrapping: a main script that starts processes at
        # import time raises instead of forking off children from here.
        me._inheriting = True
        try:
            spawn.import_main_path(main_path)
        except (Exception, SystemExit) as exc:
            # By default children re-run the script themselves and report
            # the error where the user sees it; the server survives it.
            _preload_failed('the main module', exc, on_error)
        finally:
            del me._inheriting
    for name in modules:
        try:
            __import__(name)
        except ImportError as exc:
            _preload_failed('module %r' % name, exc, on_error)


# Modules children commonly need, imported by the server once it is idle so
# that every child inherits them instead of importing them itself.
_WARM_MODULES = ('connection', 'synchronize', 'queues')


def _warm_up():
    """Import, while idle, what children would otherwise each import.

    Above all dill: a child whose target is a lambda or a function of
    ``__main__`` needs it to unpickle its job, and importing it costs tens
    of milliseconds per child; inherited from the server it costs nothing.
    A request arriving meanwhile waits in the listen backlog, once.
    """
    import importlib
    try:
        from . import reduction
        load_dill = getattr(reduction, '_import_dill', None)
        if load_dill is not None:
            load_dill()
    except Exception:
        pass
    package = __name__.rpartition('.')[0]
    for name in _WARM_MODULES:
        try:
            importlib.import_module('%s.%s' % (package, name))
        except Exception:
            pass


def _noop_handler(*args):
    # SIGCHLD must have a handler (not SIG_IGN, not SIG_DFL) for the wakeup
    # fd to be written; the real work happens in the loop.
    pass


class _Server(object):
    """The server's event loop, one small step per kind of event."""

    def __init__(self, listener, alive_r):
        self.listener = listener
        self.alive_r = alive_r
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.status_fds = {}        # child pid -> client's status pipe
        self.saved_handlers = {}

    def install_signals(self):
        for signum, handler in ((signal.SIGCHLD, _noop_handler),
                                (signal.SIGINT, signal.SIG_IGN)):
            self.saved_handlers[signum] = signal.signal(signum, handler)
        # Writing to a pipe from a Python-level handler would race with the
        # loop; the C-level wakeup fd does not.
        signal.set_wakeup_fd(self.wake_w)

    def run(self):
        self.install_signals()
        poller = select.poll()
        for fd in (self.listener.fileno(), self.alive_r, self.wake_r):
            poller.register(fd, select.POLLIN)
        warm = False
        while True:
            # Until warmed up, look without blocking: the first idle moment
            # goes to _warm_up() instead of waiting.
            ready = {fd for fd, _ in poller.poll(None if warm else 0)}
            if not ready:
                _warm_up()
                warm = True
                continue
            if self.alive_r in ready:
                # every client is gone: nobody can ask for children anymore
                if os.read(self.alive_r, 1) != b'':
                    raise RuntimeError('unexpected data on the alive pipe')
                return
            if self.wake_r in ready:
                self.reap_children()
            if self.listener.fileno() in ready:
                try:
                    self.serve_request()
                except OSError as exc:
                    if exc.errno != errno.ECONNABORTED:
                        raise

    def drain_wakeups(self):
        # The bytes themselves (signal numbers) do not matter.
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    @staticmethod
    def exited_children():
        """Yield (pid, exit code) of every child that exited, reaping it."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break       # no children at all
            if not pid:
                break       # none exited since
            yield pid, os.waitstatus_to_exitcode(status)

    def reap_children(self):
        self.drain_wakeups()
        for pid, exitcode in self.exited_children():
            status_w = self.status_fds.pop(pid, None)
            if status_w is None:
                continue        # not one of ours: nobody to tell
            with contextlib.suppress(BrokenPipeError):  # client went away
                write_signed(status_w, exitcode)
            os.close(status_w)

    def serve_request(self):
        from . import reduction
        conn, _ = self.listener.accept()
        with conn:
            authkey = _forkserver._forkserver_authkey
            if authkey is not None:
                try:
                    _authenticate(conn, authkey, client_side=False)
                except (AuthenticationError, EOFError, OSError):
                    # not one of ours, or gone: no child for it
                    return
            fds = reduction.recvfds(conn, MAXFDS_TO_SEND + 1)
        if len(fds) > MAXFDS_TO_SEND:
            for fd in fds:
                os.close(fd)
            raise RuntimeError('Too many ({0:n}) fds to send'.format(len(fds)))
        data_r, status_w = fds[0], fds[1]
        pid = os.fork()
        if pid == 0:
            self.become_child(data_r, status_w, fds[2:])
        try:
            write_signed(status_w, pid)
        except BrokenPipeError:
            pass
        self.status_fds[pid] = status_w
        os.close(data_r)
        for fd in fds[2:]:
            os.close(fd)

    def become_child(self, data_r, status_w, inherited):
        exitcode = 1
        try:
            self.listener.close()
            signal.set_wakeup_fd(-1)
            for signum, handler in self.saved_handlers.items():
                signal.signal(signum, handler)
            unused = [self.alive_r, self.wake_r, self.wake_w, status_w]
            unused.extend(self.status_fds.values())
            for fd in unused:
                os.close(fd)
            exitcode = _serve_one(data_r, inherited)
        except SystemExit as exc:
            # Raised while preparing (a main script calling sys.exit() at
            # import): report it the way the interpreter would.
            exitcode = _exit_status(exc.code)
        except Exception:
            sys.excepthook(*sys.exc_info())
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(exitcode)


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _serve_one(data_r, inherited):
    """Run in a freshly forked child: adopt the inherited fds, run the job."""
    alive_w, tracker_w = inherited[0], inherited[1]
    _forkserver._forkserver_alive_fd = alive_w
    _forkserver._inherited_fds = list(inherited[2:])
    resource_tracker._resource_tracker._fd = tracker_w
    # the client keeps the data pipe's write end while it lives
    parent_sentinel = os.dup(data_r)
    return util._run_forked_job(lambda: spawn._main(data_r, parent_sentinel))


def main(listener_fd, alive_r, preload, main_path=None, sys_path=None,
         on_error='ignore', authkey_r=None):
    """Run the fork server (the body of its ``python -c`` command)."""
    if authkey_r is not None:
        with open(authkey_r, 'rb') as source:
            key = source.read()
        if len(key) != _AUTHKEY_LEN:
            raise RuntimeError('forkserver: incomplete authentication key')
        # children forked from here connect back with it too
        _forkserver._forkserver_authkey = key
    if sys_path is not None:
        sys.path[:] = sys_path
    if preload:
        _preload(preload, main_path, on_error)
    util._close_stdin()
    with socket.socket(socket.AF_UNIX, fileno=listener_fd) as listener:
        _forkserver._forkserver_address = listener.getsockname()
        _Server(listener, alive_r).run()


# ---------------------------------------------------------------------------
# signed integers on the status pipe

def read_signed(fd):
    """Read one SIGNED_STRUCT integer from ``fd`` (EOFError if cut short)."""
    size = SIGNED_STRUCT.size
    raw = os.read(fd, size)
    # write_signed() writes atomically, so this loop is a formality.
    while 0 < len(raw) < size:
        more = os.read(fd, size - len(raw))
        if not more:
            break
        raw += more
    if len(raw) != size:
        raise EOFError('unexpected EOF')
    (value,) = SIGNED_STRUCT.unpack(raw)
    return value


def write_signed(fd, n):
    """Write ``n`` as one SIGNED_STRUCT integer to ``fd``."""
    data = SIGNED_STRUCT.pack(n)
    # Far below PIPE_BUF: a pipe write of it is all or nothing.
    if os.write(fd, data) != len(data):
        raise OSError('short write on a forkserver status pipe')


_forkserver = ForkServer()


def _fresh_lock_in_child():
    # A thread of the parent may have held the lock at fork time.
    _forkserver._lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)
# The module-level API is the single client object's.
(ensure_running, get_inherited_fds, connect_to_new_process,
 set_forkserver_preload) = (_forkserver.ensure_running,
                            _forkserver.get_inherited_fds,
                            _forkserver.connect_to_new_process,
                            _forkserver.set_forkserver_preload)
