"""concurrent.futures with dill's reach: multiprocess.futures.

``ProcessPoolExecutor`` has the standard library's API; it sends lambdas
and closures, and a worker that dies fails only the future of the call it
was running (``multiprocess.WorkerLostError``): the executor goes on.

    python examples/executor_lambdas.py
"""
import os
from concurrent.futures import as_completed

import multiprocess as mp
from multiprocess.futures import ProcessPoolExecutor


def main():
    scale = 10
    with ProcessPoolExecutor(max_workers=2) as ex:
        futures = [ex.submit(lambda x: x * scale, i) for i in range(5)]
        print("submit:", sorted(f.result() for f in as_completed(futures)))
        print("map:", list(ex.map(lambda a, b: a + b, range(4), range(4),
                                  chunksize=2)))

        doomed = ex.submit(os._exit, 1)      # the worker dies under it
        try:
            doomed.result()
        except mp.WorkerLostError as exc:
            print("lost:", exc)
        print("still serving:", ex.submit(lambda: "yes").result())


if __name__ == '__main__':
    main()
