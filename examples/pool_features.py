"""Every option multiprocess adds to the pool, in one script, each checked.

    python examples/pool_features.py

task_timeout on map and apply_async, imap over an endless generator with
buffersize, progress callbacks and done/total, max_memory_per_child, and
the concurrent.futures executor surviving a killed worker.
"""
import itertools
import os
import signal
import time

import multiprocess as mp
from multiprocess.futures import ProcessPoolExecutor


def slow_at_three(x):
    if x == 3:
        time.sleep(60)
    return x * x


def hold(megabytes):
    global held
    held = bytearray(megabytes << 20)
    for i in range(0, len(held), 4096):
        held[i] = 1         # resident, not just reserved
    return os.getpid()


def main():
    with mp.Pool(2) as pool:
        started = time.monotonic()
        try:
            pool.map(slow_at_three, range(10), task_timeout=1)
        except mp.TaskTimeoutError as exc:
            took = time.monotonic() - started
            assert took < 15
            print("map: %s (after %.1fs)" % (exc, took))
        assert pool.map(abs, [-1, -2]) == [1, 2]

        started = time.monotonic()
        try:
            pool.apply_async(time.sleep, (60,), task_timeout=0.5).get()
        except mp.TaskTimeoutError:
            took = time.monotonic() - started
            assert took < 15
            print("apply_async: timed out after %.1fs" % took)
        assert pool.map(abs, [-3]) == [3]

        read = []

        def endless():
            for n in itertools.count():
                read.append(n)
                yield n

        results = pool.imap(abs, endless(), buffersize=4)
        first = [next(results) for _ in range(10)]
        time.sleep(0.2)
        assert first == list(range(10)) and len(read) <= 16
        print("imap(buffersize=4): 10 items, %d read" % len(read))

        reports = []
        pool.map(abs, range(100), progress=lambda d, t: reports.append((d, t)))
        assert reports[-1] == (100, 100)
        print("progress: %d reports, the last %r" % (len(reports), reports[-1]))
        pending = pool.map_async(abs, range(50))
        pending.wait()
        assert (pending.done, pending.total) == (50, 50)
        print("map_async: done/total %d/%d" % (pending.done, pending.total))

    with mp.Pool(1, max_memory_per_child=100 << 20) as pool:
        big = pool.apply(hold, (200,))
        after = pool.apply(os.getpid)
        assert big != after
        print("max_memory_per_child: worker %d (200 MB) replaced by %d"
              % (big, after))

    with ProcessPoolExecutor(2) as ex:
        assert ex.submit(lambda: "lambda").result() == "lambda"
        victim = ex.submit(time.sleep, 60)
        others = [ex.submit(abs, -i) for i in range(5)]
        time.sleep(0.5)
        for pid in list(ex._processes):
            os.kill(pid, signal.SIGKILL)
            break
        lost = 0
        for f in [victim] + others:
            try:
                f.result(timeout=30)
            except mp.WorkerLostError:
                lost += 1
        assert lost <= 1 and ex.submit(abs, -7).result() == 7
        print("executor: a SIGKILLed worker failed %d future(s), the "
              "executor goes on" % lost)
        assert callable(ex.terminate_workers) and callable(ex.kill_workers)
        ex.kill_workers()
    print("all checks passed")


if __name__ == '__main__':
    main()
