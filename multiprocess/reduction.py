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
import marshal
import operator
import os
import pickle
import _socket
import sys
import types
import weakref
import _thread
from abc import ABCMeta
from _multiprocess import dumps_plain as _dumps_plain
from _multiprocess import loads as _loads

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

# Module names whose functions and classes are not reachable by name in
# another process: the running script, and its re-run copy in a spawned child.
_MAIN_NAMES = frozenset(('__main__', '__mp_main__'))

# Errors from the C pickler after which the whole object is retried with dill.
_RETRY_WITH_DILL = (pickle.PicklingError, TypeError, AttributeError)

# dill.settings as they stand before anybody changed them.
_DILL_DEFAULTS = {'protocol': pickle.DEFAULT_PROTOCOL, 'byref': False,
                  'recurse': False, 'ignore': False}

# Copying one of these to another process gives an unrelated, useless lock.
_REFUSED_TYPES = (_thread.LockType, _thread.RLock)

_NOTHING = object()


# ---------------------------------------------------------------- dill access

def _settings():
    dill = sys.modules.get('dill')
    found = getattr(dill, 'settings', None) if dill is not None else None
    return found if found is not None else _DILL_DEFAULTS


def _import_dill():
    """Import dill on first need, without importing stdlib multiprocessing."""
    dill = sys.modules.get('dill')
    spec = getattr(dill, '__spec__', None)
    if dill is not None and not getattr(spec, '_initializing', False):
        return dill
    # Not imported yet, or being imported by another thread (the import
    # statement below then waits for it to finish).
    key = 'multiprocessing.reduction'
    me = sys.modules[__name__]
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
    else).  Functions and classes of such a __main__ carry the globals they
    use, as with dill's ``recurse``."""
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


def _marked(kind):
    """This thread's set of ids of the given kind."""
    ids = getattr(_marks, kind, None)
    if ids is None:
        ids = set()
        setattr(_marks, kind, ids)
    return ids


def _dill_blob(obj, protocol=None):
    """Serialize obj with dill into bytes (the nested payload)."""
    dill = _import_dill()
    if protocol is None:
        protocol = dill.settings.get('protocol', pickle.DEFAULT_PROTOCOL)
    buf = io.BytesIO()
    if _main_is_transient():
        pickler = dill.Pickler(buf, protocol, recurse=True)
    else:
        pickler = dill.Pickler(buf, protocol)
    # An instance attribute: dill's pickler is the Python one, which looks
    # it up per object.  It keeps our registered reducers, our refusals and
    # the by-name matching of __main__ classes valid inside dill payloads.
    pickler.reducer_override = _DillHooks(obj, protocol).reducer_override
    busy = _marked('dilling')
    busy.add(id(obj))
    try:
        pickler.dump(obj)
    except Exception as exc:
        raise _no_retry(exc)
    finally:
        busy.discard(id(obj))
    return buf.getvalue()


# ------------------------------------------ reuse of function/class payloads
#
# dill needs 0.1-0.3 ms for a small function or class, which a pool task or
# a queue item of a __main__ class would pay on every message.  The payload
# of a function or class is therefore kept (weakly keyed by the object) and
# reused while a cheap snapshot of what dill serialized is unchanged: the
# code, names and defaults of a function and the contents of its closure
# cells; the namespace entries and bases of a module-level class (__main__
# included), compared by identity.  Functions whose defaults or cells hold
# anything but immutable scalars, functions with attributes, classes made on
# the fly, and everything under dill's ``recurse`` setting (globals travel
# by value then) are never reused.  Not noticed: in-place changes to a
# mutable class attribute after the class was first sent; a receiver whose
# __main__ defines the class uses its own anyway.

_SCALARS = frozenset((int, float, complex, str, bytes, bool, type(None)))
_reusable = {}   # id(obj) -> (weakref to obj, settings key, snapshot, blob)


def _forgetter(table, key):
    """Weakref callback dropping table[key] if it still holds that ref
    (ids are reused: a newer entry under the same key must stay)."""
    def forget(ref):
        kept = table.get(key)
        if kept is not None and kept[0] is ref:
            del table[key]
    return forget


_ITSELF = object()   # stands for a function inside its own closure


def _snapshot(obj):
    """A flat tuple to compare by identity, or None if not reusable.

    The snapshot is held strongly, so it must not reach obj itself: a class
    namespace does (its ``__dict__`` descriptor, methods using super()),
    hence only module-level classes, which live on anyway, are reused."""
    if isinstance(obj, type):
        if not _named(obj, may_import=False):
            return None
        space = vars(obj)
        return (obj.__name__, obj.__qualname__, obj.__bases__, len(space),
                *space, *space.values())
    if type(obj) is not types.FunctionType or obj.__dict__:
        return None
    cells = ()
    if obj.__closure__:
        try:
            cells = tuple(_ITSELF if c.cell_contents is obj
                          else c.cell_contents for c in obj.__closure__)
        except ValueError:          # an empty cell
            return None
    kw = obj.__kwdefaults__ or {}
    notes = obj.__annotations__
    for value in (*(obj.__defaults__ or ()), *kw.values(), *cells,
                  *notes.values()):
        if type(value) not in _SCALARS and value is not _ITSELF:
            if not (isinstance(value, type) and _named(value, False)):
                return None
    return (obj.__code__, obj.__name__, obj.__qualname__, obj.__module__,
            obj.__doc__, obj.__defaults__, len(kw), *kw, *kw.values(),
            *cells, len(notes), *notes, *notes.values())


def _reusable_blob(obj, protocol=None):
    """dill's payload for a function or class, reused while unchanged."""
    settings = _settings()
    if protocol is None:
        protocol = settings.get('protocol', pickle.DEFAULT_PROTOCOL)
    if settings.get('recurse') or _main_is_transient():
        # the globals travel by value: a snapshot would not see them change
        return _dill_blob(obj, protocol)
    try:
        state = _snapshot(obj)
    except Exception:
        state = None
    if state is None:
        return _dill_blob(obj, protocol)
    key = (protocol, settings.get('byref'), settings.get('fmode'))
    kept = _reusable.get(id(obj))
    if (kept is not None and kept[0]() is obj and kept[1] == key
            and len(kept[2]) == len(state)
            and all(map(operator.is_, kept[2], state))):
        return kept[3]
    blob = _dill_blob(obj, protocol)
    try:
        ref = weakref.ref(obj, _forgetter(_reusable, id(obj)))
    except TypeError:
        return blob
    _reusable[id(obj)] = (ref, key, state, blob)
    return blob


class _DillHooks:
    __slots__ = ('top', 'protocol')

    def __init__(self, top, protocol):
        self.top = top
        self.protocol = protocol

    def reducer_override(self, obj):
        kind = type(obj)
        reduce = _extra_reducers.get(kind)
        if reduce is not None:
            return reduce(obj)
        if kind in _REFUSED_TYPES:
            _refuse(obj)
        if (isinstance(obj, type) and obj is not self.top
                and getattr(obj, '__module__', None) in _MAIN_NAMES
                and not _settings().get('byref')):
            return _main_class_payload(obj, self.protocol)
        return NotImplemented


def _main_class_payload(cls, protocol=None):
    if id(cls) in _marked('dilling'):
        return NotImplemented   # let dill inline it (it handles cycles)
    blob = _by_value_or_name(cls, protocol)
    return _load_main_object, (cls.__qualname__, blob)


def _by_value_or_name(obj, protocol=None):
    """dill's payload for a function or class of __main__; None when dill
    cannot serialize it (a class attribute holding a thread lock, say) but
    the receiver can look it up by name, as the standard library would."""
    try:
        return _reusable_blob(obj, protocol)
    except Exception:
        if _named(obj):
            return None
        raise


# Classes rebuilt from dill payloads, by payload: a receiver getting the
# same class in message after message rebuilds it once, so that instances
# from different messages share one class (as they would by reference).
_class_copies = {}
_CLASS_COPIES_KEPT = 256


def _load_dill(blob):
    """Loader of a nested dill payload (runs in the receiving process)."""
    known = _class_copies.get(blob)
    if known is not None:
        return known
    obj = _import_dill().loads(blob)
    if isinstance(obj, type):
        if len(_class_copies) >= _CLASS_COPIES_KEPT:   # drop the oldest
            try:
                del _class_copies[next(iter(_class_copies))]
            except (StopIteration, RuntimeError, KeyError):
                pass        # another thread got there first
        _class_copies[blob] = obj
    return obj


def _load_main_object(qualname, blob):
    """Loader of a function or class of __main__ (runs in the receiver).

    A class is matched by name: the receiver's own class of that qualified
    name is used when its __main__ defines one, else the copy that travelled
    in ``blob``.  ``blob`` is None for objects sent by name only."""
    if blob is None or not _settings().get('ignore'):
        main = sys.modules.get('__main__')
        found = _lookup(main, qualname)
        if blob is None:
            if found is None:
                raise AttributeError("Can't get attribute %r on %r"
                                     % (qualname, main))
            return found
        if isinstance(found, type) and found.__qualname__ == qualname:
            return found
    return _load_dill(blob)


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


# ------------------------------------------ functions by value without dill
#
# The usual function sent by value -- a lambda, a closure, a nested or a
# __main__ function -- needs nothing of dill: its code object is marshalled
# (C, exact between processes of one interpreter version) and the function
# is rebuilt around it in the receiver, with its global namespace found
# there the way dill finds it by default: the receiver's __main__ for
# functions of __main__, the module imported by name otherwise.  The
# closure starts as empty cells, filled by the pickle's state step, so a
# function inside its own closure (recursive nested functions) or closures
# referring to each other come back through the pickle memo.  Anything
# unusual goes to dill as before (see _plain_function).

_code_bytes = {}      # id(code) -> (weakref to code, marshalled, default doc)
_code_copies = {}     # marshalled -> code, in the receiver
_CODE_COPIES_KEPT = 256


def _marshalled(code):
    kept = _code_bytes.get(id(code))
    if kept is not None and kept[0]() is code:
        return kept[1], kept[2]
    blob = marshal.dumps(code)
    # What a function made from this code has as __doc__ unless told.
    cells = tuple(types.CellType() for _ in code.co_freevars) or None
    doc = types.FunctionType(code, {}, None, None, cells).__doc__
    try:
        ref = weakref.ref(code, _forgetter(_code_bytes, id(code)))
    except TypeError:
        return blob, doc
    _code_bytes[id(code)] = (ref, blob, doc)
    return blob, doc


if sys.version_info >= (3, 11):
    def _default_qualname(code):
        """The __qualname__ of a function made from code without one."""
        return code.co_qualname
else:
    def _default_qualname(code):
        # 3.10's code objects have no co_qualname: a function made from
        # one is named after co_name
        return code.co_name


def _plain_value(value):
    return type(value) in _SCALARS or (isinstance(value, type)
                                      and _named(value, False))


def _plain_function(func, cautious):
    """Reduce value rebuilding func without dill, or None to leave it to
    dill.  ``cautious``: func can also be sent by name, which is done when
    dill fails on it, so only defaults made of scalars are accepted."""
    settings = _settings()
    if settings.get('recurse') or settings.get('byref'):
        return None
    space = func.__globals__
    modname = func.__module__
    if type(modname) is not str:
        return None
    # Only a namespace that is the dict of the module named by __module__
    # is found again by name; dill copies any other one whole.
    if space is not getattr(sys.modules.get(modname), '__dict__', None):
        return None
    if modname in _MAIN_NAMES:
        if space is not getattr(sys.modules.get('__main__'), '__dict__', 0):
            return None
        where = None
    elif space.get('__name__') == modname:
        where = modname
    else:
        return None
    code = func.__code__
    fdict = func.__dict__
    if fdict and ('__wrapped__' in fdict or
                  not all(type(k) is str for k in fdict)):
        return None
    closure = func.__closure__ or ()
    if len(closure) != len(code.co_freevars):
        return None
    try:
        blob, doc = _marshalled(code)
    except Exception:       # a constant marshal refuses
        return None
    values, empty = [], []
    for i, cell in enumerate(closure):
        try:
            values.append(cell.cell_contents)
        except ValueError:
            values.append(None)
            empty.append(i)
    attrs = {}
    if func.__defaults__ is not None:
        attrs['__defaults__'] = func.__defaults__
    if func.__kwdefaults__ is not None:
        attrs['__kwdefaults__'] = func.__kwdefaults__
    if func.__qualname__ != _default_qualname(code):
        attrs['__qualname__'] = func.__qualname__
    if modname != space.get('__name__'):
        attrs['__module__'] = modname
    if func.__doc__ is not doc and func.__doc__ != doc:
        attrs['__doc__'] = func.__doc__
    notes = func.__annotations__
    if notes:
        attrs['__annotations__'] = notes
    if fdict:
        attrs['__dict__'] = fdict
    if where is None and _main_is_transient():
        used = _main_globals_used(code, space)
        if used:
            attrs[_MAIN_GLOBALS] = used
    if cautious:
        parts = (*values, *(func.__defaults__ or ()),
                 *(func.__kwdefaults__ or {}).values(), *fdict.values())
        if not all(map(_plain_value, parts)):
            return None
    args = (blob, where, func.__name__, len(closure))
    if not values and not attrs:
        return _make_function, args
    return (_make_function, args, (tuple(values), tuple(empty), attrs),
            None, None, _fill_function)


# Key, in a function's state, of the __main__ globals it brings along.
_MAIN_GLOBALS = '<main globals>'
_PORTABLE_GLOBALS = frozenset((types.FunctionType, type, types.ModuleType,
                               types.BuiltinFunctionType)) | _SCALARS


def _global_names(code):
    """Names a code object (and the code nested in it) may read as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if type(const) is types.CodeType:
            names |= _global_names(const)
    return names


def _main_globals_used(code, space):
    """The entries of __main__'s namespace that code refers to and that can
    travel.  A value the pickler cannot handle stays behind: a forked
    receiver has it anyway, and elsewhere the name is missing as it would
    have been without this."""
    used = {}
    trying = _marked('trying')
    for name in _global_names(code):
        if name.startswith('__') and name.endswith('__'):
            continue
        try:
            value = space[name]
        except KeyError:
            continue            # a builtin, an attribute name, not defined yet
        if type(value) not in _PORTABLE_GLOBALS and id(value) not in trying:
            # (a value met again inside its own trial is taken as it is:
            # the outer trial decides)
            trying.add(id(value))
            try:
                if not _travels(value):
                    continue
            finally:
                trying.discard(id(value))
        used[name] = value
    return used


class _Discard:
    write = staticmethod(len)


def _travels(value):
    """Whether value pickles as it is (no whole-object retry with dill)."""
    try:
        pickle.Pickler.dump(ForkingPickler(_Discard()), value)
    except Exception:
        return False
    return True


def _make_function(blob, where, name, ncells):
    """Loader of a function sent without dill (runs in the receiver); its
    closure cells stay empty until _fill_function."""
    code = _code_copies.get(blob)
    if code is None:
        code = marshal.loads(blob)
        if len(_code_copies) >= _CODE_COPIES_KEPT:     # drop the oldest
            try:
                del _code_copies[next(iter(_code_copies))]
            except (StopIteration, RuntimeError, KeyError):
                pass
        _code_copies[blob] = code
    if where is None:
        space = sys.modules['__main__'].__dict__
    else:
        module = sys.modules.get(where)
        if module is None:
            __import__(where)
            module = sys.modules[where]
        space = module.__dict__
    cells = tuple(types.CellType() for _ in range(ncells)) or None
    return types.FunctionType(code, space, name, None, cells)


def _fill_function(func, state):
    values, empty, attrs = state
    for i, (cell, value) in enumerate(zip(func.__closure__ or (), values)):
        if i not in empty:
            cell.cell_contents = value
    for name, value in attrs.items():
        if name == '__dict__':
            func.__dict__.update(value)
        elif name == _MAIN_GLOBALS:
            # the receiver's own definitions win (a forked child has them)
            space = func.__globals__
            for key, item in value.items():
                space.setdefault(key, item)
        else:
            setattr(func, name, value)
    return func


# ------------------------------------------------- per-type reducers (C side)

def _via_dill(obj):
    return _load_dill, (_dill_blob(obj),)


def _reduce_function(func):
    if func in _OWN_LOADERS:
        return NotImplemented
    if func.__module__ in _MAIN_NAMES:
        named = _named(func)
        if named and _settings().get('byref'):
            return NotImplemented
        fast = _try_plain_function(func, named)
        if fast is not None:
            return fast
        blob = _by_value_or_name(func)
        if blob is None:
            return _load_main_object, (func.__qualname__, None)
        return _load_dill, (blob,)
    if _named(func):
        return NotImplemented
    fast = _try_plain_function(func, False)
    if fast is not None:
        return fast
    return _load_dill, (_reusable_blob(func),)


def _try_plain_function(func, cautious):
    try:
        return _plain_function(func, cautious)
    except Exception:
        return None


# Classes the C pickler names itself although builtins has no such attribute.
_SPECIAL_SINGLETON_TYPES = frozenset(map(type, (None, NotImplemented, ...)))


def _reduce_class(cls):
    if cls in _SPECIAL_SINGLETON_TYPES:
        return NotImplemented
    if getattr(cls, '__module__', None) in _MAIN_NAMES:
        if _settings().get('byref') and _named(cls):
            return NotImplemented
        return _main_class_payload(cls)
    if _named(cls):
        return NotImplemented
    return _load_dill, (_reusable_blob(cls),)


def _rebuild_module(name):
    __import__(name)
    return sys.modules[name]


def _reduce_module(module):
    name = getattr(module, '__name__', None)
    if name not in _MAIN_NAMES and sys.modules.get(name) is module:
        return _rebuild_module, (name,)
    return _load_dill, (_dill_blob(module),)


# Functions of ours that every dill payload names: skip the lookup.
_OWN_LOADERS = frozenset((_load_dill, _load_main_object, _rebuild_module,
                          _make_function, _fill_function))

# type -> reducer(obj) for the types the C pickler must not handle alone.
# The reducers registered with ``register`` are merged into the same table.
_DILL_KINDS = {
    types.FunctionType: _reduce_function,
    type: _reduce_class,
    types.ModuleType: _reduce_module,
    types.CodeType: _via_dill,
    types.CellType: _via_dill,
    types.MappingProxyType: _via_dill,
    types.GetSetDescriptorType: _via_dill,
    types.MemberDescriptorType: _via_dill,
    property: _via_dill,
    staticmethod: _via_dill,
    classmethod: _via_dill,
}
for _kind in _REFUSED_TYPES:
    _DILL_KINDS[_kind] = _refuse
del _kind

_overrides = dict(_DILL_KINDS)   # what reducer_override consults
_extra_reducers = {}             # only what was registered

# Marks, in _overrides, a type known to need nothing from us.
_PLAIN = object()


def _first_sight(obj):
    kind = type(obj)
    where = (getattr(kind, '__module__', None),
             getattr(kind, '__qualname__', None))
    try:
        late = _LATE_REDUCERS.get(where)
    except TypeError:       # a class with an unhashable __module__
        late = None
    if late is not None and _lookup(sys.modules.get(where[0]),
                                    where[1]) is kind:
        register(kind, late)
        return late(obj)
    # a class with a custom metaclass (asked of its type: on 3.10 a
    # GenericAlias such as list[int] passes isinstance(obj, type))
    if issubclass(kind, type):
        verdict = _reduce_class
    else:
        verdict = _PLAIN
    # Only remember module-level types: they live as long as their module,
    # whereas classes made on the fly must not be kept alive by this table.
    if _named(kind, may_import=False):
        _overrides.setdefault(kind, verdict)   # a register() may have won
    return NotImplemented if verdict is _PLAIN else verdict(obj)


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
            protocol = _settings().get('protocol', pickle.DEFAULT_PROTOCOL)
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
        except _RETRY_WITH_DILL as exc:
            if start is None or getattr(exc, '_multiprocess_dill_failed', 0):
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
        if cls is ForkingPickler:
            # Plain data (numbers, strings, bytes, and lists, tuples and
            # dicts of them) is written by _multiprocess in one C pass, at
            # about twice the C pickler's speed; None means "not plain".
            if protocol is None:
                protocol = _settings().get('protocol', pickle.DEFAULT_PROTOCOL)
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
        except _RETRY_WITH_DILL as exc:
            if getattr(exc, '_multiprocess_dill_failed', False):
                raise
            return _whole_object_fallback(
                obj, getattr(pickler, '_protocol', protocol), exc)
        return buf.getbuffer()

    loads = _loads


class _Payload:
    __slots__ = ('blob',)

    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        return _load_dill, (self.blob,)


if sys.version_info >= (3, 11):
    def _add_note(error, note):
        error.add_note(note)
else:
    def _add_note(error, note):
        # 3.10 has no add_note: keep the note where 3.11 does, in
        # __notes__ (3.10's traceback does not print it)
        notes = getattr(error, '__notes__', None)
        if not isinstance(notes, list):
            notes = []
            error.__notes__ = notes
        notes.append(note)


def _whole_object_fallback(obj, protocol, error):
    try:
        blob = _dill_blob(obj)
    except Exception as dill_error:
        _add_note(error, 'dill could not serialize it either: %s: %s'
                  % (type(dill_error).__name__, dill_error))
        raise error from None
    return pickle.dumps(_Payload(blob), protocol)


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
    from . import context           # layer 3: looked up only when used
    popen = context.get_spawning_popen()
    if popen is not None:
        # Pickled for a child being started: it inherits the fd directly.
        return popen.DupFd(popen.duplicate_for_child(fd))
    if not HAVE_SEND_HANDLE:
        raise ValueError('SCM_RIGHTS appears not to be available')
    from . import resource_sharer
    return resource_sharer.DupFd(fd)


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
_LATE_REDUCERS = {('socket', 'socket'): _reduce_socket}


_OWN_LOADERS |= {_bind, _rebuild_partial, _rebuild_socket}


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
