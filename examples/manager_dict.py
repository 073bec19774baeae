"""A dictionary shared through a Manager.

The manager runs a server process that owns the real dict; the proxies
handed to the children forward every operation to it.  Only proxy
operations go to the server: mutating a value fetched from the proxy
changes a local copy, so assign it back.

    python examples/manager_dict.py
"""
import multiprocess as mp


def record(shared, lock, word):
    shared[word] = len(word)
    with lock:                          # read-modify-write on the server
        shared['total'] = shared.get('total', 0) + len(word)


def main():
    words = ['alpha', 'beta', 'gamma', 'delta']
    with mp.Manager() as manager:
        shared = manager.dict()
        lock = manager.Lock()
        procs = [mp.Process(target=record, args=(shared, lock, w)) for w in words]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        result = dict(shared)           # a plain copy, usable after shutdown

        # nested containers: assign back after mutating a local copy
        shared['letters'] = []
        letters = shared['letters']
        letters.append('a')
        shared['letters'] = letters
        print("letters:", shared['letters'])
    print("shared dict:", dict(sorted(result.items())))


if __name__ == '__main__':
    main()
