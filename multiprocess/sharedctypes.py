"""ctypes objects in shared memory, optionally guarded by a lock.

``RawValue``/``RawArray`` place a ctypes object on a block of the shared
heap (``heap.BufferWrapper``); children see the same bytes, whether they
were forked or spawned (the block travels as its arena's descriptor plus an
offset).  ``Value``/``Array`` wrap such an object with a lock.

The wrappers' hot paths are native: ``Synchronized.value`` and the element
access of ``SynchronizedArray`` are implemented by ``_multiprocess.SyncValue``
and ``_multiprocess.SyncArray`` (``_multiprocess/syncwrap.c``), which take
the lock (a SemLock directly in C, any other lock through its acquire/release,
looked up once) and, for the plain numeric and char types, read and write the
shared bytes in place.  Python code here only
builds objects, picks the wrapper class and handles pickling.
"""

import ctypes
import weakref

import _multiprocess

from . import context
from . import heap
from . import reduction

__all__ = ['RawValue', 'RawArray', 'Value', 'Array', 'copy', 'synchronized']

# The array module's typecodes, as ctypes types.
typecode_to_type = dict(zip('cubBhHiIlLqQfd', (
    ctypes.c_char, ctypes.c_wchar, ctypes.c_byte, ctypes.c_ubyte,
    ctypes.c_short, ctypes.c_ushort, ctypes.c_int, ctypes.c_uint,
    ctypes.c_long, ctypes.c_ulong, ctypes.c_longlong, ctypes.c_ulonglong,
    ctypes.c_float, ctypes.c_double)))

# The fundamental simple types (not user subclasses, whose items ctypes
# returns as instances rather than plain values).
_PLAIN_TYPES = frozenset(typecode_to_type.values()) | {
    ctypes.c_bool, ctypes.c_int8, ctypes.c_int16, ctypes.c_int32,
    ctypes.c_int64, ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32,
    ctypes.c_uint64, ctypes.c_size_t, ctypes.c_ssize_t}


def _ctype_of(typecode_or_type):
    return typecode_to_type.get(typecode_or_type, typecode_or_type)


def _new_value(type_):
    # Blocks come zero-filled from the heap.
    wrapper = heap.BufferWrapper(ctypes.sizeof(type_))
    return rebuild_ctype(type_, wrapper, None)


def RawValue(typecode_or_type, *args):
    """A ctypes object of the given type in shared memory, no lock."""
    obj = _new_value(_ctype_of(typecode_or_type))
    if args:
        obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory, no lock.  The second argument is a
    length (zero-filled array) or a sequence of initial values."""
    type_ = _ctype_of(typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _new_value(type_ * size_or_initializer)
    values = list(size_or_initializer)
    obj = _new_value(type_ * len(values))
    obj.__init__(*values)
    return obj


def _choose_lock(lock, ctx):
    # lock=True/None: a fresh recursive lock; False: none; else the object
    # given, which must at least look like a lock.
    if lock is True or lock is None:
        return (ctx or context._default_context.get_context()).RLock()
    if lock is False:
        return None
    if not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % (lock,))
    return lock


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A ctypes object in shared memory behind a lock (``lock=False``: the
    raw object)."""
    obj = RawValue(typecode_or_type, *args)
    lock = _choose_lock(lock, ctx)
    if lock is None:
        return obj
    return synchronized(obj, lock, ctx=ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A ctypes array in shared memory behind a lock (``lock=False``: the
    raw array)."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    lock = _choose_lock(lock, ctx)
    if lock is None:
        return obj
    return synchronized(obj, lock, ctx=ctx)


def copy(obj):
    """A new shared ctypes object holding a copy of ``obj``'s bytes."""
    new_obj = _new_value(type(obj))
    ctypes.memmove(ctypes.addressof(new_obj), ctypes.addressof(obj),
                   ctypes.sizeof(obj))
    return new_obj


# Structure types -> their Synchronized subclass with one property per field.
_structure_wrappers = weakref.WeakKeyDictionary()


def _wrapper_class(obj):
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized
    if isinstance(obj, ctypes.Array):
        plain_chars = obj._type_ is ctypes.c_char
        return SynchronizedString if plain_chars else SynchronizedArray
    # A structure (or union): a Synchronized subclass with one locked
    # property per field, made once per type.
    cls = type(obj)
    wrapper_cls = _structure_wrappers.get(cls)
    if wrapper_cls is None:
        fields = {name: _locked_attribute(name)
                  for name, *_ in getattr(cls, '_fields_', ())}
        wrapper_cls = type('Synchronized' + cls.__name__, (Synchronized,),
                           fields)
        _structure_wrappers[cls] = wrapper_cls
    return wrapper_cls


def synchronized(obj, lock=None, ctx=None):
    """Wrap the ctypes object ``obj`` so each access holds ``lock``."""
    if isinstance(obj, SynchronizedBase):
        raise TypeError('object already synchronized')
    return _wrapper_class(obj)(obj, lock, ctx)


def _locked_attribute(name):
    # A property reading/writing attribute `name` of the wrapped object
    # while holding the wrapper's lock.  acquire()/try/release() rather
    # than `with self:`, which costs about twice as much on 3.13.
    def fget(self):
        self.acquire()
        try:
            return getattr(self._obj, name)
        finally:
            self.release()

    def fset(self, value):
        self.acquire()
        try:
            setattr(self._obj, name, value)
        finally:
            self.release()

    return property(fget, fset, doc='%s of the wrapped object' % name)


# -- pickling: a shared ctypes object travels as its type plus its block

def reduce_ctype(obj):
    context.assert_spawning(obj)
    if isinstance(obj, ctypes.Array):
        return rebuild_ctype, (obj._type_, obj._wrapper, obj._length_)
    return rebuild_ctype, (type(obj), obj._wrapper, None)


def rebuild_ctype(type_, wrapper, length):
    if length is not None:
        type_ = type_ * length
    reduction.register(type_, reduce_ctype)
    obj = type_.from_buffer(wrapper.create_memoryview())
    obj._wrapper = wrapper
    return obj


# -- the wrappers

def _wants_fast_path(obj):
    # Only where the native path returns what the ctypes object would.
    if isinstance(obj, ctypes.Array):
        return obj._type_ in _PLAIN_TYPES
    return type(obj) in _PLAIN_TYPES


class SynchronizedBase(_multiprocess.SyncBase):
    """Common part of the wrappers: ``get_obj()``, ``get_lock()``,
    ``acquire``/``release``, and ``with wrapper:`` holding the lock."""

    def __init__(self, obj, lock=None, ctx=None):
        if not lock:
            lock = (ctx or context._default_context.get_context()).RLock()
        super().__init__(obj, lock, _wants_fast_path(obj))

    def __reduce__(self):
        context.assert_spawning(self)
        return synchronized, (self._obj, self._lock)

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)


class Synchronized(SynchronizedBase, _multiprocess.SyncValue):
    """A locked scalar: ``value`` reads and writes under the lock."""


class SynchronizedArray(SynchronizedBase, _multiprocess.SyncArray):
    """A locked array: ``len()``, items and slices under the lock."""

    # The native core only has the mapping slots (a sequence slot would
    # take over __getitem__ and cost a wrapper call per access), so
    # iteration is spelled out: one locked access per item, as with the
    # standard library's wrapper.
    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __reversed__(self):
        for i in range(len(self) - 1, -1, -1):
            yield self[i]

    def __contains__(self, item):
        return any(x == item for x in self)


class SynchronizedString(SynchronizedArray):
    """A locked ``c_char`` array, with its ``value`` and ``raw``."""

    # Spelled out rather than _locked_attribute's getattr() by name: these
    # are read in loops (a status string polled by workers).
    def _get_value(self):
        self.acquire()
        try:
            return self._obj.value
        finally:
            self.release()

    def _set_value(self, new):
        self.acquire()
        try:
            self._obj.value = new
        finally:
            self.release()

    def _get_raw(self):
        self.acquire()
        try:
            return self._obj.raw
        finally:
            self.release()

    def _set_raw(self, new):
        self.acquire()
        try:
            self._obj.raw = new
        finally:
            self.release()

    value = property(_get_value, _set_value,
                     doc='The bytes up to the first NUL, under the lock.')
    raw = property(_get_raw, _set_raw,
                   doc='All the bytes of the array, under the lock.')
