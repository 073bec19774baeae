"""Behaviour users meet at the interpreter level, checked against the
standard library where both can run the same script: what a child sees on
stdin, what the logger prints, Ctrl-C, and work defined in an interactive
session or a `python -c` string reaching spawn and forkserver children."""

import re
import subprocess
import sys

import pytest
from .conftest import START_METHODS

PYTHON = sys.executable
METHODS = START_METHODS


STDIN_AND_LOGGING = '''
import logging, sys
mp = __import__(sys.argv[1])

def child():
    print('stdin:', type(sys.stdin).__name__, repr(sys.stdin.read()),
          sys.stdin.closed, flush=True)
    try:
        input()
    except EOFError:
        print('input: EOFError', flush=True)
    mp.get_logger().info('hello from child')

if __name__ == '__main__':
    mp.set_start_method(sys.argv[2])
    mp.log_to_stderr(logging.INFO)
    p = mp.Process(target=child)
    p.start()
    p.join()
    print('exit', p.exitcode, flush=True)
'''


@pytest.mark.timeout(200)
@pytest.mark.parametrize('method', METHODS)
def test_child_stdin_and_logger_output_match_the_stdlib(run_script, tmp_path, method):
    def output(lib):
        proc = run_script(STDIN_AND_LOGGING, lib, method, as_file=True, cwd=str(tmp_path), timeout=90, input='typed by the user\n')
        assert proc.returncode == 0, proc.stderr
        return re.sub(r'pymp-\w+', 'pymp-X', proc.stdout + proc.stderr)

    ours = output('multiprocess')
    assert ours == output('multiprocessing')
    assert "stdin: TextIOWrapper '' False" in ours      # /dev/null, not ours
    assert '[INFO/Process-1] hello from child' in ours


CTRL_C = '''
import os, signal, sys, threading, time
import multiprocess as mp

def child():
    time.sleep(60)

if __name__ == '__main__':
    mp.set_start_method(sys.argv[1])
    p = mp.Process(target=child)
    p.start()
    # like Ctrl-C in a terminal: the whole process group gets SIGINT
    threading.Timer(1.0, os.killpg, (os.getpgid(0), signal.SIGINT)).start()
    try:
        p.join()
    except KeyboardInterrupt:
        print('parent: KeyboardInterrupt', flush=True)
    p.join(30)
    print('child exitcode', p.exitcode, flush=True)
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize('method', METHODS)
def test_ctrl_c_interrupts_parent_and_child(run_script, tmp_path, method):
    proc = run_script(CTRL_C, method, as_file=True, cwd=str(tmp_path), timeout=90, start_new_session=True)
    assert 'parent: KeyboardInterrupt' in proc.stdout, proc.stderr
    # 1: the child's KeyboardInterrupt ended run() (printed to its stderr);
    # -2: SIGINT arrived before the child had its handler, as in the stdlib
    code = int(proc.stdout.split('child exitcode')[1])
    assert code in (1, -2), proc.stdout + proc.stderr
    if code == 1:
        assert 'KeyboardInterrupt' in proc.stderr


@pytest.mark.timeout(180)
@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_interactive_session_work_reaches_fresh_children(method):
    # Definitions typed at the >>> prompt: a fresh child cannot import them,
    # so they travel by value with the globals they use.
    session = '\n'.join([
        'import multiprocess as mp',
        'RATE = 3',
        'def scale(v):',
        '    return v * RATE',
        '',
        'class Offset:',
        '    def apply(self, v):',
        '        return scale(v) + RATE',
        '',
        'pool = mp.get_context(%r).Pool(2)' % method,
        'print("result", pool.map(lambda v: Offset().apply(v), range(4)))',
        'pool.close(); pool.join()',
        '',
    ])
    proc = subprocess.run([PYTHON, '-i', '-q'], input=session, text=True,
                          capture_output=True, timeout=150)
    assert 'result [3, 6, 9, 12]' in proc.stdout, proc.stderr
