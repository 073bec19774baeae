"""Functions, classes and modules by value: the reducers the pickler
consults per type (see reduction.py's docstring for the design).  The usual
function sent by value is rebuilt around its marshalled code without dill;
anything unusual becomes a dill payload (_dillpayload.py)."""

# A private module: its names are reached through the public modules,
# none through `import *` (CPython's suite checks every module has __all__).
__all__ = []

import builtins
import marshal
import pickle
import sys
import types
import weakref

from ._dillpayload import (_by_value_or_name, _dill_blob, _forgetter,
                           _load_dill, _load_main_object, _main_class_payload,
                           _reusable_blob, _SCALARS)
from ._pickling import (_LATE_REDUCERS, _MAIN_NAMES, _PLAIN, _REFUSED_TYPES,
                        _lookup, _main_is_transient, _marked,
                        _pickling_for_remote, _named,
                        _overrides, _refuse, _register, _settings,
                        protocol)


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
        if _pickling_for_remote():
            where = _OWN_NAMESPACE
            attrs[_OWN_GLOBALS] = used
        elif used:
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
# The same for a function rebuilt in a namespace of its own (the receiver's
# __main__ is not ours: see _pickling._pickle_for_remote), named by this
# ``where``.
_OWN_GLOBALS = '<own globals>'
_OWN_NAMESPACE = 0
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


class _Trial(pickle.Pickler):
    """A pickler consulting the same table as ForkingPickler, writing
    nowhere: whether a value would pickle."""

    def reducer_override(self, obj):
        return _override(obj)


def _travels(value):
    """Whether value pickles as it is (no whole-object retry with dill)."""
    try:
        _Trial(_Discard(), protocol()).dump(value)
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
    elif where == _OWN_NAMESPACE:
        space = {'__name__': '__main__', '__builtins__': builtins}
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
        elif name == _OWN_GLOBALS:
            func.__globals__.update(value)
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


# Functions of ours that every dill payload names: skip the lookup
# (reduction.py adds its own loaders).
_OWN_LOADERS = {_load_dill, _load_main_object, _rebuild_module,
                _make_function, _fill_function}

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

_overrides.update(_DILL_KINDS)


def _override(obj, _get=_overrides.get):
    """What a pickler's reducer_override answers for obj."""
    reduce = _get(type(obj))
    if reduce is _PLAIN:
        return NotImplemented
    if reduce is not None:
        return reduce(obj)
    return _first_sight(obj)


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
        _register(kind, late)
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
