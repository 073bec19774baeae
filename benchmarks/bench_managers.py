"""Manager cases of the benchmark suite (run by harness.py; see bench.py).

    python benchmarks/bench_managers.py [--quick] [--only dict_set_get] [--pypi DIR]

is `python benchmarks/bench.py --group managers`.  Managers use the fork
start method.
"""
import importlib
import sys
import time

from harness import best_slices, case, main


def _manager(mp):
    return mp.get_context("fork").Manager()


@case("dict_set_get", n=2_000, quick_n=500, smoke_n=10, target=1.5, unit="set + get")
def b_dict(mp, n):
    """d[k] = i then d[k] through a DictProxy: two round trips."""
    with _manager(mp) as m:
        d = m.dict()

        def loop(k):
            for i in range(k):
                d["key"] = i
                d["key"]
        loop(200)
        return best_slices(loop, n)


@case("list_append", n=4_000, quick_n=1_000, smoke_n=10, target=1.5,
      busy=True, busy_n=1_000, busy_quick_n=300, unit="append")
def b_list_append(mp, n):
    """ListProxy.append: one manager method call, one round trip."""
    with _manager(mp) as m:
        append = m.list().append

        def loop(k):
            for i in range(k):
                append(i)
        loop(200)
        return best_slices(loop, n)


@case("create_proxy", n=300, quick_n=100, smoke_n=2, unit="m.dict() + release")
def b_create(mp, n):
    """Make a managed dict and drop its proxy (create, then decref)."""
    with _manager(mp) as m:
        make = m.dict

        def loop(k):
            for _ in range(k):
                make()
        loop(20)
        return best_slices(loop, n)


def _accept_forever(listener):
    while True:
        try:
            listener.accept().close()
        except Exception:
            pass


@case("connect_authenticate", n=600, quick_n=150, smoke_n=2, unit="connect", rounds=5)
def b_connect(mp, n):
    """connection.Client to a Listener in another process, with authkey."""
    conn_mod = importlib.import_module(mp.__name__ + ".connection")
    key = b"benchmark-key"
    listener = conn_mod.Listener(family="AF_UNIX", authkey=key, backlog=64)
    server = mp.get_context("fork").Process(target=_accept_forever,
                                            args=(listener,), daemon=True)
    server.start()
    try:
        def loop(k):
            for _ in range(k):
                conn_mod.Client(listener.address, authkey=key).close()
        loop(20)
        return best_slices(loop, n)
    finally:
        server.terminate()
        server.join()
        listener.close()


# ----------------------------------------------------------------------------
# manager locks (issue #13)

@case("manager_lock_roundtrip", n=1_000, quick_n=300, smoke_n=10,
      busy=True, busy_n=400, busy_quick_n=150, unit="acquire+release")
def b_manager_lock(mp, n):
    """acquire()+release() of a Manager().Lock() from one process: two round trips."""
    with _manager(mp) as m:
        lk = m.Lock()

        def loop(k):
            for _ in range(k):
                lk.acquire()
                lk.release()
        loop(100)
        return best_slices(loop, n)


def _lock_worker(lk, count):
    for _ in range(count):
        lk.acquire()
        lk.release()


def _contended(mp, n, procs):
    """One run: `procs` processes each doing n acquire+release on one lock;
    the wall time from the first start to the last join."""
    ctx = mp.get_context("fork")
    with ctx.Manager() as m:
        lk = m.Lock()
        _lock_worker(lk, 10)
        ps = [ctx.Process(target=_lock_worker, args=(lk, n)) for _ in range(procs)]
        t = time.perf_counter()
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        dt = time.perf_counter() - t
    if any(p.exitcode for p in ps):
        raise RuntimeError("a lock worker failed")
    return dt


@case("manager_lock_contended_4", n=200, quick_n=200, smoke_n=10, busy=True,
      unit="acquire+release x 4 procs")
def b_manager_lock_4(mp, n):
    """4 processes each doing 200 acquire+release on one Manager().Lock(); wall time."""
    return _contended(mp, n, 4)


@case("manager_lock_contended_8", n=200, quick_n=200, smoke_n=10,
      unit="acquire+release x 8 procs")
def b_manager_lock_8(mp, n):
    """8 processes each doing 200 acquire+release on one Manager().Lock(); wall time."""
    return _contended(mp, n, 8)


if __name__ == "__main__":
    sys.exit(main(group="managers"))
