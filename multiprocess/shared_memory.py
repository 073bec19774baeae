"""Named blocks of POSIX shared memory, and a list stored in one.

``SharedMemory`` opens (or creates) a segment with the native core's
``_multiprocess.shm_open`` (``_multiprocess/shm.c``), sizes it, and maps it;
any process knowing the name can attach.  The creator registers the name
with the resource tracker, so a segment whose program dies without calling
``unlink()`` is removed (with a warning) when the program's last process is
gone.  ``unlink()`` removes the name and tells the tracker.

``ShareableList`` keeps a fixed-length list of int, float, bool, None, str
and bytes in one segment.  The layout is the standard library's, so either
implementation can attach to a list made by the other::

    q            number of items n
    q * (n + 1)  offset of each item's slot in the data area (first is 0;
                 the last is the data area's length)
    data         one slot per item, 8 bytes or, for str/bytes, the length
                 rounded up to a multiple of 8 (plus 8 when already a
                 multiple)
    8s * n       each slot's struct format, NUL padded
    b * n        how to turn the unpacked value back into the item
"""

__all__ = ['SharedMemory', 'ShareableList']

import contextlib
import mmap
import os
import secrets
import struct
import sys
import types

import _multiprocess

from . import resource_tracker

_USE_POSIX = True

# Names stay short: some systems limit POSIX shared memory names to 14
# characters or so.  The prefix is the standard library's, so tools that
# look for leaked segments find ours too.
_SHM_SAFE_NAME_LENGTH = 14
_SHM_NAME_PREFIX = '/psm_'

_O_CREX = os.O_CREAT | os.O_EXCL

# Who registers a segment with the resource tracker.  From 3.13 on, as the
# stdlib documents with ``track``: every process that creates or attaches
# with track=True, so the tracker of a program that attached unlinks the
# segment when that program ends.  Before 3.13 only the creator does: the
# stdlib of those versions registers attachers too, and so unlinks a
# segment under the feet of the program that made it (bpo-38119), with no
# way to opt out.
_ATTACHING_REGISTERS = sys.version_info >= (3, 13)


def _make_filename():
    """A random name for a new segment, leading slash included."""
    room = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    return _SHM_NAME_PREFIX + secrets.token_hex(room)


def _check_request(name, create, size):
    # The stdlib's messages, since callers may match them.
    if not size >= 0:
        raise ValueError("'size' must be a positive integer")
    if create and size == 0:
        raise ValueError("'size' must be a positive number different "
                         "from zero")
    if not create and name is None:
        raise ValueError("'name' can only be None if create=True")


class SharedMemory:
    """A named shared memory segment: ``SharedMemory(name=None,
    create=False, size=0, *, track=True)``.

    With ``create=True`` a new segment of ``size`` bytes is made (under a
    random name if ``name`` is None); otherwise the existing segment
    ``name`` is attached and ``size`` is ignored.  ``buf`` is a memoryview
    of the whole segment.  With ``track=False`` the resource tracker is
    kept out of it: the segment outlives the program unless someone calls
    ``unlink()``.  (The stdlib added ``track`` in 3.13; it exists here on
    every version.  From 3.13 on, attaching with ``track=True`` registers
    the segment too, as in the stdlib; before, only creating does.)
    """

    # Open flags and permissions of a segment; create=True switches the
    # flags to exclusive creation.  Subclasses may change them.
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True

    _name = None
    _fd = -1
    _mmap = None
    _buf = None
    _track = True

    def __init__(self, name=None, create=False, size=0, *, track=True):
        _check_request(name, create, size)
        self._track = track
        if create:
            self._flags = _O_CREX | os.O_RDWR

        if name is None:
            # Draw random names until one is free.
            while True:
                candidate = _make_filename()
                try:
                    self._fd = _multiprocess.shm_open(candidate, self._flags,
                                                      mode=self._mode)
                except FileExistsError:
                    continue
                break
            name = candidate
        else:
            if self._prepend_leading_slash:
                name = '/' + name       # always, as the stdlib does
            self._fd = _multiprocess.shm_open(name, self._flags,
                                              mode=self._mode)
        self._name = name

        try:
            if create and size:
                os.ftruncate(self._fd, size)
            size = os.fstat(self._fd).st_size
            self._mmap = mmap.mmap(self._fd, size)
        except OSError:
            if create:
                # Not registered with the tracker yet: just remove it.
                _multiprocess.shm_unlink(self._name)
            self.close()
            raise
        self._buf = memoryview(self._mmap)
        self._size = size
        if track and (create or _ATTACHING_REGISTERS):
            resource_tracker.register(self._name, 'shared_memory')

    def __del__(self):
        with contextlib.suppress(OSError):
            self.close()

    def __reduce__(self):
        # Unpickling attaches to the segment by name.
        return type(self), (self.name, False, self.size)

    def __repr__(self):
        return f'{type(self).__name__}({self.name!r}, size={self.size})'

    @property
    def buf(self):
        """A memoryview of the segment's bytes."""
        return self._buf

    @property
    def name(self):
        """The segment's name, as passed to another process to attach."""
        name = self._name
        if self._prepend_leading_slash and name:
            return name[1:]
        return name

    @property
    def size(self):
        """Size of the segment in bytes."""
        return self._size

    def close(self):
        """Unmap the segment from this process (it stays for others)."""
        # The view first: the mapping refuses to close while exported.
        view, self._buf = self._buf, None
        if view is not None:
            view.release()
        mapping, self._mmap = self._mmap, None
        if mapping is not None:
            mapping.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def unlink(self):
        """Remove the segment's name; the memory goes when every process
        has closed it.  Call it once, from one process."""
        if self._name:
            _multiprocess.shm_unlink(self._name)
            if self._track:
                resource_tracker.unregister(self._name, 'shared_memory')


# -- ShareableList ----------------------------------------------------------

_ENCODING = 'utf8'
_SLOT = 8                       # slot granularity and format field width

# How a slot's raw value becomes the item again (stored per slot).
_AS_IS, _AS_STR, _AS_BYTES, _AS_NONE = range(4)

# Struct format of an 8-byte slot for each fixed-size item type.
_FIXED_FORMATS = {
    int: 'q',
    float: 'd',
    bool: 'xxxxxxx?',
    type(None): 'xxxxxx?x',
}


def _restore(kind, raw):
    if kind == _AS_STR:
        return raw.rstrip(b'\x00').decode(_ENCODING)
    if kind == _AS_BYTES:
        return raw.rstrip(b'\x00')
    if kind == _AS_NONE:
        return None
    return raw


def _encode_item(item):
    """(slot format, value to pack, restore code) of a new item."""
    if isinstance(item, str):
        data = item.encode(_ENCODING)
    elif isinstance(item, bytes):
        data = item
    else:
        try:
            fmt = _FIXED_FORMATS[type(item)]
        except KeyError:
            raise TypeError('ShareableList cannot hold %s items'
                            % type(item).__name__) from None
        return fmt, item, _AS_NONE if item is None else _AS_IS
    # The stdlib sizes a str slot by its length in characters; keep that
    # (formats then match), but never below the encoded length.
    width = (len(item) // _SLOT + 1) * _SLOT
    if width < len(data):
        width = -(-len(data) // _SLOT) * _SLOT
    kind = _AS_STR if isinstance(item, str) else _AS_BYTES
    return '%ds' % width, data, kind


def _slot_width(fmt):
    return int(fmt[:-1]) if fmt.endswith('s') else _SLOT


class ShareableList:
    """A list of fixed length whose items (int, float, bool, None, str,
    bytes) live in a shared memory segment.

    ``ShareableList(sequence)`` creates a segment holding ``sequence``
    (``name`` chooses its name); ``ShareableList(name=name)`` attaches to an
    existing one.  Items may be replaced, by items of another type too, as
    long as a str or bytes fits the slot it was first given.
    """

    def __init__(self, sequence=None, *, name=None):
        if sequence is not None or name is None:
            items = list(sequence or ())
            encoded = [_encode_item(item) for item in items]
            count = len(items)
            ends = [0]
            for fmt, _, _ in encoded:
                ends.append(ends[-1] + _slot_width(fmt))
            self._list_len = count
            self._allocated_offsets = ends
            total = (_SLOT * (count + 2) + ends[-1]
                     + _SLOT * count + count)
            self.shm = SharedMemory(name, create=True, size=total)
            buf = self.shm.buf
            struct.pack_into('%dq' % (count + 2), buf, 0, count, *ends)
            for i, (fmt, value, kind) in enumerate(encoded):
                struct.pack_into(fmt, buf, self._offset_data_start + ends[i],
                                 value)
                self._write_slot_info(i, fmt, kind)
        else:
            self.shm = SharedMemory(name)
            count = struct.unpack_from('q', self.shm.buf, 0)[0]
            self._list_len = count
            self._allocated_offsets = list(
                struct.unpack_from('%dq' % (count + 1), self.shm.buf, _SLOT))

    # -- where things are

    @property
    def _offset_data_start(self):
        return _SLOT * (self._list_len + 2)

    @property
    def _offset_packing_formats(self):
        return self._offset_data_start + self._allocated_offsets[-1]

    @property
    def _offset_back_transform_codes(self):
        return self._offset_packing_formats + _SLOT * self._list_len

    def _write_slot_info(self, position, fmt, kind):
        struct.pack_into('8s', self.shm.buf,
                         self._offset_packing_formats + _SLOT * position,
                         fmt.encode(_ENCODING))
        struct.pack_into('b', self.shm.buf,
                         self._offset_back_transform_codes + position, kind)

    def _get_packing_format(self, position):
        raw = struct.unpack_from(
            '8s', self.shm.buf,
            self._offset_packing_formats + _SLOT * position)[0]
        return raw.rstrip(b'\x00').decode(_ENCODING)

    def _get_back_transform_code(self, position):
        return struct.unpack_from(
            'b', self.shm.buf,
            self._offset_back_transform_codes + position)[0]

    def _position(self, position):
        if position < 0:
            position += self._list_len
        if not 0 <= position < self._list_len:
            return None
        return position

    # -- the sequence interface

    def __getitem__(self, position):
        i = self._position(position)
        if i is None:
            raise IndexError('index out of range')
        raw, = struct.unpack_from(
            self._get_packing_format(i), self.shm.buf,
            self._offset_data_start + self._allocated_offsets[i])
        return _restore(self._get_back_transform_code(i), raw)

    def __setitem__(self, position, value):
        i = self._position(position)
        if i is None:
            raise IndexError('assignment index out of range')
        start = self._allocated_offsets[i]
        room = self._allocated_offsets[i + 1] - start
        fmt, data, kind = _encode_item(value)
        if kind in (_AS_STR, _AS_BYTES):
            if len(data) > room:
                raise ValueError('bytes/str item exceeds available storage')
            fmt = '%ds' % room      # the slot keeps its width
        self._write_slot_info(i, fmt, kind)
        struct.pack_into(fmt, self.shm.buf, self._offset_data_start + start,
                         data)

    def __len__(self):
        return struct.unpack_from('q', self.shm.buf, 0)[0]

    def __reduce__(self):
        return _attach_shareable_list, (type(self), self.shm.name)

    def __repr__(self):
        return (f'{type(self).__name__}({list(self)}, '
                f'name={self.shm.name!r})')

    @property
    def format(self):
        """The struct format of all the items' slots, concatenated."""
        return ''.join(self._get_packing_format(i)
                       for i in range(self._list_len))

    def count(self, value):
        """Number of items equal to ``value``."""
        return sum(1 for item in self if item == value)

    def index(self, value):
        """Position of the first item equal to ``value``; ValueError if
        there is none."""
        for i, item in enumerate(self):
            if item == value:
                return i
        raise ValueError(f'{value!r} not in this container')

    __class_getitem__ = classmethod(types.GenericAlias)


def _attach_shareable_list(cls, name):
    return cls(name=name)
