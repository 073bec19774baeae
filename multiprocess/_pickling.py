"""The pickling policy of multiprocess: the one place that decides how an
object crossing a process boundary is pickled.  Connections, queues,
managers and the pool all go through it (through the native Codec that
reduction.py builds from it, or ForkingPickler, which reads it too).

Plain or not.
    Exact None, bool, int (64-bit), float, str, bytes, and lists, tuples
    and dicts of them are plain data: plainpickle.c writes them without a
    pickler (PLAIN_TYPES are the scalars among them, for Python code that
    wants to know before asking).  Everything else goes to ForkingPickler.

The protocol.
    dill's setting, ``dill.settings['protocol']``, once dill has been
    imported (by us or by the program), else pickle.DEFAULT_PROTOCOL.  The
    settings dict is found once and then read on every use, so a later
    change of the knob is obeyed: ``protocol()``.

The dill fallback.
    When the C pickler fails on a whole object with one of RETRY_WITH_DILL
    (and the error was not raised by dill itself, see ``_no_retry``), the
    object is pickled once more, by dill, as a nested payload
    (``retry_with_dill``).  Nothing is ever pickled a third time.

What goes by value.
    A function or class found again by pickle under its module and
    qualified name, in a module other than MAIN_NAMES, goes by reference
    (``_named``); everything else travels by value (see _byvalue.py and
    _dillpayload.py).  Thread locks are refused (``_refuse``).  The table
    the pickler consults per type (``_overrides``) and the registered
    reducers (``_extra_reducers``) live here.

This module imports nothing of multiprocess: every other pickling module
builds on it.
"""

# A private module: its names are reached through the public modules,
# none through `import *` (CPython's suite checks every module has __all__).
__all__ = []

import pickle
import sys
import _thread

# The scalars plainpickle.c writes itself (lists, tuples and dicts of
# plain data are plain too).
PLAIN_TYPES = frozenset((type(None), bool, int, float, str, bytes))

# Module names whose functions and classes are not reachable by name in
# another process: the running script, and its re-run copy in a spawned child.
MAIN_NAMES = _MAIN_NAMES = frozenset(('__main__', '__mp_main__'))

# Errors from the C pickler after which the whole object is retried with dill.
RETRY_WITH_DILL = _RETRY_WITH_DILL = (pickle.PicklingError, TypeError,
                                      AttributeError)

# dill.settings as they stand before anybody changed them.
_DILL_DEFAULTS = {'protocol': pickle.DEFAULT_PROTOCOL, 'byref': False,
                  'recurse': False, 'ignore': False}

# Copying one of these to another process gives an unrelated, useless lock.
_REFUSED_TYPES = (_thread.LockType, _thread.RLock)

_NOTHING = object()

# type -> reducer(obj): what the pickler's reducer_override consults, for
# the types that need dill's help and those registered with register();
# _PLAIN marks a type known to need nothing from us.
_overrides = {}
_extra_reducers = {}             # only what was registered
_PLAIN = object()
# (module, qualified name) -> reducer, for types of modules we do not
# import ourselves; registered on first sight (reduction.py fills it).
_LATE_REDUCERS = {}


def _register(kind, reduce):
    _extra_reducers[kind] = reduce
    _overrides[kind] = reduce


# ---------------------------------------------------- dill's settings

_found_settings = None      # dill.settings, once dill has been imported


def _settings():
    """dill.settings (found once, then read live), or dill's defaults."""
    found = _found_settings
    if found is None:
        found = _find_settings()
    return found


def _find_settings():
    global _found_settings
    dill = sys.modules.get('dill')
    found = getattr(dill, 'settings', None) if dill is not None else None
    if found is None:
        # not imported, or half imported by another thread
        return _DILL_DEFAULTS
    _found_settings = found
    return found


def protocol(_default=pickle.DEFAULT_PROTOCOL):
    """The protocol to pickle with now."""
    found = _found_settings
    if found is None:
        found = _find_settings()
    return found.get('protocol', _default)


def retry_with_dill(error):
    """Whether an error of the C pickler sends the object to dill."""
    return (isinstance(error, RETRY_WITH_DILL)
            and not getattr(error, '_multiprocess_dill_failed', False))


def _import_dill():
    """Import dill on first need, without importing stdlib multiprocessing."""
    dill = sys.modules.get('dill')
    spec = getattr(dill, '__spec__', None)
    if dill is not None and not getattr(spec, '_initializing', False):
        return dill
    # Not imported yet, or being imported by another thread (the import
    # statement below then waits for it to finish).
    key = 'multiprocessing.reduction'
    # dill imports _reduce_socket from it: the public module has it (and
    # is loaded: dill is imported only for a payload it made or reads)
    me = sys.modules['multiprocess.reduction']
    before = sys.modules.get(key, _NOTHING)
    stand_in = before is _NOTHING or before is None
    if stand_in:
        sys.modules[key] = me
    try:
        import dill
    finally:
        # Only undo our own entry: another thread may have changed it since.
        if stand_in and sys.modules.get(key) is me:
            if before is _NOTHING:
                del sys.modules[key]
            else:
                sys.modules[key] = before
    return dill


def _main_is_transient():
    """True when a fresh interpreter cannot rebuild this process's __main__:
    ``python -c``, a script read from stdin, an interactive session (a
    spawned child re-runs a main script by path or module name, nothing
    else), or when this thread pickles for the workers of a cluster, which
    never run our main script.  Functions and classes of such a __main__
    carry the globals they use, as with dill's ``recurse``."""
    if getattr(_marks, 'remote', False):
        return True
    main = sys.modules.get('__main__')
    if main is None:
        return False
    if getattr(getattr(main, '__spec__', None), 'name', None):
        return False
    path = getattr(main, '__file__', None)
    return not path or (path.startswith('<') and path.endswith('>'))


def _no_retry(exc):
    # Marks an error raised by dill itself: retrying with dill is pointless.
    try:
        exc._multiprocess_dill_failed = True
    except Exception:
        pass
    return exc


def _refuse(obj):
    kind = type(obj)
    name = '%s.%s' % (kind.__module__, kind.__qualname__)
    raise _no_retry(TypeError(
        "cannot pickle %r object: a thread lock cannot be shared with another "
        "process (use a multiprocess Lock or RLock)" % name))


# Per thread, sets of object ids: under 'dilling' the objects dill is
# serializing right now (so that __main__ classes referring to each other
# do not nest forever), under 'trying' the __main__ globals whose
# picklability is being tried (see _main_globals_used).
_marks = _thread._local()


def _pickle_for_remote(flag=True):
    """Mark (or unmark) this thread as pickling for processes that never
    ran our main script and outlive it (cluster workers serving one caller
    after another).  Functions of __main__ then carry the globals they use
    in a namespace of their own on arrival, instead of filling gaps in the
    receiver's __main__, where a value sent earlier would win over ours."""
    _marks.remote = flag


def _pickling_for_remote():
    return getattr(_marks, 'remote', False)


def _marked(kind):
    """This thread's set of ids of the given kind."""
    ids = getattr(_marks, kind, None)
    if ids is None:
        ids = set()
        setattr(_marks, kind, ids)
    return ids


# --------------------------------------------------- found by name

def _lookup(owner, qualname):
    for part in qualname.split('.'):
        if owner is None or part == '<locals>':
            return None
        owner = getattr(owner, part, None)
    return owner


def _named(obj, may_import=True):
    """True when pickle's by-reference lookup gives back obj itself."""
    modname = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if not isinstance(modname, str) or not isinstance(qualname, str):
        return False
    module = sys.modules.get(modname)
    if module is None:
        if not may_import:
            return False
        try:
            __import__(modname)
        except Exception:
            return False
        module = sys.modules.get(modname)
    return _lookup(module, qualname) is obj
