"""Per-call time limits: task_timeout.

A call running longer than ``task_timeout`` seconds fails with
``multiprocess.TaskTimeoutError``; the worker running it is killed and
replaced, and nothing else is lost: in an imap the calls after it run on
another worker.  The limit can be the pool's default or given per call.

    python examples/pool_task_timeout.py
"""
import time

import multiprocess as mp


def fetch(n):
    if n == 3:
        time.sleep(60)          # a call that hangs
    return "page %d" % n


def main():
    with mp.Pool(2) as pool:
        results = pool.imap(fetch, range(6), task_timeout=1)
        for n in range(6):
            try:
                print(next(results))
            except mp.TaskTimeoutError as exc:
                print("call %d: %s" % (n, exc))

        started = time.monotonic()
        try:
            pool.map(fetch, range(6), task_timeout=1)
        except mp.TaskTimeoutError:
            print("map failed after %.1fs" % (time.monotonic() - started))

        pending = pool.apply_async(time.sleep, (30,), task_timeout=0.5)
        try:
            pending.get()
        except mp.TaskTimeoutError as exc:
            print("apply_async:", exc)
        print("the pool goes on:", pool.map(abs, [-1, -2, -3]))


if __name__ == '__main__':
    main()
