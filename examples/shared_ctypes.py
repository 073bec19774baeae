"""Shared memory through ctypes: Value and Array.

Value and Array live in shared memory, so a child's writes are seen by the
parent without any message.  Each comes with a lock (get_lock()) for
compound updates.

    python examples/shared_ctypes.py
"""
import ctypes

import multiprocess as mp


def fill(total, squares, start, stop):
    for i in range(start, stop):
        squares[i] = i * i
        with total.get_lock():          # += is read-modify-write
            total.value += i * i


def main():
    n = 10
    total = mp.Value(ctypes.c_long, 0)
    squares = mp.Array('d', n)          # n doubles, zero-filled
    half = n // 2
    procs = [mp.Process(target=fill, args=(total, squares, 0, half)),
             mp.Process(target=fill, args=(total, squares, half, n))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    print("squares:", list(squares))
    print("sum:", total.value, "=", sum(i * i for i in range(n)))

    # a raw array (no lock) seen as a slice, and a shared C string
    raw = mp.RawArray('i', range(5))
    print("raw array slice:", raw[1:4])
    name = mp.Array('c', b'multiprocess')
    print("shared bytes:", name.value)


if __name__ == '__main__':
    main()
