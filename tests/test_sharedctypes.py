"""Shared ctypes: RawValue/RawArray/Value/Array, the synchronized wrappers
(native cores in _multiprocess/syncwrap.c) and their behaviour across
processes."""
import array
import contextlib
import ctypes
import pickle
import signal
import threading
import time

import pytest

import multiprocess
from multiprocess import context, heap, sharedctypes
from multiprocess.sharedctypes import (
    Array, RawArray, RawValue, Synchronized, SynchronizedArray,
    SynchronizedBase, SynchronizedString, Value, copy, synchronized)
from .conftest import START_METHODS

METHODS = START_METHODS

# A safety net; tests that start processes also carry their own.
pytestmark = pytest.mark.timeout(180)


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double),
                ('z', ctypes.c_longlong)]


# -- creation ---------------------------------------------------------------

@pytest.mark.parametrize('code, value', [
    ('c', b'x'), ('b', -5), ('B', 250), ('h', -300), ('H', 60000),
    ('i', -70000), ('I', 4000000000), ('l', -2 ** 40), ('L', 2 ** 63),
    ('q', -2 ** 62), ('Q', 2 ** 64 - 1), ('f', 1.5), ('d', -2.25),
    ('u', 'é')])
def test_every_typecode_round_trips(code, value):
    for make in (RawValue, Value):
        v = make(code, value)
        assert v.value == value
    arr = Array(code, [value] * 3)
    assert arr[:] == ([value] * 3 if code not in 'cu' else value * 3)


def test_ctypes_types_and_structures_are_accepted():
    assert RawValue(ctypes.c_bool, True).value is True
    p = Value(Point, 1, 2.5, 2 ** 40)
    assert (p.x, p.y, p.z) == (1, 2.5, 2 ** 40)
    p.x = 7
    assert p.get_obj().x == 7
    assert type(p).__name__ == 'SynchronizedPoint'
    assert type(p) is type(Value(Point))     # one wrapper class per type


def test_values_start_zeroed_and_arrays_from_size_are_zeroed():
    for _ in range(3):
        arr = Array('i', 10)
        assert list(arr) == [0] * 10
        arr[:] = range(10)
        del arr
    assert RawValue('d').value == 0.0
    assert bytes(RawValue(Point)) == bytes(ctypes.sizeof(Point))


def test_array_from_initializer_sequence_and_iterable():
    assert RawArray('i', [1, 2, 3])[:] == [1, 2, 3]
    assert RawArray('d', range(4))[:] == [0.0, 1.0, 2.0, 3.0]
    assert RawArray('i', (x * x for x in range(3)))[:] == [0, 1, 4]


# -- locks --------------------------------------------------------------------

def test_lock_choices_follow_the_stdlib():
    assert isinstance(Value('i', 5).get_lock(), multiprocess.synchronize.RLock)
    assert isinstance(Value('i', 5, lock=None).get_lock(),
                      multiprocess.synchronize.RLock)
    lock = multiprocess.Lock()
    assert Value('i', lock=lock).get_lock() is lock
    assert Array('i', 3, lock=lock).get_lock() is lock
    raw = Value('i', 5, lock=False)
    assert not hasattr(raw, 'get_lock') and not hasattr(raw, 'get_obj')
    assert isinstance(raw, ctypes.c_int)
    with pytest.raises(AttributeError):
        Value('i', 5, lock='notalock')
    with pytest.raises(AttributeError):
        Array('i', 5, lock='notalock')


def test_wrapper_kinds():
    assert type(Value('i')) is Synchronized
    assert type(Array('i', 3)) is SynchronizedArray
    assert type(Array('c', 3)) is SynchronizedString
    assert isinstance(Value('i'), SynchronizedBase)
    with pytest.raises(TypeError):
        synchronized(Value('i'))


def test_wrapper_is_a_context_manager_holding_the_lock():
    v = Value('i', 0, lock=multiprocess.Lock())
    with v:
        assert not v.get_lock().acquire(False)
    assert v.get_lock().acquire(False)
    v.release()
    assert v.acquire() is True
    v.release()


def test_any_lock_like_object_works():
    v = Value('d', 1.0, lock=threading.Lock())
    v.value += 1
    assert v.value == 2.0
    arr = Array('i', 3, lock=threading.RLock())
    arr[1] = 5
    assert arr[:] == [0, 5, 0]


def test_value_access_inside_held_default_lock():
    v = Value('i', 0)
    with v.get_lock():
        v.value += 1      # re-entrant: the default lock is an RLock
    assert v.value == 1


def test_lock_is_released_when_access_fails():
    lock = multiprocess.Lock()
    arr = Array('i', 3, lock=lock)
    with pytest.raises(IndexError):
        arr[3]
    with pytest.raises(TypeError):
        arr[0] = 1.5
    with pytest.raises(TypeError):
        Value('i', lock=lock).value = 'x'
    assert lock.acquire(False)
    lock.release()


# -- whose acquire/release an access calls -----------------------------------
# A lock of multiprocess.synchronize is taken through the SemLock's C API;
# any other lock through its own methods, looked up once.

class _CountingLock:
    """A lock from elsewhere: Python-level acquire/release that count."""

    def __init__(self):
        self._lock = threading.RLock()
        self.acquired = self.released = 0

    def acquire(self, block=True, timeout=-1):
        self.acquired += 1
        self._lock.acquire(block, timeout)
        return 'taken'

    def release(self):
        self.released += 1
        self._lock.release()
        return 'given'


def test_a_lock_from_elsewhere_is_called_once_per_access():
    lock = _CountingLock()
    v = Value('i', 0, lock=lock)
    arr = Array('d', 4, lock=lock)
    v.value = 3
    assert v.value == 3
    arr[2] = 1.5
    assert arr[2] == 1.5 and len(arr) == 4
    assert lock.acquired == lock.released == 4
    # `with wrapper:` hands back what the lock's own methods return
    assert v.__enter__() == 'taken'
    assert v.__exit__(None, None, None) == 'given'


def test_a_lock_from_elsewhere_replaced_after_creation_is_not_seen():
    # The stdlib's wrapper binds acquire/release once; so does ours.
    lock = _CountingLock()
    v = Value('i', 0, lock=lock)
    lock.acquire = lock.release = None
    v.value = 1
    assert lock.acquired == lock.released == 1


def test_a_manager_lock_guards_a_value():
    with multiprocess.Manager() as m:
        lock = m.RLock()
        v = Value('i', 0, lock=lock)
        with v.get_lock():
            v.value += 1
        assert v.value == 1
        assert v.get_lock() is lock


def test_semlock_wrapper_methods_are_the_locks_own():
    lock = multiprocess.RLock()
    v = Value('i', 0, lock=lock)
    assert v.acquire == lock.acquire and v.release == lock.release
    assert v.__enter__() is True
    assert v.__exit__(None, None, None) is None
    assert lock._semlock._count() == 0


def test_value_access_while_another_thread_holds_the_lock_waits_without_the_gil():
    lock = multiprocess.Lock()
    v = Value('i', 0, lock=lock)
    done = threading.Event()

    def write():
        v.value = 5             # blocks until the main thread lets go
        done.set()

    with lock:
        t = threading.Thread(target=write)
        t.start()
        # this thread runs on while the writer waits: the GIL is free
        assert not done.wait(0.3)
        assert v.get_obj().value == 0
    assert done.wait(30)
    t.join(30)
    assert v.value == 5


@contextlib.contextmanager
def _held_elsewhere_with_alarm(lock, on_alarm, after=0.2):
    """`lock` held by another thread, SIGALRM handled by `on_alarm` and
    sent `after` seconds in; yields the event that makes the holder let
    go (set on the way out in any case)."""
    held, finish = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            finish.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(30)
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, after)
        yield finish
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        finish.set()
        t.join(30)


def test_a_signal_handler_raising_ends_a_blocked_access():
    lock = multiprocess.Lock()
    v = Value('i', 0, lock=lock)

    def on_alarm(signum, frame):
        raise TimeoutError('alarm')

    with _held_elsewhere_with_alarm(lock, on_alarm):
        with pytest.raises(TimeoutError):
            v.value = 1
    assert v.value == 0         # never taken, so nothing was written
    assert lock.acquire(False)  # and the lock was not left held
    lock.release()


def test_a_signal_handler_that_returns_lets_the_access_wait_on():
    lock = multiprocess.Lock()
    v = Value('i', 0, lock=lock)
    alarms = []
    finish = None

    def on_alarm(signum, frame):
        alarms.append(signum)
        finish.set()            # the holder lets go after the signal

    with _held_elsewhere_with_alarm(lock, on_alarm) as finish:
        v.value = 7             # interrupted once, then taken
    assert alarms == [signal.SIGALRM]
    assert v.value == 7


def test_releasing_a_default_lock_not_held_raises_assertion_error():
    v = Value('i', 0)
    with pytest.raises(AssertionError):
        v.release()
    assert v.get_lock()._semlock._count() == 0


# -- access semantics equal ctypes' -------------------------------------------

@pytest.mark.parametrize('ctype, samples', [
    (ctypes.c_byte, [0, 127, 128, -129, 2 ** 70 + 3, True]),
    (ctypes.c_ubyte, [0, 255, 256, -1]),
    (ctypes.c_short, [2 ** 15, -2 ** 15 - 1]),
    (ctypes.c_ushort, [-1, 2 ** 16 + 5]),
    (ctypes.c_int, [2 ** 31, -2 ** 31 - 1, 12345]),
    (ctypes.c_uint, [-1, 2 ** 32 + 1]),
    (ctypes.c_long, [2 ** 63, -2 ** 63 - 1]),
    (ctypes.c_ulonglong, [-1, 2 ** 64, 2 ** 64 + 7]),
    (ctypes.c_float, [0.1, 1e39, -3, 2 ** 80]),
    (ctypes.c_double, [0.1, -7, 1e308, float('inf')]),
    (ctypes.c_bool, [0, 1, 2, [], [0], None]),
    (ctypes.c_char, [b'a', 0, 255, bytearray(b'z')]),
])
def test_native_access_matches_ctypes(ctype, samples):
    arr = Array(ctype, 4)
    val = Value(ctype)
    for s in samples:
        ref = ctype()
        ref.value = s
        val.value = s
        assert val.value == ref.value
        arr[2] = s
        assert arr[2] == ref.value
        assert arr[-2] == ref.value


class _Half(float):
    pass


class _Index:
    def __init__(self, n):
        self.n = n

    def __index__(self):
        return self.n


# one-digit ints take a path of their own (no call): the edges of a digit,
# negatives into unsigned fields, and what is not an exact int or float
@pytest.mark.parametrize('ctype', [ctypes.c_byte, ctypes.c_ubyte, ctypes.c_ushort,
                                   ctypes.c_int, ctypes.c_uint, ctypes.c_longlong,
                                   ctypes.c_ulonglong])
def test_small_int_stores_wrap_like_ctypes(ctype):
    samples = [0, 1, -1, -5, 255, 2 ** 15, 2 ** 30 - 1, 2 ** 30, -(2 ** 30) + 1,
               -(2 ** 30), 2 ** 31 - 1, 2 ** 62 - 1, -(2 ** 62), True, False,
               _Index(-3), _Index(2 ** 40)]
    arr, val = Array(ctype, 3), Value(ctype)
    for s in samples:
        ref = ctype()
        ref.value = s
        val.value = s
        arr[1] = s
        assert val.value == ref.value == arr[1], s


@pytest.mark.parametrize('ctype', [ctypes.c_float, ctypes.c_double])
def test_float_stores_take_subclasses_and_ints_like_ctypes(ctype):
    for s in (_Half(0.5), -0.0, float('nan'), 3, 2 ** 70, True):
        ref = ctype()
        ref.value = s
        val = Value(ctype)
        val.value = s
        arr = Array(ctype, 2)
        arr[0] = s
        if s != s:
            assert val.value != val.value and arr[0] != arr[0]
        else:
            assert val.value == ref.value == arr[0]
            assert str(val.value) == str(ref.value)


@pytest.mark.parametrize('ctype, bad', [
    (ctypes.c_int, 1.5), (ctypes.c_int, 'x'), (ctypes.c_double, 'x'),
    (ctypes.c_char, b'ab'), (ctypes.c_char, 256), (ctypes.c_char, 'a')])
def test_native_access_refuses_what_ctypes_refuses(ctype, bad):
    ref = ctype()
    with pytest.raises(TypeError):
        ref.value = bad
    with pytest.raises(TypeError):
        Value(ctype).value = bad
    with pytest.raises(TypeError):
        Array(ctype, 2)[0] = bad


def test_index_errors_and_negative_indices():
    arr = Array('i', [1, 2, 3])
    assert arr[-1] == 3 and arr[-3] == 1
    for i in (3, -4, 2 ** 62):
        with pytest.raises(IndexError):
            arr[i]
        with pytest.raises(IndexError):
            arr[i] = 0
    with pytest.raises(TypeError):
        arr['a']


def test_slices_and_len():
    seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]
    arr = Array('i', seq)
    assert len(arr) == 10
    assert arr[2:7] == seq[2:7]
    assert arr[::3] == seq[::3]
    arr[4:8] = array.array('i', [1, 2, 3, 4])
    seq[4:8] = [1, 2, 3, 4]
    assert arr[:] == seq
    assert list(arr) == seq


def test_numpy_like_index_objects_are_accepted():
    class Idx:
        def __index__(self):
            return 1
    arr = Array('d', [1.0, 2.0])
    assert arr[Idx()] == 2.0
    arr[Idx()] = 5
    assert arr[1] == 5.0


def test_non_plain_element_types_go_through_ctypes():
    class MyInt(ctypes.c_int):
        pass
    arr = Array(MyInt, 2)
    arr[0] = 3
    assert isinstance(arr[0], MyInt) and arr[0].value == 3
    pts = Array(Point, 2)
    pts[1] = Point(1, 2.0, 3)
    assert pts[1].y == 2.0
    assert Value(ctypes.c_void_p).value is None
    assert Value(ctypes.c_wchar, 'x').value == 'x'


def test_string_value_and_raw():
    s = Array('c', 20)
    s.value = b'hello'
    assert s.value == b'hello'
    s.value *= 2
    assert s.value == b'hellohello'
    assert s.raw[:12] == b'hellohello\0\0'
    s.raw = b'x' * 20
    assert s[3] == b'x'
    assert len(s) == 20


def test_copy_is_independent_and_shared():
    foo = Point(2, 5.0, 2 ** 33)
    bar = copy(foo)
    foo.x = foo.y = foo.z = 0
    assert (bar.x, bar.y, bar.z) == (2, 5.0, 2 ** 33)
    assert isinstance(bar._wrapper, heap.BufferWrapper)


def test_repr_names_wrapper_and_object():
    assert repr(Value('i', 3)) == '<Synchronized wrapper for c_int(3)>'
    assert repr(Array('i', 2)).startswith('<SynchronizedArray wrapper for ')


def test_pickling_outside_spawning_is_refused():
    with pytest.raises(RuntimeError):
        pickle.dumps(Value('i'))
    from multiprocess.reduction import ForkingPickler
    with pytest.raises(RuntimeError):
        ForkingPickler.dumps(RawArray('i', 3))


def test_context_factories():
    ctx = multiprocess.get_context('spawn')
    assert ctx.Value('i', 3).value == 3
    assert ctx.Array('i', 2, lock=False)[:] == [0, 0]
    assert ctx.RawValue('d', 1.5).value == 1.5
    assert ctx.RawArray('b', [1, 2])[:] == [1, 2]


# -- across processes -------------------------------------------------------

def _increment(v, times):
    for _ in range(times):
        with v.get_lock():
            v.value += 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize('method', METHODS)
def test_locked_increments_from_four_processes_add_up(method):
    ctx = multiprocess.get_context(method)
    v = ctx.Value('i', 0, lock=True)
    procs = [ctx.Process(target=_increment, args=(v, 10_000))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(150)
    assert [p.exitcode for p in procs] == [0] * 4
    assert v.value == 40_000


def _fill_half(arr, which, n):
    view = memoryview(arr).cast('B').cast('d')
    lo = which * (n // 2)
    hi = n if which else n // 2
    for i in range(lo, hi, 997):
        view[i] = float(i)
    view[hi - 1] = float(hi - 1)


class _FakeSpawningPopen:
    # Enough of a popen for objects pickled "for a child being spawned".
    def duplicate_for_child(self, fd):
        return fd

    class DupFd:
        def __init__(self, fd):
            self.fd = fd


@pytest.mark.timeout(180)
def test_big_raw_array_filled_by_two_spawned_children_without_copying():
    n = 10 ** 7
    arr = RawArray('d', n)
    address = ctypes.addressof(arr)
    # What a child receives is the arena's descriptor and an offset: a few
    # hundred bytes, not 80 MB.
    context.set_spawning_popen(_FakeSpawningPopen())
    try:
        from multiprocess.reduction import ForkingPickler
        payload = bytes(ForkingPickler.dumps(arr))
    finally:
        context.set_spawning_popen(None)
    assert len(payload) < 1024

    ctx = multiprocess.get_context('spawn')
    procs = [ctx.Process(target=_fill_half, args=(arr, k, n))
             for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(150)
    assert [p.exitcode for p in procs] == [0, 0]
    assert ctypes.addressof(arr) == address
    for i in list(range(0, n // 2, 997)) + list(range(n // 2, n, 997)):
        assert arr[i] == float(i)
    assert arr[n // 2 - 1] == n // 2 - 1 and arr[n - 1] == n - 1
    assert arr[1] == 0.0


def _double_all(x, y, foo, arr, string):
    # every kind of wrapper, modified in place by the child
    for scalar in (x, y, string):
        scalar.value = scalar.value * 2
    foo.x, foo.y = foo.x * 2, foo.y * 2
    arr[:] = [item * 2 for item in arr]


@pytest.mark.timeout(180)
@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('lock', [True, False])
def test_children_modify_values_in_place(method, lock):
    ctx = multiprocess.get_context(method)
    x = ctx.Value('i', 7, lock=lock)
    y = ctx.Value(ctypes.c_double, 1.0 / 3.0, lock=lock)
    foo = ctx.Value(Point, 3, 2, lock=lock)
    arr = ctx.Array('d', list(range(10)), lock=lock)
    string = ctx.Array('c', 20, lock=lock)
    string.value = b'hello'
    p = ctx.Process(target=_double_all, args=(x, y, foo, arr, string))
    p.start()
    p.join(150)
    assert p.exitcode == 0
    assert x.value == 14
    assert y.value == pytest.approx(2.0 / 3.0)
    assert (foo.x, foo.y) == (6, 4.0)
    assert arr[:] == [2.0 * i for i in range(10)]
    assert string.value == b'hellohello'


def _hold_lock_then_set(v, started):
    with v.get_lock():
        started.set()
        time.sleep(0.5)
        v.value = 1


@pytest.mark.timeout(120)
def test_value_read_waits_for_a_lock_held_in_another_process():
    ctx = multiprocess.get_context('fork')
    v = ctx.Value('i', 0)
    started = ctx.Event()
    p = ctx.Process(target=_hold_lock_then_set, args=(v, started))
    p.start()
    assert started.wait(30)
    assert v.value == 1     # blocked until the child let go
    p.join(30)
    assert p.exitcode == 0
