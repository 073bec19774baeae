"""multiprocess stands on its own: it works with the standard library's
multiprocessing and _multiprocessing made unimportable, under every start
method, with a lambda defined in a script read from standard input (so a
spawned child cannot re-import it and must receive it by value).

dill itself imports multiprocessing.reduction (and with it the stdlib's
context and process modules) when it is imported, so the script imports dill
first and only then blocks every stdlib multiprocessing module: what is
checked is that *our* package never reaches for them.  Children, which import
dill afresh, may hold exactly the stdlib modules that dill pulls in and no
others, and never _multiprocessing.
"""
import json
import subprocess
import sys

import pytest

METHODS = ["fork", "spawn", "forkserver"]

SCRIPT = r"""
import sys
import dill  # imports multiprocessing.reduction by itself; see the test module
for _name in list(sys.modules):
    if _name.split('.')[0] in ('multiprocessing', '_multiprocessing'):
        sys.modules[_name] = None
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
    lock = mp.Lock()
    print(json.dumps({
        'answer': answer,
        'squares': squares,
        'exitcodes': [p.exitcode, p2.exitcode],
        'semlock_is_native': isinstance(lock._semlock, _multiprocess.SemLock),
        'semlock_type': type(lock._semlock).__module__ + '.' + type(lock._semlock).__qualname__,
        'stdlib_in_parent': loaded_stdlib(),
    }))
"""


def _dill_pulls_in():
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, dill; print(' '.join(sorted(n for n in sys.modules "
         "if n.split('.')[0] in ('multiprocessing', '_multiprocessing'))))"],
        capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.timeout(240)
@pytest.mark.parametrize("method", METHODS)
def test_lambda_crosses_processes_with_stdlib_multiprocessing_blocked(method):
    r = subprocess.run([sys.executable, "-", method], input=SCRIPT, text=True,
                       capture_output=True, timeout=180)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["answer"]["value"] == 42
    assert result["squares"] == [0, 1, 4, 9]
    assert result["exitcodes"] == [0, 0]
    assert result["answer"]["process_type"].startswith("multiprocess")
    # the parent imported nothing of the stdlib's: everything is blocked
    assert result["stdlib_in_parent"] == []
    # a child imports dill afresh, which brings its own share and no more
    extra = set(result["answer"]["stdlib_in_child"]) - _dill_pulls_in()
    assert not extra, f"the child imported stdlib modules: {sorted(extra)}"
    assert "_multiprocessing" not in result["answer"]["stdlib_in_child"]


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
