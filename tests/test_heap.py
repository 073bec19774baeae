"""The shared heap: native arenas and blocks (_multiprocess/arena.c) and the
per-process policy of multiprocess.heap."""
import gc
import os
import pickle
import random
import subprocess
import sys
import textwrap
import time

import pytest

import _multiprocess
import multiprocess
from multiprocess import heap
from .conftest import START_METHODS

# A safety net; tests that start processes also carry their own.
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def fresh_heap():
    saved = heap.BufferWrapper._heap
    heap.BufferWrapper._heap = h = heap.Heap()
    yield h
    heap.BufferWrapper._heap = saved


def shared_mapping_kib():
    """Size of this process's mappings of memfd arenas, in KiB."""
    total = 0
    with open('/proc/self/smaps') as f:
        for line in f:
            if 'multiprocess-arena' in line or 'mp-arena' in line:
                start, end = line.split()[0].split('-')
                total += (int(end, 16) - int(start, 16)) // 1024
    return total


# -- the native allocator ---------------------------------------------------

def test_blocks_are_aligned_and_adjacent():
    arena = _multiprocess.Arena(4096)
    blocks = [arena.alloc(n) for n in (1, 17, 100, 0)]
    starts = [b.start for b in blocks]
    assert all(s % _multiprocess.ARENA_ALIGNMENT == 0 for s in starts)
    used, free = arena.spans()
    assert used == [(b.start, b.stop) for b in blocks]
    assert free == [(blocks[-1].stop, 4096)]
    assert [b.size for b in blocks] == [1, 17, 100, 0]


def test_freed_block_coalesces_with_both_neighbours():
    arena = _multiprocess.Arena(4096)
    a, b, c, d = (arena.alloc(64) for _ in range(4))
    del a, c
    assert arena.spans()[1] == [(0, 64), (128, 192), (256, 4096)]
    del b
    assert arena.spans()[1] == [(0, 192), (256, 4096)]
    del d
    assert arena.spans() == ([], [(0, 4096)])
    assert arena.n_allocs == arena.n_frees == 4


def test_freeing_every_other_block_of_many():
    # The free list then holds as many spans as there are used ones; its
    # capacity must have been reserved while allocating (the deallocator
    # cannot fail), which once overflowed it.
    arena = _multiprocess.Arena(1 << 20)
    blocks = [arena.alloc(16) for _ in range(30000)]
    assert all(b is not None for b in blocks)
    del blocks[::2]
    used, free = arena.spans()
    assert (len(used), len(free)) == (15000, 15001)
    random.Random(3).shuffle(blocks)
    del blocks
    assert arena.spans() == ([], [(0, 1 << 20)])
    assert arena.n_allocs == arena.n_frees == 30000


def test_first_fit_takes_the_lowest_hole_that_fits():
    arena = _multiprocess.Arena(4096)
    keep = []
    holes = {}
    for size in (32, 256, 64, 128):
        holes[size] = arena.alloc(size)
        keep.append(arena.alloc(16))
    start_of = {size: b.start for size, b in holes.items()}
    holes.clear()
    taken = [arena.alloc(300)]          # no hole fits: from the tail
    assert taken[-1].start > max(start_of.values())
    taken.append(arena.alloc(100))      # the first hole that fits
    assert taken[-1].start == start_of[256]
    taken.append(arena.alloc(20))       # the lowest hole of all
    assert taken[-1].start == start_of[32]


def test_allocation_stays_fast_when_the_free_spans_are_many():
    # 50,000 holes too small for the request: the search must not walk them
    arena = _multiprocess.Arena(8 << 20)
    blocks = [arena.alloc(16) for _ in range(100_000)]
    del blocks[::2]
    t = time.perf_counter()
    bigger = [arena.alloc(32) for _ in range(10_000)]
    assert all(b is not None for b in bigger)
    assert time.perf_counter() - t < 1.0     # was ~3 s with a linear scan


def test_random_workload_matches_a_reference_model():
    rng = random.Random(11)
    arena = _multiprocess.Arena(1 << 16)
    live = {}
    for step in range(20_000):
        if live and rng.random() < 0.45:
            del live[rng.choice(list(live))]
        else:
            size = rng.choice((1, 8, 16, 24, 100, 500, 3000))
            b = arena.alloc(size)
            if b is not None:
                assert b.start not in live
                live[b.start] = b
        if step % 997 == 0:
            used, free = arena.spans()
            assert used == sorted((b.start, b.stop) for b in live.values())
            pieces = sorted(used + free)
            assert pieces[0][0] == 0 and pieces[-1][1] == 1 << 16
            assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
            # coalesced: no two free spans touch
            assert all(a[1] < b[0] for a, b in zip(free, free[1:]))
    live.clear()
    b = None
    assert arena.spans() == ([], [(0, 1 << 16)])


def test_reused_block_is_zero_filled():
    arena = _multiprocess.Arena(4096)
    b = arena.alloc(100)
    memoryview(b)[:] = b'\xff' * 100
    start = b.start
    del b
    b = arena.alloc(100)
    assert b.start == start
    assert bytes(memoryview(b)) == bytes(100)


def test_alloc_returns_none_when_nothing_fits():
    arena = _multiprocess.Arena(4096)
    assert arena.alloc(4097) is None
    full = arena.alloc(4096)
    assert arena.alloc(1) is None
    del full
    assert arena.alloc(1) is not None


def test_block_keeps_its_arena_mapped():
    arena = _multiprocess.Arena(4096)
    b = arena.alloc(8)
    del arena
    gc.collect()
    memoryview(b)[:] = b'12345678'
    assert bytes(memoryview(b)) == b'12345678'


def test_foreign_arena_never_allocates():
    arena = _multiprocess.Arena(4096)
    other = _multiprocess.Arena(4096, os.dup(arena.fd))
    assert other.foreign and other.alloc(8) is None
    b = arena.alloc(8)
    memoryview(b)[:] = b'abcdefgh'
    view = _multiprocess.Block(other, b.start, 8)
    assert bytes(memoryview(view)) == b'abcdefgh'
    assert not view.owned


def test_block_constructor_checks_bounds():
    arena = _multiprocess.Arena(4096)
    with pytest.raises(ValueError):
        _multiprocess.Block(arena, 4090, 10)
    with pytest.raises(ValueError):
        _multiprocess.Block(arena, -1, 1)


def test_arena_size_must_be_positive():
    with pytest.raises(ValueError):
        _multiprocess.Arena(0)


# -- heap policy -------------------------------------------------------------

def test_heap_views_cover_every_arena_exactly(fresh_heap):
    fresh_heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    rng = random.Random(7)
    live = []
    for _ in range(2000):
        live.append(heap.BufferWrapper(int(rng.lognormvariate(0, 1) * 1000)))
        if len(live) > 40:
            del live[rng.randrange(40)]
    spans = []
    for seq in fresh_heap._len_to_seq.values():
        spans += [(fresh_heap._arenas.index(a), s, e) for a, s, e in seq]
    for arena, used in fresh_heap._allocated_blocks.items():
        spans += [(fresh_heap._arenas.index(arena), s, e) for s, e in used]
    spans.sort()
    by_arena = {}
    for i, s, e in spans:
        by_arena.setdefault(i, []).append((s, e))
    for i, pieces in by_arena.items():
        assert pieces[0][0] == 0
        assert pieces[-1][1] == fresh_heap._arenas[i].size
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    live.clear()
    assert fresh_heap._n_frees == fresh_heap._n_mallocs == 2000
    assert fresh_heap._arenas == [] and fresh_heap._len_to_seq == {}
    assert fresh_heap._allocated_blocks == {}
    assert fresh_heap._pending_free_blocks == []


def test_small_arenas_are_kept_for_reuse(fresh_heap):
    w = heap.BufferWrapper(100)
    arena = w._block.arena
    del w
    assert fresh_heap._arenas == [arena]
    assert heap.BufferWrapper(100)._block.arena is arena


def test_large_empty_arena_is_unmapped_on_next_allocation(fresh_heap):
    before = shared_mapping_kib()
    w = heap.BufferWrapper(8 << 20)
    assert shared_mapping_kib() - before >= 8 << 10
    del w
    heap.BufferWrapper(16)
    gc.collect()
    assert shared_mapping_kib() - before < 1024


def test_arena_sizes_double_then_stay(fresh_heap):
    sizes = []
    keep = []
    while len(sizes) < 14:
        keep.append(heap.BufferWrapper(4000))
        sizes = [a.size for a in fresh_heap._arenas]
    assert sizes[:3] == [4096, 8192, 16384]
    assert max(sizes) <= fresh_heap._DOUBLE_ARENA_SIZE_UNTIL * 2


def test_many_small_values_keep_the_shared_mapping_bounded(fresh_heap):
    """100,000 RawValues created and dropped one after another reuse the
    same bytes: the process's arena mappings do not grow."""
    multiprocess.RawValue('i', 0)
    before = shared_mapping_kib()
    for i in range(100_000):
        v = multiprocess.RawValue('i', i)
        assert v.value == i
        del v
    assert shared_mapping_kib() - before <= 4
    assert sum(a.size for a in fresh_heap._arenas) <= 8192
    assert fresh_heap._n_mallocs == fresh_heap._n_frees


def test_many_live_small_values_are_packed(fresh_heap):
    values = [multiprocess.RawValue('d', i) for i in range(10_000)]
    total = sum(a.size for a in fresh_heap._arenas)
    # 16 bytes per value plus at most one arena's slack per doubling step
    assert total < 16 * 10_000 * 2 + (4 << 20)
    assert values[1234].value == 1234.0
    del values
    assert fresh_heap._n_mallocs == fresh_heap._n_frees


def test_negative_size_is_refused():
    with pytest.raises(ValueError):
        heap.BufferWrapper(-1)
    with pytest.raises(OverflowError):
        heap.BufferWrapper(sys.maxsize)


def test_freeing_from_the_garbage_collector_does_not_deadlock(fresh_heap):
    thresholds = gc.get_threshold()
    gc.set_threshold(10)
    try:
        for _ in range(5000):
            a = heap.BufferWrapper(1)
            b = heap.BufferWrapper(1)
            a.buddy, b.buddy = b, a
    finally:
        gc.set_threshold(*thresholds)
    del a, b
    gc.collect()
    assert fresh_heap._n_frees == fresh_heap._n_mallocs


@pytest.mark.timeout(60)
def test_forked_child_allocates_from_its_own_arenas(fresh_heap):
    """After fork, parent and child must never hand out the same bytes."""
    parent_block = heap.BufferWrapper(64)
    parent_arena = parent_block._block.arena
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child = heap.BufferWrapper(64)
            same = child._block.arena is parent_arena
            os.write(w, b'same' if same else b'own!')
            # dropping an inherited block must not disturb anything
            del parent_block
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 4) == b'own!'
    os.close(r)
    os.waitpid(pid, 0)
    assert parent_arena.nblocks == 1


def _write_through(wrapper, data):
    wrapper.create_memoryview()[:len(data)] = data


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', START_METHODS)
def test_child_writes_land_in_parents_block(method):
    ctx = multiprocess.get_context(method)
    wrapper = heap.BufferWrapper(32)
    p = ctx.Process(target=_write_through, args=(wrapper, b'from the child'))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert bytes(wrapper.create_memoryview()[:14]) == b'from the child'


def test_block_pickles_only_for_children():
    wrapper = heap.BufferWrapper(8)
    with pytest.raises(Exception):
        pickle.dumps(wrapper)


@pytest.mark.timeout(60)
def test_arena_travels_by_descriptor_to_another_process():
    """Outside of spawning, an arena still pickles (through the resource
    sharer) and the receiver maps the same pages."""
    code = textwrap.dedent('''
        import sys
        from multiprocess import heap, reduction
        blob = sys.stdin.buffer.read()
        w = reduction.ForkingPickler.loads(blob)
        w.create_memoryview()[:5] = b'HELLO'
        print('ok')
    ''')
    from multiprocess import reduction
    wrapper = heap.BufferWrapper(16)
    blob = bytes(reduction.ForkingPickler.dumps(wrapper))
    out = subprocess.run([sys.executable, '-c', code], input=blob,
                         capture_output=True, timeout=50)
    assert out.stdout.strip() == b'ok', out.stderr
    assert bytes(wrapper.create_memoryview()[:5]) == b'HELLO'
