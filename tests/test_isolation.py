"""multiprocess stands on its own: it works with the standard library's
multiprocessing and _multiprocessing made unimportable from the very first
line, under every start method, with lambdas defined in a script read from
standard input (so a spawned child cannot re-import it and must receive them
by value).

dill 0.4.1 imports multiprocessing.reduction when it is imported; our
reduction module stands in for it while dill loads, so nothing of the
stdlib's package is needed, in the parent or in the children.
"""
import json
import subprocess
import sys

import pytest
from .conftest import START_METHODS

METHODS = START_METHODS

SCRIPT = r"""
import sys

class _Refuse:
    # a meta path finder that refuses the stdlib package and its C helper
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split('.')[0] in ('multiprocessing', '_multiprocessing'):
            raise ImportError(name + ' is blocked by this test')
        return None

sys.meta_path.insert(0, _Refuse)
sys.modules['multiprocessing'] = None
sys.modules['_multiprocessing'] = None
try:
    import multiprocessing
except ImportError:
    pass
else:
    raise SystemExit('the stdlib multiprocessing was not blocked')

import json
import multiprocess as mp
import _multiprocess

class Thing:
    # defined in a file-less __main__: travels by value (through dill)
    def __init__(self, n):
        self.n = n

    def double(self):
        return 2 * self.n

def loaded_stdlib():
    return sorted(n for n, m in sys.modules.items()
                  if m is not None and n.split('.')[0] in ('multiprocessing', '_multiprocessing'))

if __name__ == '__main__':
    method = sys.argv[1]
    ctx = mp.get_context(method)
    # the lambdas reach everything through their arguments and __import__:
    # a spawned child has none of this script's globals
    report = lambda conn, x: conn.send({
        'value': x + 40,
        'process_type': type(__import__('multiprocess').current_process()).__module__,
        'stdlib_in_child': sorted(
            n for n, m in __import__('sys').modules.items()
            if m is not None and n.split('.')[0] in ('multiprocessing', '_multiprocessing')),
    })
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=report, args=(writer, 2))
    p.start()
    writer.close()
    if not reader.poll(60):
        p.kill()
        raise SystemExit('child did not answer within 60 s')
    answer = reader.recv()
    p.join(60)
    q = ctx.Queue()
    p2 = ctx.Process(target=lambda q: q.put([n * n for n in range(4)]), args=(q,))
    p2.start()
    squares = q.get(timeout=60)
    p2.join(60)
    p3 = ctx.Process(target=lambda q, thing: q.put(thing.double()), args=(q, Thing(21)))
    p3.start()
    doubled = q.get(timeout=60)
    p3.join(60)
    lock = mp.Lock()
    print(json.dumps({
        'answer': answer,
        'squares': squares,
        'doubled': doubled,
        'exitcodes': [p.exitcode, p2.exitcode, p3.exitcode],
        'semlock_is_native': isinstance(lock._semlock, _multiprocess.SemLock),
        'semlock_type': type(lock._semlock).__module__ + '.' + type(lock._semlock).__qualname__,
        'stdlib_in_parent': loaded_stdlib(),
    }))
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("method", METHODS)
def test_lambda_crosses_processes_with_stdlib_multiprocessing_blocked(method):
    r = subprocess.run([sys.executable, "-", method], input=SCRIPT, text=True,
                       capture_output=True, timeout=180)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["answer"]["value"] == 42
    assert result["squares"] == [0, 1, 4, 9]
    assert result["doubled"] == 42
    assert result["exitcodes"] == [0, 0, 0]
    assert result["answer"]["process_type"].startswith("multiprocess")
    # the parent imported nothing of the stdlib's: everything is blocked
    assert result["stdlib_in_parent"] == []
    # nor did the children, which were not blocked at all
    assert result["answer"]["stdlib_in_child"] == []


@pytest.mark.timeout(120)
def test_lock_is_backed_by_the_native_semlock():
    r = subprocess.run([sys.executable, "-", "fork"], input=SCRIPT, text=True,
                       capture_output=True, timeout=100)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["semlock_is_native"], result["semlock_type"]


@pytest.mark.timeout(60)
def test_lock_semlock_type_in_process():
    import _multiprocess
    import multiprocess
    lock = multiprocess.Lock()
    assert isinstance(lock._semlock, _multiprocess.SemLock)
    rlock = multiprocess.RLock()
    assert isinstance(rlock._semlock, _multiprocess.SemLock)
