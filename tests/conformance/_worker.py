"""One conformance worker: runs the tests of one generated module and streams
an event per test to a file, so the parent (run.py) can tell which test was
running if this process hangs or dies.

Events, one JSON object a line, appended and flushed as they happen:
    {"ev": "plan", "ids": [...]}                     every test id of the unit
    {"ev": "start", "id": ID}
    {"ev": "end", "id": ID, "outcome": O, "detail": TEXT, "secs": S}
with O one of pass, fail, error, skip, xfail, xpass.  Ids drop the module
name: "WithProcessesTestLock.test_lock".  Errors raised by class or module
fixtures get ids such as "setUpClass (WithProcessesTestLock)".

A faulthandler watchdog is armed for the whole run and re-armed at every test
boundary; when it fires it dumps every thread's stack to stderr and exits,
which the parent reads as a hang of the test that was running.
"""
import argparse
import faulthandler
import fnmatch
import json
import os
import signal
import sys
import time
import traceback
import unittest

# The parent may have been started in the background (SIGINT ignored, which
# children inherit); two of the suite's tests interrupt a child and expect
# KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)


class _Events:
    def __init__(self, path):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._pid = os.getpid()

    def emit(self, **record):
        # Forked children inherit this object; only the worker itself writes.
        if os.getpid() != self._pid:
            return
        os.write(self._fd, (json.dumps(record) + "\n").encode())


def short_id(test):
    """Test id without the generated module's name (it differs per method)."""
    tid = test.id()
    if type(test).__name__ == "_FailedTest":  # the module did not import
        return f"import ({tid.split('.')[-1]})"
    if tid.startswith(("setUpClass (", "tearDownClass (", "setUpModule (",
                       "tearDownModule (")):
        kind, _, rest = tid.partition(" (")
        return f"{kind} ({rest.rstrip(')').split('.')[-1]})"
    parts = tid.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else tid


class RecordingResult(unittest.TestResult):
    """Records each outcome as an event; a test with a failing subtest fails."""

    def __init__(self, events, watchdog, slow=None):
        super().__init__()
        self._slow = slow or {}
        self._events = events
        self._watchdog = watchdog
        self._current = {}
        self.last_id = None

    def startTest(self, test):
        super().startTest(test)
        self._watchdog(self._slow.get(short_id(test)))
        self._current[test.id()] = [time.monotonic(), "pass", ""]
        self._events.emit(ev="start", id=short_id(test))

    def _set(self, test, outcome, detail=""):
        rec = self._current.get(test.id())
        if rec is None:
            # Fixture errors (_ErrorHolder) never see startTest.
            self._events.emit(ev="end", id=short_id(test), outcome=outcome,
                              detail=detail[-4000:], secs=0.0)
            return
        rank = ["pass", "xfail", "skip", "xpass", "fail", "error"]
        if rank.index(outcome) >= rank.index(rec[1]):
            rec[1], rec[2] = outcome, detail

    def stopTest(self, test):
        super().stopTest(test)
        rec = self._current.pop(test.id(), None)
        self.last_id = short_id(test)
        if rec is not None:
            self._events.emit(ev="end", id=short_id(test), outcome=rec[1],
                              detail=rec[2][-4000:],
                              secs=round(time.monotonic() - rec[0], 3))
        self._watchdog()

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "error", self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "fail", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._set(test, kind, f"{subtest}: " + self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "skip", str(reason))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "xpass")


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--skip-file")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--slow", default="{}",
                    help="JSON: test id -> watchdog seconds, for tests slow by nature")
    ap.add_argument("-k", action="append", default=[])
    ns = ap.parse_args(argv)

    events = _Events(ns.events)

    def watchdog(seconds=None):
        faulthandler.dump_traceback_later(seconds or ns.timeout, exit=True)

    watchdog()  # importing the suite and the target package counts too
    loader = unittest.TestLoader()
    if ns.k:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in ns.k]
    try:
        suite = loader.loadTestsFromName(ns.module)
    except Exception:
        events.emit(ev="plan", ids=[])
        events.emit(ev="end", id=f"import ({ns.module})", outcome="error",
                    detail=traceback.format_exc()[-4000:], secs=0.0)
        return 1
    tests = list(flatten(suite))
    events.emit(ev="plan", ids=[short_id(t) for t in tests])
    skip = set()
    if ns.skip_file and os.path.exists(ns.skip_file):
        with open(ns.skip_file) as f:
            skip = {line.strip() for line in f if line.strip()}
    todo = unittest.TestSuite([t for t in tests if short_id(t) not in skip])
    result = RecordingResult(events, watchdog, json.loads(ns.slow))
    try:
        todo.run(result)
    except BaseException:
        # unittest lets KeyboardInterrupt (a stray SIGINT) through; blame
        # the test that just ran, and let the parent restart on the rest.
        events.emit(ev="end", id=result.last_id or f"run ({ns.module})", outcome="error",
                    detail=traceback.format_exc()[-4000:], secs=0.0)
        return 2
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    code = main()
    # Interpreter teardown joins leftover children and threads; a broken
    # implementation can hang there, so it gets a watchdog of its own.
    faulthandler.dump_traceback_later(60, exit=True)
    sys.exit(code)
