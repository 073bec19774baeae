"""_multiprocess.dumps_plain: plain data pickled in one C pass.

What must hold: for every graph of exact None/bool/int/float/str/bytes/
list/tuple/dict, pickle.loads of its output equals pickle.loads of the C
pickler's output, with the same sharing and cycles; for anything else it
returns None and ForkingPickler.dumps falls back to the general pickler,
so nothing a user sends changes meaning.
"""
import collections
import io
import math
import pickle
import pickletools
import random
import sys

import pytest

import _multiprocess as native
from multiprocess.reduction import ForkingPickler


def shape(obj):
    """A canonical picture of obj: values, types and which containers and
    strings are the same object (by order of first appearance)."""
    seen = {}

    def walk(o):
        key = id(o)
        if type(o) in (list, dict, tuple, str, bytes) and key in seen:
            return ("ref", seen[key])
        if type(o) in (list, dict, tuple, str, bytes):
            seen[key] = len(seen)
        if type(o) is list:
            return ("list", [walk(x) for x in o])
        if type(o) is tuple:
            return ("tuple", tuple(walk(x) for x in o))
        if type(o) is dict:
            return ("dict", [(walk(k), walk(v)) for k, v in o.items()])
        if type(o) is float:
            return ("float", o.hex() if not math.isnan(o) else "nan",
                    math.copysign(1.0, o))
        return (type(o).__name__, o)
    return walk(obj)


def same_as_pickle(obj, protocol=4):
    data = native.dumps_plain(obj, protocol)
    assert data is not None, "expected plain data"
    assert data[:2] == bytes([0x80, protocol])
    pickletools.dis(data, out=io.StringIO())   # a well-formed stream
    ours = pickle.loads(data)
    theirs = pickle.loads(pickle.dumps(obj, protocol))
    assert shape(ours) == shape(theirs)
    return ours


INTS = [0, 1, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**40,
        2**63 - 1, -1, -255, -256, -2**31, -2**31 - 1, -2**39, -2**63,
        True, False]


@pytest.mark.parametrize("protocol", [4, 5])
def test_scalars(protocol):
    values = INTS + [None, 0.0, -0.0, 1.5, -2.25e300, float("inf"),
                     float("-inf"), float("nan"), 5e-324]
    loaded = same_as_pickle(values, protocol)
    for a, b in zip(loaded, values):
        assert type(a) is type(b)
    assert same_as_pickle(7, protocol) == 7
    assert same_as_pickle(None, protocol) is None


@pytest.mark.parametrize("n", [0, 1, 255, 256, 70000])
def test_strings_and_bytes_across_length_forms(n):
    ascii_ = "a" * n
    wide = ("\u00e9\u4e2d\U0001f600" * n)[:n]
    obj = [ascii_, wide, b"\x00\xff" * (n // 2), "\ud800 lone", "x\udfff"]
    assert same_as_pickle(obj) == obj


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 999, 1000, 1001, 2001, 5000])
def test_containers_across_batch_sizes(n):
    obj = {
        "list": list(range(n)),
        "tuple": tuple(range(n)),
        "dict": {i: str(i) for i in range(n)},
        "nested": [[i, (i,), {"k": i}] for i in range(min(n, 50))],
    }
    assert same_as_pickle(obj) == obj


def test_sharing_and_cycles_are_kept():
    shared_list, shared_dict, shared_tuple = [1, 2], {"a": 1}, (3, [4])
    text = "shared" * 3
    loop = []
    loop.append(loop)
    selfish = {}
    selfish["me"] = selfish
    obj = [shared_list, shared_list, shared_dict, shared_dict, shared_tuple,
           shared_tuple, text, text, loop, selfish]
    out = same_as_pickle(obj)
    assert out[0] is out[1] and out[2] is out[3] and out[4] is out[5]
    assert out[6] is out[7]
    assert out[8][0] is out[8]
    assert out[9]["me"] is out[9]


def test_many_memo_entries_use_long_references():
    strings = ["s%d" % i for i in range(700)]
    obj = [strings, list(reversed(strings))]
    out = same_as_pickle(obj)
    assert out[1][0] is out[0][-1]


@pytest.mark.parametrize("obj", [
    [1, 2**64], [-2**63 - 1], {1, 2}, frozenset(), bytearray(b"x"),
    [collections.OrderedDict()], [object()], (1, 2.5j), [range(3)],
    {"k": type}, [print],
], ids=repr)
def test_anything_else_is_not_plain(obj):
    assert native.dumps_plain(obj, 4) is None


class MyInt(int):
    pass


class MyStr(str):
    pass


class MyList(list):
    pass


class MyDict(dict):
    pass


@pytest.mark.parametrize("cls, value", [
    (MyInt, 3), (MyStr, "s"), (MyList, [1]), (MyDict, {1: 2})])
def test_subclasses_are_not_plain(cls, value):
    assert native.dumps_plain([cls(value)], 4) is None
    loaded = pickle.loads(ForkingPickler.dumps([cls(value)]))
    assert type(loaded[0]) is cls


def test_a_tuple_inside_its_own_cycle_falls_back():
    t = ([],)
    t[0].append(t)
    assert native.dumps_plain(t, 4) is None
    back = pickle.loads(ForkingPickler.dumps(t))
    assert back[0][0] is back


def test_deep_nesting_falls_back():
    deep = []
    for _ in range(300):
        deep = [deep]
    assert native.dumps_plain(deep, 4) is None
    assert pickle.loads(ForkingPickler.dumps(deep)) == deep


def test_unencodable_text_is_impossible_but_surrogates_pass():
    # every str encodes with surrogatepass; lone surrogates round-trip
    obj = ["\udc80", "\ud83d\ude00"]
    assert same_as_pickle(obj) == obj


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, -1, 6])
def test_other_protocols_are_left_to_pickle(protocol):
    assert native.dumps_plain([1, "a"], protocol) is None


def test_bad_arguments():
    with pytest.raises(TypeError):
        native.dumps_plain([1])
    with pytest.raises(TypeError):
        native.dumps_plain([1], "4")


def _random_plain(rng, depth=0, pool=None):
    pool = pool if pool is not None else []
    choice = rng.random()
    if pool and choice < 0.1:
        return rng.choice(pool)
    if depth > 4 or choice < 0.5:
        return rng.choice([
            lambda: rng.randint(-2**63, 2**63 - 1),
            lambda: rng.randint(-300, 70000),
            lambda: rng.random() * 10 ** rng.randint(-300, 300),
            lambda: "".join(chr(rng.choice([97, 233, 0x4e2d, 0x1f600]))
                            for _ in range(rng.randint(0, 300))),
            lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))),
            lambda: rng.choice([None, True, False]),
        ])()
    n = rng.randint(0, 6)
    kind = rng.choice(["list", "tuple", "dict"])
    if kind == "list":
        made = [_random_plain(rng, depth + 1, pool) for _ in range(n)]
    elif kind == "tuple":
        made = tuple(_random_plain(rng, depth + 1, pool) for _ in range(n))
    else:
        made = {rng.choice([rng.randint(0, 99), "k%d" % rng.randint(0, 99)]):
                _random_plain(rng, depth + 1, pool) for _ in range(n)}
    pool.append(made)
    return made


def test_random_graphs_match_pickle():
    rng = random.Random(20261122)
    for _ in range(400):
        obj = _random_plain(rng)
        same_as_pickle(obj, rng.choice([4, 5]))


def test_forking_pickler_dumps_uses_it_and_keeps_its_contract():
    obj = {"a": [1, 2.5, "x", b"y", None, (True,)]}
    data = ForkingPickler.dumps(obj)
    assert isinstance(data, memoryview)
    assert bytes(data) == native.dumps_plain(obj, pickle.DEFAULT_PROTOCOL)
    assert ForkingPickler.loads(data) == obj
    # the protocol argument is honoured, here by the general pickler
    assert bytes(ForkingPickler.dumps(obj, 2))[:2] == b"\x80\x02"


def test_a_subclass_of_forking_pickler_is_not_bypassed():
    seen = []

    class Tracing(ForkingPickler):
        def persistent_id(self, obj):
            seen.append(obj)
            return None
    Tracing.dumps([1, "a"])
    assert [1, "a"] in seen


def test_dill_protocol_setting_is_honoured():
    dill = pytest.importorskip("dill")
    old = dill.settings.get("protocol")
    dill.settings["protocol"] = 3
    try:
        assert bytes(ForkingPickler.dumps([1, "a"]))[:2] == b"\x80\x03"
    finally:
        dill.settings["protocol"] = old


def test_connection_send_writes_plain_data_the_same_way():
    from multiprocess import Pipe
    a, b = Pipe()
    with a, b:
        obj = {"id": 7, "values": [1, 2, 3], "ok": True, "name": "small"}
        a.send(obj)
        assert b.recv_bytes() == native.dumps_plain(obj, pickle.DEFAULT_PROTOCOL)
        a.send(obj)
        assert b.recv() == obj
        odd = [collections.OrderedDict(a=1), {1, 2}]
        a.send(odd)                      # the general pickler's turn
        assert b.recv() == odd


def test_a_large_output_buffer_is_reused_only_when_nobody_holds_it():
    a = list(range(100000))
    b = list(range(100000))
    b[5000] = 5001                      # another pickle of the same length
    first = native.dumps_plain(a, 5)
    assert len(first) == len(native.dumps_plain(b, 5))
    held = native.dumps_plain(a, 5)     # `first` is held: a new buffer
    assert held is not first and held == first
    del held
    h = hash(first)                     # cached in the object
    first_id = id(first)
    del first
    again = native.dumps_plain(b, 5)    # may be written over the old one
    assert pickle.loads(again) == b
    assert hash(again) == hash(bytes(again))    # no stale cached hash
    assert id(again) != first_id or hash(again) != h
    # results kept by the caller are never written over
    results = [native.dumps_plain(x, 5) for x in (a, b, a)]
    assert [pickle.loads(r) for r in results] == [a, b, a]
