"""Shared memory for shared ctypes: arenas, blocks and the per-process heap.

Mechanics live in the native core (``_multiprocess/arena.c``):

* ``Arena``: one shared mapping backed by a memfd.  Pickled for a child, it
  travels as a duplicated descriptor (``reduction.DupFd``), so spawn and
  forkserver children map the same pages as the parent; fork children
  simply inherit the mapping.
* ``Block``: a span of an arena, exporting its bytes as a buffer.  A block
  made by ``Arena.alloc`` gives its span back (coalesced with free
  neighbours) as soon as its last reference in this process goes away.

This module is policy: which arena to carve from, how big a new arena is,
when an empty arena is unmapped, and starting afresh in a forked child.
The attributes CPython's test suite inspects (``_arenas``, ``_len_to_seq``,
``_allocated_blocks``, ``_n_mallocs``, ``_n_frees``,
``_pending_free_blocks``) are computed from the native bookkeeping.
"""

import mmap
import os
import sys
import threading

import _multiprocess

from . import reduction

__all__ = ['BufferWrapper']

Arena = _multiprocess.Arena
Block = _multiprocess.Block


def _reduce_arena(arena):
    # Sending an arena means sending its descriptor; the receiver maps it.
    return _rebuild_arena, (arena.size, reduction.DupFd(arena.fd))


def _rebuild_arena(size, dupfd):
    return Arena(size, dupfd.detach())


def _reduce_block(block):
    return Block, (block.arena, block.start, block.size)


reduction.register(Arena, _reduce_arena)
reduction.register(Block, _reduce_block)


# This process's id, kept current across forks without a getpid() call per
# allocation.
_this_pid = os.getpid()


def _note_fork():
    global _this_pid
    _this_pid = os.getpid()


os.register_at_fork(after_in_child=_note_fork)


def _check_size(size):
    if size < 0:
        raise ValueError(f'cannot allocate a negative size ({size})')
    if size >= sys.maxsize:
        raise OverflowError(f'cannot allocate {size} bytes')


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


class Heap(object):
    """Hands out zero-filled blocks of shared memory in this process."""

    _alignment = _multiprocess.ARENA_ALIGNMENT
    # An arena this large is unmapped once nothing in it is in use; smaller
    # ones are kept for reuse, which is cheaper than making new ones.
    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 * 1024
    # New arenas double in size up to this bound.
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024 * 1024

    def __init__(self, size=mmap.PAGESIZE):
        self._initial_size = size
        self._start_afresh()

    def _start_afresh(self):
        # Also what a forked child does on its first allocation: the arenas
        # it inherited stay mapped for the blocks it inherited, but new
        # blocks come from arenas of its own.  The lock is new too: another
        # thread of the parent may have held it at the fork.
        self._pid = _this_pid
        self._lock = threading.RLock()
        self._size = self._initial_size
        self._live = []             # arenas, oldest first
        self._n_mallocs = 0
        self._retired_frees = 0     # frees counted in arenas dropped since

    # -- allocation ---------------------------------------------------

    def malloc(self, size):
        """A ``Block`` of ``size`` zeroed bytes in shared memory."""
        _check_size(size)
        if self._pid != _this_pid:
            self._start_afresh()
        with self._lock:
            self._n_mallocs += 1
            self._drop_empty_arenas()
            # Newest arenas first: they are the largest and least crowded.
            for arena in reversed(self._live):
                block = arena.alloc(size)
                if block is not None:
                    return block
            arena = self._new_arena(size)
            return arena.alloc(size)

    def free(self, block):
        """Kept for callers of the stdlib's interface: blocks free
        themselves when the last reference to them goes away."""

    def _new_arena(self, size):
        length = _round_up(max(self._size, size, 1), mmap.PAGESIZE)
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        arena = Arena(length)
        self._live.append(arena)
        return arena

    def _drop_empty_arenas(self):
        threshold = self._DISCARD_FREE_SPACE_LARGER_THAN
        keep = []
        for arena in self._live:
            if arena.nblocks == 0 and arena.size >= threshold:
                self._retired_frees += arena.n_frees
            else:
                keep.append(arena)
        if len(keep) != len(self._live):
            self._live = keep

    # -- views for introspection (CPython's test suite uses these) -------

    def _own_arenas(self):
        if self._pid != _this_pid:
            return []
        with self._lock:
            self._drop_empty_arenas()
            return list(self._live)

    @property
    def _arenas(self):
        return self._own_arenas()

    @property
    def _len_to_seq(self):
        """Free spans by length: {length: [(arena, start, stop), ...]}."""
        table = {}
        for arena in self._own_arenas():
            for start, stop in arena.spans()[1]:
                table.setdefault(stop - start, []).append((arena, start, stop))
        return table

    @property
    def _allocated_blocks(self):
        """Spans in use by arena: {arena: {(start, stop), ...}}."""
        return {arena: set(arena.spans()[0])
                for arena in self._own_arenas() if arena.nblocks}

    @property
    def _n_frees(self):
        live = self._own_arenas()       # may retire arenas: call it first
        return self._retired_frees + sum(a.n_frees for a in live)

    @property
    def _pending_free_blocks(self):
        # Frees happen at once, in the block's deallocator; none wait.
        return []


class BufferWrapper(object):
    """``size`` bytes of shared memory, kept alive as long as this object."""

    _heap = Heap()

    def __init__(self, size):
        # (the heap checks the size)
        self._block = BufferWrapper._heap.malloc(size)

    @property
    def _state(self):
        b = self._block
        return (b.arena, b.start, b.stop), b.size

    def create_memoryview(self):
        return memoryview(self._block)
