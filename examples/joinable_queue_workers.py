"""A fixed set of workers fed from a JoinableQueue, stopped by poison pills.

Each worker calls task_done() once per item, so queue.join() in the parent
returns when every item has been handled; then one ``None`` per worker (the
poison pill) tells the workers to exit.

    python examples/joinable_queue_workers.py
"""
import os

import multiprocess as mp

N_WORKERS = 2


def worker(tasks, results):
    while True:
        job = tasks.get()
        try:
            if job is None:             # poison pill: leave the loop
                return
            name, func, arg = job
            results.put((name, func(arg), os.getpid()))
        finally:
            tasks.task_done()


def main():
    tasks, results = mp.JoinableQueue(), mp.Queue()
    workers = [mp.Process(target=worker, args=(tasks, results))
               for _ in range(N_WORKERS)]
    for w in workers:
        w.start()

    jobs = [("square", lambda x: x * x, 7), ("upper", str.upper, "pill"),
            ("length", len, [1, 2, 3]), ("negate", lambda x: -x, 5)]
    for job in jobs:
        tasks.put(job)
    tasks.join()                        # every job acknowledged by task_done()
    for _ in jobs:
        name, value, pid = results.get(timeout=30)
        print(f"{name:>7} -> {value!r} (worker pid {pid})")

    for _ in workers:
        tasks.put(None)
    for w in workers:
        w.join(30)
    print("workers exited with", [w.exitcode for w in workers])


if __name__ == '__main__':
    main()
