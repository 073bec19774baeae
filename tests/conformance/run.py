"""Run CPython's own multiprocessing test suite against multiprocess.

The suite (test/_test_multiprocessing.py of the running Python) is read at
run time, every reference to the module name is rewritten to the target
package, and the result is written to a temporary directory outside the
repository, together with one small module per (start method, group), so
that spawned children can import the tests by name.  Nothing of CPython's is
ever stored in this repository.

    python tests/conformance/run.py --method fork [--group misc] [-k _TestLock]
"""
import argparse
import os
import subprocess
import sys
import tempfile

METHODS = ("fork", "spawn", "forkserver")
# group name -> arguments for install_tests_in_module_dict
GROUPS = {
    "processes": "only_type='processes'",
    "threads": "only_type='threads'",
    "manager": "only_type='manager'",
    "misc": "exclude_types=True",
}


def suite_source(target):
    import test
    path = os.path.join(os.path.dirname(test.__file__), "_test_multiprocessing.py")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if target != "multiprocessing":
        text = text.replace("multiprocessing", target)
    return text


def prepare(workdir, target, methods):
    with open(os.path.join(workdir, "_mpconf_suite.py"), "w") as f:
        f.write(suite_source(target))
    for method in methods:
        for group, args in GROUPS.items():
            with open(os.path.join(workdir, f"_mpconf_{method}_{group}.py"), "w") as f:
                f.write("import _mpconf_suite\n"
                        f"_mpconf_suite.install_tests_in_module_dict(globals(), {method!r}, {args})\n")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=METHODS, action="append")
    ap.add_argument("--group", choices=list(GROUPS), action="append")
    ap.add_argument("--target", default="multiprocess")
    ap.add_argument("-k", action="append", default=[], help="unittest -k pattern")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("-v", action="store_true")
    ns = ap.parse_args(argv)
    methods = ns.method or list(METHODS)
    groups = ns.group or list(GROUPS)
    rc = 0
    with tempfile.TemporaryDirectory(prefix="mpconf-") as workdir:
        prepare(workdir, ns.target, methods)
        env = dict(os.environ)
        env["PYTHONPATH"] = workdir + os.pathsep + env.get("PYTHONPATH", "")
        for method in methods:
            for group in groups:
                cmd = [sys.executable, "-m", "unittest"]
                if ns.v:
                    cmd.append("-v")
                for k in ns.k:
                    cmd += ["-k", k]
                cmd.append(f"_mpconf_{method}_{group}")
                print(f"=== {method}/{group}", flush=True)
                try:
                    r = subprocess.run(cmd, env=env, cwd=workdir, timeout=ns.timeout,
                                       preexec_fn=lambda: __import__("signal").signal(2, __import__("signal").SIG_DFL))
                    rc = rc or r.returncode
                except subprocess.TimeoutExpired:
                    print(f"TIMEOUT {method}/{group}", flush=True)
                    rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
