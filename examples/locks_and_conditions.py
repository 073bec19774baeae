"""Locks and conditions across processes.

Part 1: several processes increment a shared counter; the Lock makes each
read-modify-write atomic, so no increment is lost.
Part 2: a Condition lets a consumer sleep until a producer has published
enough items, instead of polling.

    python examples/locks_and_conditions.py
"""
import multiprocess as mp

ROUNDS = 200


def add_many(counter, lock):
    for _ in range(ROUNDS):
        with lock:                      # without it, increments race
            counter.value += 1


def producer(cond, ready, n):
    for _ in range(n):
        with cond:
            ready.value += 1
            cond.notify_all()


def consumer(cond, ready, n, done):
    with cond:
        # wait_for re-checks the predicate each time it is woken up
        ok = cond.wait_for(lambda: ready.value >= n, timeout=30)
    done.value = 1 if ok else -1


def main():
    lock = mp.Lock()
    counter = mp.Value('i', 0, lock=False)   # the explicit lock guards it
    procs = [mp.Process(target=add_many, args=(counter, lock)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    print(f"counter = {counter.value} (expected {3 * ROUNDS})")

    cond = mp.Condition()
    ready, done = mp.Value('i', 0), mp.Value('i', 0)
    c = mp.Process(target=consumer, args=(cond, ready, 5, done))
    p = mp.Process(target=producer, args=(cond, ready, 5))
    c.start()
    p.start()
    for proc in (p, c):
        proc.join(30)
    print("consumer woke up after", ready.value, "items:",
          "ok" if done.value == 1 else "timed out")


if __name__ == '__main__':
    main()
