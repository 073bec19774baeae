"""A pool whose workers are initialized once and replaced after a few tasks.

initializer(*initargs) runs once in every worker process as it starts
(here: it sets up per-worker state).  maxtasksperchild=N retires a worker
after N tasks and starts a fresh one, e.g. to release memory a long-running
library leaks; the new worker runs the initializer again.

    python examples/pool_maxtasks_initializer.py
"""
import os

import multiprocess as mp

_state = {}


def init_worker(tag):
    _state['tag'] = tag
    _state['pid'] = os.getpid()
    _state['done'] = 0


def task(x):
    _state['done'] += 1
    return x, _state['tag'], _state['pid'], _state['done']


def main():
    with mp.Pool(processes=2, initializer=init_worker, initargs=('ready',),
                 maxtasksperchild=2) as pool:
        # chunksize=1: one task per item, so workers retire every 2 items
        results = pool.map(task, range(8), chunksize=1)
    pids = {pid for _, _, pid, _ in results}
    for x, tag, pid, done in results:
        print(f"item {x}: worker {pid} ({tag}), task {done} of that worker")
    print(f"{len(pids)} worker processes served 8 tasks "
          f"(at most 2 tasks each, so at least 4 workers)")
    assert all(done <= 2 for *_, done in results)


if __name__ == '__main__':
    main()
