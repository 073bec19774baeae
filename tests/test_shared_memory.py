"""multiprocess.shared_memory: SharedMemory and ShareableList, their
resource tracking, and interoperability with the standard library's."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocess
from multiprocess import resource_tracker, shared_memory
from multiprocess.shared_memory import ShareableList, SharedMemory
from .conftest import START_METHODS

METHODS = START_METHODS

# A safety net; tests that start processes also carry their own.
pytestmark = pytest.mark.timeout(180)


def segment_exists(name):
    return os.path.exists('/dev/shm/' + name.lstrip('/'))


@pytest.fixture
def shm():
    segments = []

    def make(*args, **kwargs):
        s = SharedMemory(*args, **kwargs)
        segments.append(s)
        return s
    yield make
    for s in segments:
        s.close()
        try:
            s.unlink()
        except FileNotFoundError:
            pass


# -- SharedMemory --------------------------------------------------------------

def test_create_attach_and_write_through(shm):
    a = shm(create=True, size=512)
    assert a.size >= 512 and len(a.buf) == a.size
    assert not a.name.startswith('/') and a._name == '/' + a.name
    assert segment_exists(a.name)
    a.buf[:5] = b'hello'
    b = SharedMemory(a.name)
    assert bytes(b.buf[:5]) == b'hello'
    b.buf[0] = ord('j')
    assert bytes(a.buf[:5]) == b'jello'
    b.close()


def test_attach_ignores_requested_size(shm):
    a = shm(create=True, size=100)
    b = SharedMemory(a.name, size=10_000)
    assert b.size == a.size
    b.close()


def test_named_creation_and_repr(shm):
    name = 'mp_test_%d' % os.getpid()
    a = shm(name, create=True, size=64)
    assert a.name == name
    assert repr(a) == "SharedMemory(%r, size=%d)" % (name, a.size)
    with pytest.raises(FileExistsError):
        SharedMemory(name, create=True, size=64)


def test_missing_name_raises_file_not_found():
    with pytest.raises(FileNotFoundError):
        SharedMemory(name='x', create=False)
    with pytest.raises(FileNotFoundError):
        SharedMemory('mp_test_surely_not_there_%d' % os.getpid())


@pytest.mark.parametrize('size', [0, -1, -4096])
def test_non_positive_size_raises_value_error(size):
    with pytest.raises(ValueError):
        SharedMemory(create=True, size=size)


def test_no_size_or_no_name_raises_value_error():
    with pytest.raises(ValueError):
        SharedMemory(create=True)
    with pytest.raises(ValueError):
        SharedMemory()


def test_random_names_retry_on_collision(shm, monkeypatch):
    taken = shm(create=True, size=8)
    fresh = shared_memory._SHM_NAME_PREFIX + 'fresh%d' % os.getpid()
    names = iter([taken._name, fresh])
    monkeypatch.setattr(shared_memory, '_make_filename', lambda: next(names))
    s = shm(create=True, size=8)
    assert s._name == fresh


def test_unlink_twice_raises_and_close_is_idempotent():
    s = SharedMemory(create=True, size=16)
    s.close()
    s.close()
    s.unlink()
    assert not segment_exists(s.name)
    with pytest.raises(FileNotFoundError):
        s.unlink()


def test_subclass_flags_allow_attach_or_create(shm):
    a = shm(create=True, size=64)

    class AttachOrCreate(SharedMemory):
        _flags = os.O_CREAT | os.O_RDWR
    b = AttachOrCreate(a.name)
    assert b.size == a.size
    b.close()


def test_pickle_attaches_by_name(shm):
    a = shm(create=True, size=32)
    a.buf[:3] = b'abc'
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        b = pickle.loads(pickle.dumps(a, proto))
        assert b.name == a.name and bytes(b.buf[:3]) == b'abc'
        b.buf[:3] = b'xyz'
        assert bytes(a.buf[:3]) == b'xyz'
        a.buf[:3] = b'abc'
        b.close()


def test_pickle_of_unlinked_segment_fails_to_load():
    a = SharedMemory(create=True, size=32)
    blob = pickle.dumps(a)
    a.close()
    a.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(blob)


def test_interoperates_with_the_standard_library(shm):
    from multiprocessing import shared_memory as std
    a = shm(create=True, size=64)
    a.buf[:2] = b'ok'
    b = std.SharedMemory(a.name)
    assert bytes(b.buf[:2]) == b'ok'
    b.close()


def _write(target, data):
    s = SharedMemory(target) if isinstance(target, str) else target
    s.buf[:len(data)] = data
    s.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_children_attach_by_name_and_by_object(shm, method):
    ctx = multiprocess.get_context(method)
    a = shm(create=True, size=64)
    for target, data in ((a.name, b'howdy'), (a, b'HELLO')):
        p = ctx.Process(target=_write, args=(target, data))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert bytes(a.buf[:5]) == data


# -- resource tracking ------------------------------------------------------

def _run_python(code, **kwargs):
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kwargs)


@pytest.mark.timeout(90)
def test_segment_of_a_killed_program_is_removed_by_its_tracker():
    proc = _run_python('''
        import sys, time
        from multiprocess import shared_memory
        s = shared_memory.SharedMemory(create=True, size=4096)
        print(s.name, flush=True)
        time.sleep(60)
    ''')
    try:
        name = proc.stdout.readline().decode().strip()
        assert name and segment_exists(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 60
        while segment_exists(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not segment_exists(name)
        # the tracker, which shares stderr, reports what it cleaned
        _, err = proc.communicate(timeout=30)
        assert b'leaked shared_memory' in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(90)
def test_program_that_cleans_up_gets_no_warnings():
    proc = _run_python('''
        from multiprocess import shared_memory
        s = shared_memory.SharedMemory(create=True, size=4096)
        l = shared_memory.ShareableList([1, 'two', b'three', None])
        print(s.name, l.shm.name, flush=True)
        s.close(); s.unlink()
        l.shm.close(); l.shm.unlink()
    ''')
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == b''
    for name in out.split():
        assert not segment_exists(name.decode())


@pytest.fixture
def tracker_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(resource_tracker, 'register',
                        lambda name, rtype: calls.append(('reg', name, rtype)))
    monkeypatch.setattr(resource_tracker, 'unregister',
                        lambda name, rtype: calls.append(('unreg', name, rtype)))
    return calls


def test_creator_registers_and_unlink_unregisters(tracker_calls):
    s = SharedMemory(create=True, size=8)
    b = SharedMemory(s.name)
    b.close()
    s.close()
    s.unlink()
    reg = ('reg', s._name, 'shared_memory')
    unreg = ('unreg', s._name, 'shared_memory')
    if sys.version_info >= (3, 13):
        # 3.13's track=True: whoever attaches registers too
        assert tracker_calls == [reg, reg, unreg]
    else:
        # before 3.13 attaching does not register (bpo-38119)
        assert tracker_calls == [reg, unreg]


def test_track_false_keeps_the_tracker_out(tracker_calls):
    s = SharedMemory(create=True, size=8, track=False)
    try:
        b = SharedMemory(s.name, track=False)
        b.close()
    finally:
        s.close()
        s.unlink()
    assert tracker_calls == []


def test_track_is_keyword_only():
    with pytest.raises(TypeError):
        SharedMemory(None, True, 8, False)


def test_untracked_segment_outlives_its_program():
    name = subprocess.run(
        [sys.executable, '-c',
         'from multiprocess.shared_memory import SharedMemory\n'
         's = SharedMemory(create=True, size=16, track=False)\n'
         's.buf[:2] = b"ok"\n'
         'print(s.name)\n'
         's.close()\n'],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    s = SharedMemory(name, track=False)
    try:
        assert bytes(s.buf[:2]) == b'ok'
    finally:
        s.close()
        s.unlink()


def test_name_with_embedded_nul_is_refused():
    s = SharedMemory(create=True, size=8)
    try:
        # cut at the NUL it would name the segment above
        with pytest.raises(ValueError, match='null'):
            SharedMemory(s.name + '\0x')
        real = s._name
        s._name = real + '\0x'
        try:
            with pytest.raises(ValueError, match='null'):
                s.unlink()
        finally:
            s._name = real
    finally:
        s.close()
        s.unlink()


# -- ShareableList --------------------------------------------------------------

@pytest.fixture
def slist():
    lists = []

    def make(*args, **kwargs):
        sl = ShareableList(*args, **kwargs)
        lists.append(sl)
        return sl
    yield make
    for sl in lists:
        sl.shm.close()
        try:
            sl.shm.unlink()
        except FileNotFoundError:
            pass


def test_shareable_list_holds_every_type(slist):
    items = ['howdy', b'HoWdY', -273.154, 100, None, True, 42]
    sl = slist(items)
    assert list(sl) == items and len(sl) == 7
    assert sl.format == '8s8sdqxxxxxx?xxxxxxxx?q'
    assert sl[-2] is True and sl[4] is None
    assert sl.count(42) == 1 and sl.index(100) == 3
    with pytest.raises(ValueError):
        sl.index('100')
    assert sl.shm.name in repr(sl) and str(items) in repr(sl)


def test_shareable_list_assignment_rules(slist):
    sl = slist(['howdy', b'HoWdY', 1.5, 100, None, True, 42])
    sl[3] = 42
    sl[4] = 'some'                      # type change within the slot
    assert sl[4] == 'some'
    assert sl.format == '8s8sdq8sxxxxxxx?q'
    with pytest.raises(ValueError, match='exceeds available storage'):
        sl[4] = 'far too many'
    sl[0] = 'encodés'                   # exactly 8 bytes of UTF-8
    assert sl[0] == 'encodés' and sl[1] == b'HoWdY'
    with pytest.raises(ValueError, match='exceeds available storage'):
        sl[0] = 'encodées'
    sl[2] = None
    assert sl[2] is None
    sl[2] = -7
    assert sl[2] == -7
    assert sl.count(42) == 2
    with pytest.raises(IndexError):
        sl[7]
    with pytest.raises(IndexError):
        sl[7] = 1
    with pytest.raises(IndexError):
        sl[-8]


def test_shareable_list_strings_never_overflow_their_slot(slist):
    sl = slist(['éééééé'])             # 6 characters, 12 bytes
    assert sl[0] == 'éééééé'


def test_shareable_list_empty_copy_and_attach(slist):
    empty = slist()
    assert len(empty) == 0 and empty.format == '' and list(empty) == []
    assert empty.count('any') == 0
    with pytest.raises(ValueError):
        empty.index(None)
    sl = slist(range(5))
    dup = slist(sl, name='mp_sl_%d' % os.getpid())
    assert dup.shm.name == 'mp_sl_%d' % os.getpid()
    assert list(dup) == list(sl) and dup.format == sl.format
    dup[0] = 99
    assert sl[0] == 0
    other = ShareableList(name=sl.shm.name)
    other[-1] = 880
    assert sl[-1] == 880
    other.shm.close()


def test_shareable_list_pickles_as_its_name(slist):
    sl = slist(range(10))
    big = slist(range(400))
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        blob = pickle.dumps(sl, proto)
        assert len(blob) == len(pickle.dumps(big, proto))
        copy = pickle.loads(blob)
        copy[4] = 'changed'
        assert sl[4] == 'changed'
        copy.shm.close()
    blob = pickle.dumps(sl)
    sl.shm.close()
    sl.shm.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(blob)


def test_shareable_list_layout_is_the_standard_librarys(slist):
    from multiprocessing import shared_memory as std
    sl = slist(['a', b'b', 1.0, 2, None, False])
    theirs = std.ShareableList(name=sl.shm.name)
    assert list(theirs) == list(sl) and theirs.format == sl.format
    theirs[0] = 'zz'
    assert sl[0] == 'zz'
    theirs.shm.close()
    made_by_them = std.ShareableList([1, 'x', None])
    try:
        ours = ShareableList(name=made_by_them.shm.name)
        assert list(ours) == [1, 'x', None]
        ours.shm.close()
    finally:
        made_by_them.shm.close()
        made_by_them.shm.unlink()


def test_shareable_list_is_generic():
    assert ShareableList[int].__origin__ is ShareableList


def _bump_list(sl):
    sl[0] += 1
    sl[1] = 'child'


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_shareable_list_across_processes(slist, method):
    ctx = multiprocess.get_context(method)
    sl = slist([1, 'parent'])
    p = ctx.Process(target=_bump_list, args=(sl,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert list(sl) == [2, 'child']
