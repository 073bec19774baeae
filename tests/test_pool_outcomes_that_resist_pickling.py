"""Outcomes that fight being sent back still reach the caller (pool/_errors.py,
pool/_wire.py).

An exception whose __str__ and __repr__ raise comes back as itself, as
with the standard library, and the worker lives on.  A result that cannot
travel -- nested deeper than any pickler goes, or unpicklable with a broken
__repr__ -- raises MaybeEncodingError in the caller (docs/pool.md), never
RecursionError or the repr's error.  An argument nested too deep raises the
pickling error itself from get(), as the standard library does.
"""
import os

import pytest

import multiprocess
from multiprocess.pool import MaybeEncodingError

DEPTH = 200_000


class BadStr(Exception):
    def __str__(self):
        raise ValueError("no str")

    def __repr__(self):
        raise ValueError("no repr")


class Unsendable:
    def __reduce__(self):
        raise TypeError("not for sending")

    def __repr__(self):
        raise ValueError("no repr")


def raise_bad_str(x):
    raise BadStr(x)


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def deep_result(x):
    return nested(DEPTH)


def unsendable_result(x):
    return Unsendable()


def identity(x):
    return x


def pid(x=None):
    return os.getpid()


def _calls(pool, func, arg):
    """The ways a caller gets an outcome, each as a thunk."""
    return {
        "apply": lambda: pool.apply(func, (arg,)),
        "apply_async": lambda: pool.apply_async(func, (arg,)).get(60),
        "map": lambda: pool.map(func, [arg]),
        "starmap": lambda: pool.starmap(func, [(arg,)]),
        "imap": lambda: list(pool.imap(func, [arg])),
        "imap_unordered": lambda: list(pool.imap_unordered(func, [arg])),
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_exception_whose_str_and_repr_raise_comes_back_as_itself(method):
    with multiprocess.get_context(method).Pool(1) as pool:
        worker = pool.apply(pid)
        for name, call in _calls(pool, raise_bad_str, 7).items():
            with pytest.raises(BadStr) as info:
                call()
            assert info.value.args == (7,), name
        assert pool.apply(pid) == worker       # the worker lived on


@pytest.mark.timeout(120)
def test_a_result_nested_too_deep_raises_maybe_encoding_error():
    with multiprocess.get_context("fork").Pool(1) as pool:
        worker = pool.apply(pid)
        for name, call in _calls(pool, deep_result, 0).items():
            with pytest.raises(MaybeEncodingError) as info:
                call()
            assert "RecursionError" in info.value.exc, name
            assert "list" in info.value.value, name
        assert pool.apply(pid) == worker


@pytest.mark.timeout(120)
def test_an_unpicklable_result_with_a_broken_repr_raises_maybe_encoding_error():
    with multiprocess.get_context("fork").Pool(1) as pool:
        for name, call in _calls(pool, unsendable_result, 0).items():
            with pytest.raises(MaybeEncodingError) as info:
                call()
            assert "not for sending" in info.value.exc, name
            # a map's value is its chunk, a list
            assert "repr() failed" in info.value.value, name
            assert "repr() failed" in str(info.value), name
        assert pool.apply(identity, (3,)) == 3


@pytest.mark.timeout(120)
def test_an_argument_nested_too_deep_raises_the_pickling_error():
    deep = nested(DEPTH)
    with multiprocess.get_context("fork").Pool(1) as pool:
        for name, call in _calls(pool, identity, deep).items():
            with pytest.raises(RecursionError):
                call()
        assert pool.map(identity, range(5)) == list(range(5))


def test_maybe_encoding_error_survives_values_it_cannot_print():
    err = MaybeEncodingError(ValueError("why"), Unsendable())
    assert err.exc == "ValueError('why')"
    assert "Unsendable" in err.value and "repr() failed" in err.value
    err = MaybeEncodingError("why", nested(DEPTH))
    assert "list" in err.value and "RecursionError" in err.value
