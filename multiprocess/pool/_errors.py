"""How failures in a pool are told: the exceptions that carry a worker's
traceback or an unsendable value back, and the words for a lost worker.

Nothing here knows about pipes or engines; every other module of the
package may use it.
"""

import importlib
import signal

from ..exceptions import WorkerLostError


class _LazyModule:
    """A module imported on first use: `traceback` pulls in linecache,
    tokenize and textwrap (~2 ms), needed only once something failed."""

    __slots__ = ('_name', '_module')

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attr):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


traceback = _LazyModule('traceback')


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in a worker.

    Set as the ``__cause__`` of the exception re-raised in the caller, so
    the worker's traceback is printed along with the caller's; the text is
    in ``tb``.
    """

    tb = property(lambda self: self.args[0])

    def __str__(self):
        return self.args[0]


def _text_of(obj, how=repr):
    """``how(obj)``, or words naming obj's type when that raises: a value
    with a broken ``__str__``/``__repr__``, or nested too deep to print,
    must still be reported, never cost the report itself."""
    try:
        return how(obj)
    except Exception as why:
        return '<%s object; %s() failed: %s>' % (
            type(obj).__qualname__, how.__name__, type(why).__name__)


def _format_tb(exc):
    return ''.join(traceback.format_exception(type(exc), exc,
                                              exc.__traceback__))


def _with_remote_tb(exc, tb_text):
    """Give ``exc`` the worker's traceback text as its cause; returns it."""
    if not tb_text.startswith('\n"""'):
        tb_text = '\n"""\n%s"""' % tb_text
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc


# stdlib-compatible name: rebuild ``exc`` with ``tb`` (text) as its cause
rebuild_exc = _with_remote_tb


class ExceptionWithTraceback:
    """Pickles as ``exc`` with the traceback ``tb`` (a traceback object or
    text) attached on arrival -- for code driving ``worker()`` directly."""

    def __init__(self, exc, tb):
        text = tb if isinstance(tb, str) else ''.join(
            traceback.format_exception(type(exc), exc, tb))
        self._parts = (exc, text)

    def __reduce__(self):
        return _with_remote_tb, self._parts


class MaybeEncodingError(Exception):
    """A result or an exception could not cross the process boundary.

    ``exc`` is the repr of the pickling (or unpickling) error, ``value`` the
    repr of what was being sent.  The task's own outcome is lost; make the
    returned object picklable (or return something simpler) to fix it.
    """

    def __init__(self, exc, value):
        super().__init__(*(x if isinstance(x, str) else _text_of(x)
                           for x in (exc, value)))

    exc = property(lambda self: self.args[0])
    value = property(lambda self: self.args[1])

    def __str__(self):
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"


def _exit_description(exitcode):
    """Words for how a process ended, for WorkerLostError messages."""
    if exitcode is None:
        return 'ended in an unknown way'
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = 'signal %d' % -exitcode
        text = 'was killed by %s (signal %d)' % (name, -exitcode)
        if -exitcode == signal.SIGKILL:
            text += '; it may have run out of memory (the kernel OOM ' \
                    'killer sends SIGKILL)'
        return text
    return 'exited with code %d' % exitcode


def _lost_worker_error(pid, exitcode):
    return WorkerLostError(
        'worker process %s %s while running this task; the pool replaced '
        'it' % (pid, _exit_description(exitcode)), pid, exitcode)
