"""Functions sent by value without dill: lambdas, closures, nested and
__main__ functions are rebuilt from their marshalled code, so neither the
sending nor the receiving process imports dill for them.  Every check runs
in fresh interpreters with the standard library's multiprocessing made
unimportable."""

import os
import subprocess
import sys
import textwrap

import pytest

PYTHON = sys.executable

BLOCK = '''
import sys
sys.modules['multiprocessing'] = None
sys.modules['_multiprocessing'] = None
'''

SENDER = BLOCK + '''
import functools
from multiprocess.reduction import ForkingPickler
%s
with open(sys.argv[1], 'wb') as f:
    f.write(ForkingPickler.dumps(payload))
print('dill' in sys.modules)
'''

RECEIVER = BLOCK + '''
import pickle
%s
with open(sys.argv[1], 'rb') as f:
    obj = pickle.loads(f.read())
print(repr(%s))
print('dill' in sys.modules)
'''


def run(code, args=(), stdin=True, env=None):
    code = textwrap.dedent(code)
    if stdin:
        cmd, inp = [PYTHON, '-', *args], code
    else:
        cmd, inp = [PYTHON, '-c', code, *args], None
    proc = subprocess.run(cmd, input=inp, capture_output=True, text=True,
                          timeout=90, env=env)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout.strip().splitlines()


def ship(tmp_path, body, probe, receiver_setup='', env=None):
    """(result repr, dill imported by sender, dill imported by receiver)."""
    path = str(tmp_path / 'payload.pkl')
    sent = run(SENDER % textwrap.dedent(body), [path], env=env)
    got = run(RECEIVER % (textwrap.dedent(receiver_setup), probe), [path],
              env=env)
    return got[-2], sent[-1] == 'True', got[-1] == 'True'


CASES = {
    'lambda': ('payload = lambda x: x * 3', 'obj(14)', '42'),
    'closure': ('''
        def make(base):
            offset = base * 10
            return lambda x: offset + x
        payload = make(4)
        ''', 'obj(2)', '42'),
    'closure_over_lambdas': ('''
        def make():
            inner = lambda x: x + 1
            twice = lambda x: inner(inner(x))
            return lambda x: twice(x) * 2
        payload = make()
        ''', 'obj(19)', '42'),
    'closure_over_itself': ('''
        def outer():
            def fact(n):
                return 1 if n <= 1 else n * fact(n - 1)
            return fact
        payload = outer()
        ''', '(obj(5), obj.__closure__[0].cell_contents is obj)',
        '(120, True)'),
    'mutually_recursive': ('''
        def outer():
            def even(n):
                return True if n == 0 else odd(n - 1)
            def odd(n):
                return False if n == 0 else even(n - 1)
            return even
        payload = outer()
        ''', '(obj(10), obj(7))', '(True, False)'),
    'defaults_and_kwdefaults': ('''
        def scaled(x, factor=2, *, shift=0, label='n'):
            """Scale x."""
            return (label, x * factor + shift)
        payload = scaled
        ''', '(obj(5), obj(5, 3, shift=1), obj.__doc__, obj.__name__)',
        "(('n', 10), ('n', 16), 'Scale x.', 'scaled')"),
    'function_attributes': ('''
        f = lambda: f.calls
        f.calls = 7
        f.meta = {'k': [1, 2]}
        payload = f
        ''', '(obj.calls, obj.meta, obj.__qualname__)',
        "(7, {'k': [1, 2]}, '<lambda>')"),
    'generator': ('''
        def count(n):
            for i in range(n):
                yield i * i
        payload = count
        ''', 'list(obj(4))', '[0, 1, 4, 9]'),
    'async_function': ('''
        async def answer(x):
            return x + 1
        payload = answer
        ''', '__import__("asyncio").run(obj(41))', '42'),
    'partial_of_lambda': ('''
        payload = functools.partial(lambda a, b, c=0: a * b + c, 6, c=12)
        ''', 'obj(5)', '42'),
    'annotations_and_qualname': ('''
        def outer():
            def f(x: int) -> str:
                return str(x)
            return f
        payload = outer()
        ''', '(obj.__annotations__, obj.__qualname__, obj(4))',
        "({'x': <class 'int'>, 'return': <class 'str'>}, "
        "'outer.<locals>.f', '4')"),
    'empty_cell': ('''
        def outer():
            def f():
                return later
            g = f
            if False:
                later = 1
            return g
        payload = outer()
        ''', 'type(obj.__closure__[0]).__name__', "'cell'"),
}


@pytest.mark.timeout(200)
@pytest.mark.parametrize('case', sorted(CASES))
def test_function_travels_without_dill(tmp_path, case):
    body, probe, expected = CASES[case]
    result, sender_dill, receiver_dill = ship(tmp_path, body, probe)
    assert result == expected
    assert not sender_dill and not receiver_dill


@pytest.mark.timeout(200)
def test_main_function_uses_receivers_main_globals(tmp_path):
    # As with dill's default: the globals of a __main__ function are those
    # of the receiving process's __main__.
    body = '''
    FACTOR = 1
    def scale(x):
        return x * FACTOR
    payload = scale
    '''
    result, sender_dill, receiver_dill = ship(
        tmp_path, body, 'obj(7)', receiver_setup='FACTOR = 6')
    assert (result, sender_dill, receiver_dill) == ('42', False, False)


@pytest.mark.timeout(200)
def test_closure_of_a_module_function_uses_that_modules_globals(tmp_path):
    (tmp_path / 'helpermod.py').write_text(textwrap.dedent('''
        BASE = 40
        def adder(k):
            return lambda x: BASE + k + x
    '''))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), os.environ.get('PYTHONPATH', '')]))
    body = '''
    import helpermod
    payload = helpermod.adder(1)
    '''
    result, sender_dill, receiver_dill = ship(
        tmp_path, body, '(obj(1), obj.__module__, obj.__globals__["BASE"])',
        env=env)
    assert result == "(42, 'helpermod', 40)"
    assert not sender_dill and not receiver_dill


@pytest.mark.timeout(200)
def test_unusual_functions_still_go_to_dill():
    out = run('''
        import sys, functools, threading
        from multiprocess.reduction import ForkingPickler as FP
        from multiprocess import reduction
        def base(x):
            return x + 1
        @functools.wraps(base)
        def wrapper(x):
            return base(x) * 2
        fast = FP.dumps(lambda x: x)
        wrapped = bytes(FP.dumps(wrapper))
        moved = lambda: 1
        moved.__module__ = 'json'      # its namespace is not json's
        print(b'_load_dill' in bytes(fast), b'_load_dill' in wrapped,
              FP.loads(wrapped)(20), reduction._plain_function(moved, False))
        import dill
        dill.settings['recurse'] = True
        print(b'_load_dill' in bytes(FP.dumps(lambda x: x)))
        dill.settings['recurse'] = False
        print(b'_load_dill' in bytes(FP.dumps(lambda x: x)))
    ''')
    assert out == ['False True 42 None', 'True', 'False']


@pytest.mark.timeout(200)
def test_code_is_marshalled_once_and_functions_stay_distinct():
    out = run('''
        from multiprocess.reduction import ForkingPickler as FP
        from multiprocess import reduction
        fs = [(lambda i=i: i * 2) for i in range(5)]
        back = FP.loads(FP.dumps(fs))
        print([f() for f in back], len(reduction._code_bytes),
              len({id(f) for f in back}))
        a, b = FP.loads(FP.dumps([fs[0], fs[0]]))
        def make():
            box = [1]
            return (lambda: box), box
        f, same = FP.loads(FP.dumps(make()))   # one memo for the message
        print(a is b, f() is same)
    ''')
    assert out == ['[0, 2, 4, 6, 8] 1 5', 'True True']


POOL_SCRIPT = BLOCK + '''
import multiprocess as mp
if __name__ == '__main__':
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:
        got = pool.map(lambda x: (x * 2, 'dill' in __import__('sys').modules),
                       range(6))
    print([v for v, _ in got], any(d for _, d in got), 'dill' in sys.modules)
'''


@pytest.mark.timeout(240)
@pytest.mark.parametrize('method', ['spawn', 'fork'])
def test_pool_map_of_a_lambda_imports_no_dill(method):
    out = run(POOL_SCRIPT, [method])
    assert out[-1] == '[0, 2, 4, 6, 8, 10] False False'
