"""dill payloads: objects serialized by dill and nested in an ordinary
pickle as bytes (see reduction.py's docstring for when), their reuse while
the object is unchanged, and their loaders in the receiver."""

# A private module: its names are reached through the public modules,
# none through `import *` (CPython's suite checks every module has __all__).
__all__ = []

import io
import operator
import pickle
import sys
import types
import weakref

from ._pickling import (_MAIN_NAMES, _REFUSED_TYPES, _extra_reducers,
                        _import_dill, _lookup, _main_is_transient, _marked,
                        _named, _no_retry, _refuse, _settings)
from ._pickling import protocol as _protocol


def _dill_blob(obj, protocol=None):
    """Serialize obj with dill into bytes (the nested payload)."""
    dill = _import_dill()
    if protocol is None:
        protocol = _protocol()
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
        protocol = _protocol()
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
