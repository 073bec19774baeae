"""What the pool's own options cost when they are on (run by harness.py; see
bench.py).

    python benchmarks/bench_pool_features.py [--quick] [--only progress] [--pypi DIR]

is `python benchmarks/bench.py --group features`.  Each case runs our pool
with `progress=` or `task_timeout=` given, and the stdlib (and the PyPI
multiprocess), which have neither, without: so the ratio holds the option
to the suite's rule, at least the stdlib's speed.  The same call with the
options off is the case named in `off_case`, selected with this group so
that both are measured in the same run: the report prints on/off for ours.
This group is not part of a default run (select it with --group features,
or a matching --only).
"""
import sys
import time

from harness import case, main


def identity(x):
    return x


def _progress(done, total):
    pass


def _options(mp, option):
    # only our pool has these; the stdlib and the PyPI copy run the plain call
    if option is None or not hasattr(mp, "WorkerLostError"):
        return {}
    return {"progress": {"progress": _progress},
            "task_timeout": {"task_timeout": 60}}[option]


def _map(mp, n, chunksize, option):
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        p.map(identity, range(n), chunksize=chunksize, **_options(mp, option))
        return time.perf_counter() - t


def _imap_unordered(mp, n, chunksize, option):
    with mp.get_context("fork").Pool(2) as p:
        p.map(identity, range(100))
        t = time.perf_counter()
        for _ in p.imap_unordered(identity, range(n), chunksize=chunksize,
                                  **_options(mp, option)):
            pass
        return time.perf_counter() - t


def _apply(mp, n, option):
    with mp.get_context("fork").Pool(2) as p:
        p.apply(identity, (1,))
        opts = _options(mp, option)
        t = time.perf_counter()
        for i in range(n):
            p.apply_async(identity, (i,), **opts).get()
        return time.perf_counter() - t


def _register(name, off, fn, n, quick_n, doc, **kw):
    case(name, n=n, quick_n=quick_n, smoke_n=20, unit=kw.pop("unit", "item"),
         off_case=off, doc=doc, **kw)(fn)


_register("imap_unordered_chunksize_10", None,
          lambda mp, n: _imap_unordered(mp, n, 10, None), 20_000, 5_000,
          "Consume Pool(2).imap_unordered(identity, range(n), chunksize=10).", repeat=2)
for _opt in ("progress", "task_timeout"):
    _register(f"map_default_chunksize_{_opt}", "map_default_chunksize",
              lambda mp, n, o=_opt: _map(mp, n, None, o), 100_000, 25_000,
              f"map_default_chunksize, ours with {_opt}=")
for _opt in ("progress", "task_timeout"):
    _register(f"map_chunksize_1_{_opt}", "map_chunksize_1",
              lambda mp, n, o=_opt: _map(mp, n, 1, o), 5_000, 1_000,
              f"map_chunksize_1, ours with {_opt}=", repeat=2)
for _opt in ("progress", "task_timeout"):
    _register(f"imap_unordered_chunksize_1_{_opt}", "imap_unordered_chunksize_1",
              lambda mp, n, o=_opt: _imap_unordered(mp, n, 1, o), 5_000, 1_000,
              f"imap_unordered_chunksize_1, ours with {_opt}=", repeat=2)
for _opt in ("progress", "task_timeout"):
    _register(f"imap_unordered_chunksize_10_{_opt}", "imap_unordered_chunksize_10",
              lambda mp, n, o=_opt: _imap_unordered(mp, n, 10, o), 20_000, 5_000,
              f"imap_unordered_chunksize_10, ours with {_opt}=", repeat=2)
_register("apply_async_latency_task_timeout", "apply_async_latency",
          lambda mp, n: _apply(mp, n, "task_timeout"), 500, 200,
          "apply_async_latency, ours with task_timeout=", unit="apply")


if __name__ == "__main__":
    sys.exit(main(group="features"))
