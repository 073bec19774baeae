"""Progress of a pool's work: a bar over imap, a callback over map.

``progress=True`` draws a tqdm bar when tqdm is installed
(``pip install "multiprocess[progress]"``), else a one-line text bar on
stderr when it is a terminal.  A callable gets ``(done, total)`` from the
pool's thread about ten times a second and once at the end; ``total`` is
None for an imap until its input has been read to the end.

    python examples/pool_progress.py
"""
import time

import multiprocess as mp


def work(x):
    time.sleep(0.01)
    return x * x


def main():
    with mp.Pool(2) as pool:
        # a bar while the results of an imap are consumed
        total = 0
        for value in pool.imap(work, range(200), chunksize=4, progress=True):
            total += value
        print("sum of squares:", total)

        # the same numbers reported to a function of ours
        def report(done, total):
            print("  %s of %s done" % (done, total))

        squares = pool.map(work, range(100), progress=report)
        print("map:", squares[:5], "...", squares[-1])

        # a running map_async counts too
        pending = pool.map_async(work, range(150), chunksize=5)
        while not pending.ready():
            time.sleep(0.1)
        print("map_async: %d/%d" % (pending.done, pending.total))


if __name__ == '__main__':
    main()
