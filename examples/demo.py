"""A tour of multiprocess: processes, a queue, a lock, a manager and a pool,
with lambdas and closures crossing process boundaries (dill at work).

    python examples/demo.py
"""
import os

import multiprocess as mp


def worker(name, queue, lock, counter):
    """Reports through a queue; bumps a shared counter under a lock."""
    with lock:
        counter["hits"] = counter.get("hits", 0) + 1
    queue.put((name, os.getpid()))


def main():
    print(f"multiprocess: start method {mp.get_start_method()}, {mp.cpu_count()} CPUs")

    # Process + Queue + Lock, with a managed dict as the shared counter
    with mp.Manager() as manager:
        counter = manager.dict()
        log = manager.list()
        queue = mp.Queue()
        lock = mp.Lock()
        procs = [mp.Process(target=worker, args=(f"worker-{i}", queue, lock, counter))
                 for i in range(3)]
        for p in procs:
            p.start()
        seen = sorted(queue.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(60)
        for name, pid in seen:
            print(f"Process+Queue: {name} ran in pid {pid}")
        print(f"Lock+Manager: managed dict counted {counter['hits']} hits "
              f"(exit codes {[p.exitcode for p in procs]})")

        # a lambda as the target of a spawned process: pickled by value
        appender = mp.get_context("spawn").Process(target=lambda lst: lst.extend(["from", "a", "lambda"]),
                              args=(log,))
        appender.start()
        appender.join(60)
        print(f"Manager list filled by a lambda in a spawned child: {list(log)}")

    # Pool mapping a lambda and a closure
    offset = 100
    with mp.Pool(2) as pool:
        squares = pool.map(lambda x: x * x, range(10))
        shifted = pool.map(lambda x: x + offset, [1, 2, 3])
    print(f"Pool.map(lambda x: x * x, range(10)) = {squares}")
    print(f"Pool.map(closure over offset={offset}) = {shifted}")
    assert squares == [x * x for x in range(10)] and shifted == [101, 102, 103]
    print("demo finished")


if __name__ == "__main__":
    main()
