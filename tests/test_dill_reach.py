"""What dill's reach buys: payloads made by ForkingPickler load in a fresh
interpreter that never saw the definitions, dill is imported only when
needed, and the standard library's multiprocessing is never touched."""

import subprocess
import sys
import textwrap

import pytest

PYTHON = sys.executable


def run(code, *, stdin_script=False, args=(), check=True):
    code = textwrap.dedent(code)
    if stdin_script:
        cmd, inp = [PYTHON, '-', *args], code
    else:
        cmd, inp = [PYTHON, '-c', code, *args], None
    proc = subprocess.run(cmd, input=inp, capture_output=True, text=True,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError('child failed (%d):\n%s\n%s'
                             % (proc.returncode, proc.stdout, proc.stderr))
    return proc


SENDER_HEAD = '''
import sys, functools
from multiprocess.reduction import ForkingPickler
out = sys.argv[1]
'''

SENDER_TAIL = '''
with open(out, 'wb') as f:
    f.write(ForkingPickler.dumps(payload))
'''

RECEIVER = '''
import pickle, sys
with open(sys.argv[1], 'rb') as f:
    data = f.read()
obj = pickle.loads(data)          # plain pickle: no multiprocess import here
print(repr(%s))
'''


def ship(tmp_path, body, probe, stdin_script=True):
    """Define things in a script (read from stdin by default), pickle
    ``payload``, load it in a brand-new interpreter and return the repr of
    ``probe`` evaluated there."""
    path = str(tmp_path / 'payload.pkl')
    run(SENDER_HEAD + textwrap.dedent(body) + SENDER_TAIL,
        stdin_script=stdin_script, args=[path])
    return run(RECEIVER % probe, args=[path]).stdout.strip()


@pytest.mark.timeout(120)
def test_lambda_from_stdin_script_loads_in_fresh_interpreter(tmp_path):
    assert ship(tmp_path, 'payload = lambda x: x * 3',
                'obj(14)') == '42'


@pytest.mark.timeout(120)
def test_function_from_python_dash_c_loads_in_fresh_interpreter(tmp_path):
    body = '''
    def triple(x):
        return 3 * x
    payload = triple
    '''
    assert ship(tmp_path, body, 'obj(5)', stdin_script=False) == '15'


@pytest.mark.timeout(120)
def test_closure_over_local_variables_travels(tmp_path):
    body = '''
    def make(base, step):
        offset = base * 10
        return lambda x: offset + step * x
    payload = make(4, 2)
    '''
    assert ship(tmp_path, body, 'obj(1)') == '42'


@pytest.mark.timeout(120)
def test_recursive_nested_function_travels(tmp_path):
    body = '''
    def outer():
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)
        return fact
    payload = outer()
    '''
    assert ship(tmp_path, body, 'obj(5)') == '120'


@pytest.mark.timeout(120)
def test_main_class_and_its_instances_travel(tmp_path):
    body = '''
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y
        def norm1(self):
            return abs(self.x) + abs(self.y)
    payload = (Point, Point(3, -4), [Point(1, 1), Point(2, 2)])
    '''
    out = ship(tmp_path, body,
               '(obj[0].__name__, obj[1].norm1(), '
               'type(obj[1]) is obj[0] is type(obj[2][1]))')
    assert out == "('Point', 7, True)"


@pytest.mark.timeout(120)
def test_bound_method_of_main_class_travels(tmp_path):
    body = '''
    class Counter:
        def __init__(self, start):
            self.start = start
        def plus(self, n):
            return self.start + n
    payload = Counter(40).plus
    '''
    assert ship(tmp_path, body, 'obj(2)') == '42'


@pytest.mark.timeout(120)
def test_partial_of_lambda_travels(tmp_path):
    body = '''
    payload = functools.partial(lambda a, b, c=0: a * b + c, 6, c=12)
    '''
    assert ship(tmp_path, body, 'obj(5)') == '42'


@pytest.mark.timeout(120)
def test_lambda_using_main_globals_travels_with_recurse(tmp_path):
    # With dill's recurse setting, the globals a function uses go with it.
    body = '''
    import dill
    dill.settings['recurse'] = True
    FACTOR = 6
    def helper(x):
        return x * FACTOR
    payload = lambda x: helper(x) + 0
    '''
    assert ship(tmp_path, body, 'obj(7)') == '42'


@pytest.mark.timeout(120)
def test_plain_data_and_named_objects_never_import_dill():
    out = run('''
        import sys, collections, os.path, decimal, typing
        from multiprocess.reduction import ForkingPickler as FP
        data = [{'a': 1, 'b': [1.5, 'x', b'y', None, True]}, (1, 2), {3},
                frozenset('ab'), bytearray(b'z'), 10 ** 30, 1j,
                collections.OrderedDict(a=1), decimal.Decimal('1.5'),
                os.path.join, len, ValueError('boom'), int, collections.Counter,
                [].append, str.upper, sys, type(None), type(...),
                type(NotImplemented), typing.Optional[str], list[int]]
        back = FP.loads(FP.dumps(data))
        assert back[:9] == data[:9], back
        assert back[9] is os.path.join and back[13] is collections.Counter
        print('dill' in sys.modules)
    ''').stdout.strip()
    assert out == 'False'


@pytest.mark.timeout(120)
def test_lambdas_work_with_stdlib_multiprocessing_blocked():
    out = run('''
        import sys
        sys.modules['multiprocessing'] = None
        sys.modules['_multiprocessing'] = None
        from multiprocess.reduction import ForkingPickler as FP
        k = 5
        f = FP.loads(FP.dumps(lambda x: x + 37))
        # a class of __main__ travels by value, through dill
        class Shape:
            sides = 4
        copy = FP.loads(FP.dumps(Shape))
        print(f(k), copy.sides, sys.modules['multiprocessing'],
              'multiprocessing.reduction' in sys.modules,
              sys.modules['dill']._dill.reduce_socket.__module__)
    ''').stdout.strip()
    assert out == '42 4 None False multiprocess.reduction'


@pytest.mark.timeout(120)
def test_blocked_reduction_entry_is_restored_after_dill_import():
    out = run('''
        import sys
        sys.modules['multiprocessing'] = None
        sys.modules['multiprocessing.reduction'] = None
        from multiprocess.reduction import ForkingPickler as FP
        print(FP.loads(FP.dumps(lambda: 'ok'))(),
              sys.modules['multiprocessing.reduction'])
    ''').stdout.strip()
    assert out == 'ok None'


@pytest.mark.timeout(120)
def test_dill_already_imported_with_stdlib_reduction_is_fine():
    out = run('''
        import dill, sys
        from multiprocess.reduction import ForkingPickler as FP
        print(FP.loads(FP.dumps(lambda: 7))(),
              sys.modules['dill']._dill.reduce_socket.__module__)
    ''').stdout.strip()
    assert out == '7 multiprocessing.reduction'


@pytest.mark.timeout(120)
def test_byref_setting_sends_main_functions_by_name():
    out = run('''
        import dill, pickle
        from multiprocess.reduction import ForkingPickler as FP
        def f():
            return 1
        dill.settings['byref'] = True
        by_name = bytes(FP.dumps(f))
        dill.settings['byref'] = False
        by_value = bytes(FP.dumps(f))
        copy = pickle.loads(by_value)
        print(b'dill' in by_name, pickle.loads(by_name) is f,
              copy is f, copy())
    ''').stdout.strip()
    # by name: the receiver's own f; by value: a rebuilt copy
    assert out == 'False True False 1'


@pytest.mark.timeout(120)
def test_ignore_setting_keeps_transported_class(tmp_path):
    out = run('''
        import dill
        from multiprocess.reduction import ForkingPickler as FP
        class A:
            pass
        same = type(FP.loads(FP.dumps(A()))) is A
        dill.settings['ignore'] = True
        copy = FP.loads(FP.dumps(A()))
        print(same, type(copy) is A, type(copy).__name__)
    ''').stdout.strip()
    assert out == 'True False A'


@pytest.mark.timeout(120)
def test_main_class_matches_receivers_class_of_same_name(tmp_path):
    # A receiver whose __main__ defines the class (a forked child, a spawned
    # child that re-ran the script) gets its own class back, not a copy.
    path = str(tmp_path / 'p.pkl')
    run(SENDER_HEAD + textwrap.dedent('''
        class Job:
            kind = 'sender'
        payload = [Job(), Job]
    ''') + SENDER_TAIL, stdin_script=True, args=[path])
    out = run('''
        import pickle, sys
        class Job:
            kind = 'receiver'
        obj = pickle.loads(open(sys.argv[1], 'rb').read())
        print(type(obj[0]) is Job, obj[1] is Job)
    ''', args=[path]).stdout.strip()
    assert out == 'True True'


@pytest.mark.timeout(120)
def test_main_objects_dill_cannot_copy_fall_back_to_by_name(tmp_path):
    # A class attribute holding a thread lock: dill may not copy it, but a
    # receiver that defines the class (fork, spawn re-running the script)
    # finds it by name, as with the standard library.
    path = str(tmp_path / 'p.pkl')
    out = run(SENDER_HEAD + textwrap.dedent('''
        import threading
        class Guarded:
            lock = threading.Lock()
        def work(x, _lock=threading.Lock()):
            return x + 1
        payload = [Guarded(), work]
        back = ForkingPickler.loads(ForkingPickler.dumps(payload))
        print(type(back[0]) is Guarded, back[1] is work)
    ''') + SENDER_TAIL, stdin_script=True, args=[path]).stdout.strip()
    assert out == 'True True'
    proc = run(RECEIVER % 'obj', args=[path], check=False)
    assert proc.returncode != 0
    assert "Can't get attribute 'Guarded'" in proc.stderr


@pytest.mark.timeout(120)
def test_objects_from_an_interactive_session_travel(tmp_path):
    path = str(tmp_path / 'p.pkl')
    session = '\n'.join([
        'from multiprocess.reduction import ForkingPickler',
        'class Box: size = 6',
        '',
        'scale = lambda b, n: b.size * n',
        "open(%r, 'wb').write(ForkingPickler.dumps((scale, Box())))" % path,
        '',
    ])
    proc = subprocess.run([PYTHON, '-i', '-q'], input=session, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = run(RECEIVER % 'obj[0](obj[1], 7)', args=[path]).stdout.strip()
    assert out == '42'


@pytest.mark.timeout(120)
def test_class_copies_are_shared_across_messages(tmp_path):
    # Two separate messages carrying instances of one __main__ class: the
    # receiver, which does not define it, rebuilds the class once.
    first, second = str(tmp_path / 'a.pkl'), str(tmp_path / 'b.pkl')
    run('''
        import sys
        from multiprocess.reduction import ForkingPickler
        class Event:
            def __init__(self, n):
                self.n = n
        for path, n in zip(sys.argv[1:], (1, 2)):
            with open(path, 'wb') as f:
                f.write(ForkingPickler.dumps(Event(n)))
    ''', stdin_script=True, args=[first, second])
    out = run('''
        import pickle, sys
        a, b = (pickle.loads(open(p, 'rb').read()) for p in sys.argv[1:])
        print(type(a) is type(b), a.n + b.n, type(a).__name__)
    ''', args=[first, second]).stdout.strip()
    assert out == 'True 3 Event'


@pytest.mark.timeout(120)
def test_first_dill_use_from_several_threads_at_once():
    out = run('''
        import sys, threading
        sys.modules['multiprocessing'] = None
        from multiprocess.reduction import ForkingPickler as FP
        results, start = [], threading.Barrier(4)
        def work(i):
            start.wait()
            results.append(FP.loads(FP.dumps(lambda: i * 2))())
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(sorted(results), 'multiprocessing.reduction' in sys.modules)
    ''').stdout.strip()
    assert out == '[0, 2, 4, 6] False'


GLOBALS_BODY = '''
K = 7
def helper(v):
    return v * K
class Adder:
    def add(self, v):
        return v + K
def task(x):
    return helper(x) + 1
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('stdin_script', [True, False], ids=['stdin', 'dash_c'])
def test_main_globals_travel_when_main_cannot_be_rerun(tmp_path, stdin_script):
    # A fresh interpreter cannot re-run `python -c` or a script from stdin,
    # so what a __main__ function or class uses travels with it.
    body = GLOBALS_BODY + 'payload = (task, lambda v: Adder().add(v))\n'
    assert ship(tmp_path, body, '(obj[0](2), obj[1](1))',
                stdin_script=stdin_script) == '(15, 8)'


@pytest.mark.timeout(120)
def test_main_globals_from_a_script_file_stay_behind(tmp_path):
    # A script file is re-run by spawned children: nothing extra travels,
    # so a receiver without the script's definitions does not have K.
    path = str(tmp_path / 'payload.pkl')
    script = tmp_path / 'script.py'
    script.write_text(SENDER_HEAD + GLOBALS_BODY + 'payload = task\n' + SENDER_TAIL)
    run('import runpy, sys; sys.argv[1:] = [%r]; runpy.run_path(%r, run_name="__main__")'
        % (path, str(script)))
    out = run(RECEIVER % 'obj.__code__.co_name' + '''
try:
    obj(2)
except NameError as exc:
    print('NameError', exc.name)
''', args=[path]).stdout.split()
    assert out == ["'task'", 'NameError', 'helper']


@pytest.mark.timeout(120)
def test_unportable_main_global_is_left_behind(tmp_path):
    # A thread lock cannot travel; the function still does, and a forked
    # receiver (which has the lock) is unaffected.
    body = '''
    import threading
    LOCK = threading.Lock()
    registry = {}
    def locked(x):
        with LOCK:
            return x
    def listed():
        return sorted(registry)
    registry['listed'] = listed
    payload = (locked, listed)
    '''
    assert ship(tmp_path, body, "(obj[1](), 'LOCK' in obj[0].__globals__)") \
        == "(['listed'], False)"


@pytest.mark.timeout(180)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_pool_of_dash_c_script_uses_its_globals(method):
    code = GLOBALS_BODY + textwrap.dedent('''
    import multiprocess as mp
    with mp.get_context(%r).Pool(1) as pool:
        print(pool.map(task, [1, 2]), pool.map(lambda v: Adder().add(v), [1]))
    ''' % method)
    assert run(code).stdout.strip() == '[8, 15] [8]'
