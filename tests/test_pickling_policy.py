"""One pickling policy (multiprocess/_pickling.py) used by every sender:
connections, queues, the pool, ForkingPickler.dumps -- through one native
Codec whose fields are named."""
import pickle

import pytest

import _multiprocess
import multiprocess
from multiprocess import _pickling, reduction
from multiprocess.pool import _wire


class CountedFailure:
    """Refused by every pickler; counts how often one tried."""
    calls = 0

    def __reduce_ex__(self, protocol):
        type(self).calls += 1
        raise TypeError('CountedFailure cannot be pickled')


@pytest.fixture
def dill_protocol():
    """Set dill.settings['protocol'] for one test."""
    import dill
    before = dill.settings['protocol']

    def set_to(value):
        dill.settings['protocol'] = value
    yield set_to
    dill.settings['protocol'] = before


def test_codec_is_a_named_native_object_built_from_the_policy():
    codec = reduction.CODEC
    assert type(codec) is _multiprocess.Codec
    assert codec.protocol is _pickling.protocol
    assert codec.loads is reduction.ForkingPickler.loads
    with pytest.raises(TypeError):
        _multiprocess.Codec(*range(6))
    with pytest.raises(TypeError, match='callable'):
        _multiprocess.Codec(new_pickler=1, dump=len, clear_memo=len,
                            fallback=len, loads=len, protocol=len)


@pytest.mark.parametrize('send', ['connection', 'dumps'])
def test_a_failed_pickle_is_tried_once_more_at_most(send):
    CountedFailure.calls = 0
    a, b = multiprocess.Pipe()
    with a, b:
        with pytest.raises(TypeError, match='cannot be pickled') as info:
            if send == 'connection':
                a.send(CountedFailure())
            else:
                reduction.ForkingPickler.dumps(CountedFailure())
        # the C pickler once, then dill once (which says so in a note)
        assert CountedFailure.calls == 2
        assert any('dill' in note for note in info.value.__notes__)
        assert not b.poll(0)        # nothing was written


def test_a_thread_lock_is_refused_without_asking_dill():
    import threading
    a, b = multiprocess.Pipe()
    with a, b, pytest.raises(TypeError, match='thread lock'):
        a.send(threading.Lock())


def test_the_protocol_follows_dills_setting_as_it_changes(dill_protocol):
    a, b = multiprocess.Pipe()
    with a, b:
        for proto in (2, 3, pickle.HIGHEST_PROTOCOL):
            dill_protocol(proto)
            assert _pickling.protocol() == proto
            for obj in ([1, 'x'], {1j}):        # plain, not plain
                data = bytes(reduction.ForkingPickler.dumps(obj))
                assert data[:2] == bytes((0x80, proto))
                a.send(obj)
                assert b.recv_bytes()[:2] == bytes((0x80, proto))
                q = multiprocess.get_context('fork').SimpleQueue()
                q.put(obj)
                assert q.get() == obj
                q.close()


def test_the_pool_pickles_with_the_packages_codec():
    assert _wire._dumps.__self__ is reduction.CODEC
    assert _wire.PLAIN_TYPES is _pickling.PLAIN_TYPES
    assert not hasattr(_wire, '_PROTOCOL') and not hasattr(_wire, '_PLAIN')


def test_pool_results_follow_dills_protocol(dill_protocol):
    dill_protocol(3)
    assert _wire._dumps([1, 2])[:2] == b'\x80\x03'
    func, args, kwds = pickle.loads(_wire._dumps_call((abs, (-1,), {})))
    assert func(*args) == 1
