"""_multiprocess.loads: pickle.loads, with pickles of plain data read by a
small C machine (plainunpickle.c) first.

What must hold: for any input at all, loads(data) does what
pickle.loads(data) does -- the same objects, with the same sharing and
cycles and no stray references, or the same exception type.  Pickles of
plain data (from dumps_plain or from the C pickler, protocols 2 to 5) are
read in C; everything else, malformed data included, goes to pickle.loads
untouched.
"""
import gc
import io
import pickle
import pickletools
import random
import sys
import tracemalloc

import pytest

import _multiprocess as native
from multiprocess.reduction import ForkingPickler

from .test_plain_pickle import INTS, _random_plain, shape

NOT_PLAIN = object()


def outcome(load, data):
    try:
        return ("ok", shape(load(data)))
    except Exception as exc:
        return ("raised", type(exc))


def refcounts(obj):
    """sys.getrefcount of every container, str and bytes in obj, in walk
    order: a reference too many or too few shows up as a difference."""
    seen, counts = set(), []

    def walk(o):
        if type(o) not in (list, dict, tuple, str, bytes) or id(o) in seen:
            return
        seen.add(id(o))
        counts.append(sys.getrefcount(o))
        items = o.items() if type(o) is dict else (
            o if type(o) in (list, tuple) else ())
        for x in items:
            if type(o) is dict:
                walk(x[0])
                walk(x[1])
            else:
                walk(x)
    walk(obj)
    return counts


def read_in_c(data):
    """The C machine's reading, which must exist."""
    got = native._test_loads_plain(data, NOT_PLAIN)
    assert got is not NOT_PLAIN, "expected a plain pickle"
    return got


def same_as_pickle(data):
    ours = read_in_c(data)
    theirs = pickle.loads(data)
    assert shape(ours) == shape(theirs)
    # (the interpreter's shared objects, the empty tuple and one-character
    # strings, have counts of their own)
    assert [(a, b) for a, b in zip(refcounts(ours), refcounts(theirs))
            if a != b and max(a, b) < 10**8] == []
    return ours


# ------------------------------------------------------------ plain data

@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_scalars(protocol):
    values = INTS + [0.0, -0.0, 1.5, float("inf"), float("nan"), 1e-310,
                     None, "", "a", "é中😀", "\ud800", b"", b"\x00\xff"]
    for v in values:
        same_as_pickle(pickle.dumps(v, protocol))
    same_as_pickle(pickle.dumps(values, protocol))
    same_as_pickle(native.dumps_plain(values, 5))


def test_protocol_2_reads_what_it_can():
    same_as_pickle(pickle.dumps([1, "a", (None, 2.5), {"k": []}], 2))
    # protocol 2 writes bytes through a global (codecs.encode): not plain
    data = pickle.dumps([b"x"], 2)
    assert native._test_loads_plain(data, NOT_PLAIN) is NOT_PLAIN
    assert native.loads(data) == [b"x"]


@pytest.mark.parametrize("n", [0, 1, 255, 256, 70000])
def test_strings_and_bytes_across_length_forms(n):
    for obj in ("x" * n, "é" * n, b"y" * n):
        same_as_pickle(pickle.dumps(obj, 5))
        same_as_pickle(native.dumps_plain(obj, 5))


def test_eight_byte_length_forms():
    # BINUNICODE8 / BINBYTES8: what protocol 4 uses past 4 GiB, written
    # here by hand for short payloads
    def frame8(op, payload):
        return (b"\x80\x04" + op + len(payload).to_bytes(8, "little")
                + payload + b".")
    assert read_in_c(frame8(b"\x8d", "é".encode())) == "é"
    assert read_in_c(frame8(b"\x8e", b"abc")) == b"abc"


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 999, 1000, 1001, 2001, 100000])
def test_containers_across_batch_sizes(n):
    for obj in (list(range(n)), tuple(range(n)),
                {i: str(i) for i in range(n)}, [[i] for i in range(n)]):
        same_as_pickle(pickle.dumps(obj, 4))
        same_as_pickle(native.dumps_plain(obj, 5))


def test_long_lists_hold_no_spare_room():
    # storage reserved ahead for a long list is given back at the end
    for n in (1000, 1001, 5000, 100000):
        for data in (pickle.dumps(list(range(n)), 4),
                     native.dumps_plain([[i, -i] for i in range(n)], 5)):
            ours = read_in_c(data)
            assert sys.getsizeof(ours) <= sys.getsizeof(pickle.loads(data))
            assert sys.getsizeof(ours) <= sys.getsizeof(list(ours))
    # and many long lists in one message are all right
    many = [list(range(1500)) for _ in range(20)]
    assert same_as_pickle(pickle.dumps(many, 4)) == many


def test_sharing_and_cycles():
    s = "shared string"
    inner = [1, 2]
    lst = [s, s, inner, inner, (inner, s)]
    lst.append(lst)
    d = {"self": None, "t": (s,)}
    d["self"] = d
    t = ([],)
    t[0].append(t)              # the pickler writes POP / POP_MARK here
    wide = [([],) for _ in range(3)]
    for x in wide:
        x[0].append(x)
    for obj in (lst, d, t, wide):
        for protocol in (2, 3, 4, 5):
            same_as_pickle(pickle.dumps(obj, protocol))
    got = same_as_pickle(pickle.dumps(lst, 4))
    assert got[-1] is got and got[0] is got[1] and got[2] is got[3]
    got = same_as_pickle(pickle.dumps(t, 4))
    assert got[0][0] is got


def test_many_memo_entries():
    strings = ["s%d" % i for i in range(600)]
    obj = strings + strings         # references past index 255
    for protocol in (3, 4, 5):      # BINPUT/LONG_BINPUT, then MEMOIZE
        same_as_pickle(pickle.dumps(obj, protocol))


def test_random_graphs_match_pickle():
    rng = random.Random(20261122)
    for _ in range(300):
        obj = _random_plain(rng)
        same_as_pickle(pickle.dumps(obj, rng.choice([3, 4, 5])))
        same_as_pickle(native.dumps_plain(obj, rng.choice([4, 5])))


def test_deep_nesting_is_read_without_recursion():
    # (too deep for the pickler: written by hand, each APPEND puts a list
    # into the one below it)
    data = b"\x80\x04" + b"]" * 100001 + b"a" * 100000 + b"."
    pickle.loads(data)
    got = read_in_c(data)
    depth = 0
    while got:
        got = got[0]
        depth += 1
    assert depth == 100000


# ---------------------------------------------------------- everything else

class Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return type(other) is Point and other.x == self.x


@pytest.mark.parametrize("obj", [
    {1, 2}, frozenset([1]), bytearray(b"ab"), 2**64, -2**70, Point(3),
    [1, 2, Point(4)], {"a": [1, {2}]}, complex(1, 2), range(3),
], ids=repr)
def test_anything_else_goes_to_pickle(obj):
    for protocol in (2, 3, 4, 5):
        data = pickle.dumps(obj, protocol)
        assert native._test_loads_plain(data, NOT_PLAIN) is NOT_PLAIN
        assert native.loads(data) == obj
        assert ForkingPickler.loads(data) == obj


@pytest.mark.parametrize("protocol", [0, 1])
def test_text_protocols_go_to_pickle(protocol):
    obj = [1, "a", (2.5, None), {"k": b"v"}]
    data = pickle.dumps(obj, protocol)
    assert native._test_loads_plain(data, NOT_PLAIN) is NOT_PLAIN
    assert native.loads(data) == obj


def test_out_of_band_buffers_go_to_pickle():
    buf = pickle.PickleBuffer(bytearray(b"payload"))
    bufs = []
    data = pickle.dumps([buf], 5, buffer_callback=bufs.append)
    assert native._test_loads_plain(data, NOT_PLAIN) is NOT_PLAIN
    got = native.loads(data, buffers=bufs)
    assert bytes(got[0]) == b"payload"
    with pytest.raises(pickle.UnpicklingError):
        native.loads(data)          # as pickle: buffers are needed


def test_keyword_arguments_are_pickles():
    data = pickle.dumps([1, "a"], 4)
    assert native.loads(data, encoding="latin1", errors="strict",
                        fix_imports=False) == [1, "a"]
    with pytest.raises(TypeError):
        native.loads(data, nonsense=1)
    with pytest.raises(TypeError):
        native.loads()
    with pytest.raises(TypeError):
        native.loads("not bytes")
    with pytest.raises(TypeError):
        native._test_loads_plain(data)


def test_any_buffer_is_read():
    obj = {"a": [1, 2.5, "x"]}
    data = pickle.dumps(obj, 5)
    for form in (bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        assert read_in_c(form) == obj
        assert native.loads(form) == obj
    # a buffer that is not contiguous: pickle.loads says what it says
    odd = memoryview(data * 2)[::2]
    assert outcome(native.loads, odd) == outcome(pickle.loads, odd)


def test_trailing_bytes_are_ignored_as_by_pickle():
    data = pickle.dumps([1, 2], 4) + b"garbage"
    assert read_in_c(data) == pickle.loads(data) == [1, 2]


# ------------------------------------------------------------ malformed data

SAMPLE = [1, -70000, 2**40, 2.5, "text", "é", b"raw", None, True,
          (1, 2), (1, 2, 3, 4), {"k": [1, 2]}, [], ()]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_truncation_fails_as_pickle_does(protocol):
    data = pickle.dumps(SAMPLE + [SAMPLE[4]], protocol)
    for cut in range(len(data)):
        assert (outcome(native.loads, data[:cut])
                == outcome(pickle.loads, data[:cut])), cut


def test_crafted_streams_fail_as_pickle_does():
    cases = [
        b"", b".", b"\x80\x06N.", b"\x80\x04N", b"N0.", b"(N.", b"NN.",
        b"(t.", b"\x85.", b"N\x86.", b"]Na0.", b"}N.s", b"}(Nu.", b"(Na.",
        b"(e.", b"(Ne.", b"N(e.", b"}(NNNu.", b"}(]Nu.", b"](]]e0.",
        b"h\x00.", b"N\x94h\x01.", b"j\xff\xff\xff\xff.", b"\x94.",
        b"Nq\x05h\x05.", b"Nr\xff\xff\xff\x7fh\x00.", b"(\x94.", b"1.",
        b"(1.", b"X\x02\x00\x00\x00\xff\xfe.", b"\x8c\x01\x80.",
        b"\x8a\x09" + b"\x00" * 9 + b".", b"\x8a\x00.", b"\x8a\x01\xff.",
        b"\x95\xff\x00\x00\x00\x00\x00\x00\x00N.",
        b"\x95\x02\x00\x00\x00\x00\x00\x00\x00N.",
        b"\x8d\xff\xff\xff\xff\xff\xff\xff\xffN.", b"GN.",
        b"}N]s.",                   # an unhashable key
        b"]N\x94NNs.",              # SETITEM on a list: pickle's call
        b"}N\x94Na.",               # APPEND on a dict
    ]
    for data in cases:
        assert outcome(native.loads, data) == outcome(pickle.loads, data), data


def _sets_a_far_memo_slot(data):
    # pickle.loads sizes its memo to a PUT's index: an index of 10**8
    # made by chance costs it seconds and gigabytes (ours gives such a
    # stream to pickle.loads as well)
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("BINPUT", "LONG_BINPUT") and arg > 10**5:
                return True
    except Exception:
        pass
    return False


# (pickle's old text opcodes, made by chance, warn about their escapes;
# and pickle itself leaves an odd bytearray behind now and then)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("writer", ["pickle3", "pickle4", "dumps_plain"])
def test_random_corruption_fails_or_succeeds_as_pickle_does(writer):
    rng = random.Random(writer)
    obj = SAMPLE * 3 + [list(range(1100))]
    data = (native.dumps_plain(obj, 5) if writer == "dumps_plain"
            else pickle.dumps(obj, int(writer[-1])))
    tried = 0
    while tried < 4000:
        bad = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        bad = bytes(bad)
        if _sets_a_far_memo_slot(bad):
            continue
        tried += 1
        assert outcome(native.loads, bad) == outcome(pickle.loads, bad), bad


def test_giving_up_leaks_nothing():
    # a long plain prefix, then something that is not plain
    data = pickle.dumps([list(range(5000)), {"x": "y" * 100}, {1, 2}], 4)
    assert native._test_loads_plain(data, NOT_PLAIN) is NOT_PLAIN
    broken = pickle.dumps([list(range(5000)), "z" * 100], 4)[:-30]
    for _ in range(3):          # warm up
        native._test_loads_plain(data, None)
        native._test_loads_plain(broken, None)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            native._test_loads_plain(data, None)
            native._test_loads_plain(broken, None)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown


# ------------------------------------------------------------- where it is used

def test_forking_pickler_loads_is_it():
    assert ForkingPickler.loads is native.loads
    obj = {"a": [1, (2, "b")]}
    assert ForkingPickler.loads(ForkingPickler.dumps(obj)) == obj


def test_connection_recv_reads_any_sender():
    from multiprocess import Pipe
    a, b = Pipe()
    with a, b:
        for protocol in (2, 3, 4, 5):
            for obj in ([1, "x", {"k": (None, 2.5)}], {1, 2}, Point(5)):
                a.send_bytes(pickle.dumps(obj, protocol))
                assert b.recv() == obj
        b.send([1, 2, 3])
        assert pickle.loads(a.recv_bytes()) == [1, 2, 3]
