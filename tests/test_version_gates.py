"""Behaviour that follows the running Python's multiprocessing: defaults,
messages and formats that changed between versions.  Each test states what
it expects on which version, so the suite checks the gate on every
interpreter it runs under (docs/versions.md has the table)."""
import os
import sys

import pytest

from multiprocess import util


# -- pool size -----------------------------------------------------------------

def test_default_pool_size_counts_the_cpus_the_version_counts():
    if sys.version_info >= (3, 13):
        expected = os.process_cpu_count()
    else:
        expected = os.cpu_count()
    assert util._default_pool_size() == (expected or 1)


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.version_info < (3, 13), reason="PYTHON_CPU_COUNT is 3.13")
def test_pool_size_honours_python_cpu_count_from_3_13(run_script):
    env = dict(os.environ, PYTHON_CPU_COUNT="3")
    out = run_script("""
        import multiprocess as mp
        if __name__ == "__main__":
            with mp.get_context("fork").Pool() as pool:
                print(pool._processes)
    """, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity")
def test_pool_size_and_cpu_affinity(run_script):
    out = run_script("""
        import os, multiprocess as mp
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        if __name__ == "__main__":
            with mp.get_context("fork").Pool() as pool:
                print(pool._processes, os.cpu_count())
    """)
    assert out.returncode == 0, out.stderr
    size, machine = map(int, out.stdout.split())
    # 3.13 sizes the pool by the CPUs the process may use, older versions
    # by the machine's
    assert size == (1 if sys.version_info >= (3, 13) else machine)


# -- default start method (3.14: forkserver on Linux) ------------------------------

@pytest.mark.timeout(60)
def test_default_start_method_is_the_running_versions(run_script):
    out = run_script("""
        import multiprocess as mp
        print(mp.get_start_method(), mp.get_all_start_methods())
    """)
    assert out.returncode == 0, out.stderr
    expected = ("forkserver ['forkserver', 'fork', 'spawn']"
                if sys.version_info >= (3, 14) else
                "fork ['fork', 'spawn', 'forkserver']")
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("version, platform, expected", [
    ((3, 11, 7), "linux", "fork"),
    ((3, 13, 0), "linux", "fork"),
    ((3, 14, 0), "linux", "forkserver"),
    ((3, 15, 0), "linux", "forkserver"),
    ((3, 11, 7), "darwin", "spawn"),
    ((3, 14, 0), "darwin", "spawn"),
])
def test_default_start_method_gate(monkeypatch, version, platform, expected):
    from multiprocess import context
    monkeypatch.setattr(sys, "version_info", version)
    monkeypatch.setattr(sys, "platform", platform)
    # The list is computed once per process: forget it for the pretend one.
    monkeypatch.setattr(context, "_start_methods", None)
    assert context._platform_default_method() == expected
    methods = context._default_context.get_all_start_methods()
    assert methods[0] == expected and sorted(methods) == [
        "fork", "forkserver", "spawn"]


# -- connection.BUFSIZE (3.14: 64 KiB) ---------------------------------------------

def test_bufsize_is_the_running_versions():
    from multiprocess import connection
    import multiprocessing.connection as std
    assert connection.BUFSIZE == std.BUFSIZE
    assert connection.BUFSIZE == (65536 if sys.version_info >= (3, 14) else 8192)


# -- forkserver client authentication (3.14) ------------------------------------------

def test_forkserver_authenticates_clients_from_3_14():
    from multiprocess import forkserver
    assert forkserver._AUTHENTICATE_CLIENTS == (sys.version_info >= (3, 14))


_AUTH_SCRIPT = """
    import os, socket, sys
    import multiprocess as mp
    from multiprocess import forkserver, reduction

    def grandchild(q):
        q.put("grandchild")

    def child(q):
        q.put("child")
        # a forkserver child asks the same server, with the key it inherited
        p = mp.get_context("forkserver").Process(target=grandchild, args=(q,))
        p.start()
        p.join()

    if __name__ == "__main__":
        forkserver._AUTHENTICATE_CLIENTS = True
        ctx = mp.get_context("forkserver")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join()
        print(q.get(timeout=30), q.get(timeout=30), p.exitcode)
        server = forkserver._forkserver
        assert server._forkserver_authkey is not None
        # a client without the key gets no child, and the server lives on
        r, w = os.pipe()
        with socket.socket(socket.AF_UNIX) as intruder:
            intruder.connect(server._forkserver_address)
            intruder.settimeout(30)
            challenge = intruder.recv(100)      # asked first, before any fd
            reduction.sendfds(intruder, [r, w, r, w])
        os.close(w)
        # served, a child's pid would come on the status pipe; refused, the
        # fds were never taken and the pipe's only writer is closed
        print("intruder got", len(challenge) > 0, os.read(r, 8))
        p = ctx.Process(target=q.put, args=("after",))
        p.start()
        p.join()
        print(q.get(timeout=30), p.exitcode)
"""


@pytest.mark.timeout(90)
def test_forkserver_authentication_serves_its_clients_and_refuses_others(run_script):
    # forced on, so that it runs on every version
    out = run_script(_AUTH_SCRIPT, timeout=80)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child grandchild 0",
                                       "intruder got True b''", "after 0"]
