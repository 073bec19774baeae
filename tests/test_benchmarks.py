"""The benchmark suite still runs: every case once, tiny, under the standard
library and under us, and the harness's whole path (streams, A/A, busy
spinners, JSON, table, chart) on a few cases.  No timing is asserted: this
guards the harness against rot, the numbers are benchmarks/bench.py's job.

Skipped for an installed copy of the tests (no benchmarks/ beside them).
"""
import ast
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(BENCH, "harness.py")),
    reason="no benchmarks/ next to the tests (installed copy)")


def _run(args, timeout=240):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH, stdin=subprocess.DEVNULL)


def _case_names(*args):
    r = _run([os.path.join(BENCH, "bench.py"), "--list"] + list(args), timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def test_list_names_every_case_file_and_the_new_hard_cases():
    names = _case_names()
    for expected in ("pipe_small_roundtrip", "map_chunksize_1", "value_inc_2procs",
                     "dict_set_get", "manager_lock_contended_4", "manager_lock_contended_8",
                     "pool_oversubscribed_chunksize_1", "pool_oversubscribed_default",
                     "imap_generator_1m", "imap_list_1m", "imap_unordered_list_1m",
                     "queue_4_producers_4_consumers", "queue_1mb",
                     "pipe_small_roundtrip_busy", "apply_async_latency_busy",
                     "list_append_busy", "manager_lock_roundtrip_busy",
                     "manager_lock_contended_4_busy"):
        assert expected in names
    assert len(names) == len(set(names))
    # the options' group runs only when asked for, with the calls it is measured against
    assert not any(n.endswith("_progress") for n in names)
    features = _case_names("--group", "features")
    assert "map_chunksize_1_progress" in features and "map_chunksize_1" in features


@pytest.mark.timeout(300)
@pytest.mark.parametrize("impl", ["stdlib", "ours"])
def test_every_case_runs_once_in_smoke_mode(impl):
    names = [n for n in _case_names() if not n.endswith("_busy")]
    names += [n for n in _case_names("--group", "features") if n not in names]
    r = _run([os.path.join(BENCH, "harness.py"), "--measure", impl, "--mode", "smoke"]
             + names)
    assert r.returncode == 0, r.stderr[-3000:]
    results = [ast.literal_eval(line) for line in r.stdout.splitlines()
               if line.startswith("{")]
    assert [res["case"] for res in results] == names
    for res in results:
        assert "error" not in res, res
        assert res["times"] and all(t > 0 for t in res["times"]), res
    expected = "multiprocessing" if impl == "stdlib" else "multiprocess"
    assert os.path.basename(results[0]["module"]) == expected


@pytest.mark.timeout(300)
def test_suite_writes_json_table_and_chart(tmp_path):
    out = tmp_path / "r.json"
    # list_append brings its _busy variant, pipe_small_roundtrip its raw floor
    r = _run([os.path.join(BENCH, "bench_managers.py"), "--smoke", "--only", "list_append",
              "--json", str(out), "--silent"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| list_append_busy |" in r.stdout and "Verdicts:" in r.stdout
    data = json.loads(out.read_text())
    assert set(data["cases"]) == {"list_append", "list_append_busy"}
    entry = data["cases"]["list_append"]
    assert set(entry["values"]) == {"stdlib", "ours", "stdlib_aa"}
    assert entry["ratio"] > 0 and entry["band"] >= 1.0
    assert entry["verdict"] in ("ok", "ok~", "MISS")
    assert data["cases"]["list_append_busy"]["busy"] is True

    svg = tmp_path / "chart.svg"
    r = _run([os.path.join(BENCH, "report.py"), str(out), "--svg", str(svg)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| list_append |" in r.stdout
    root = ET.parse(svg).getroot()
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "list_append" in texts and "list_append_busy" in texts


@pytest.mark.timeout(120)
def test_reference_case_runs_in_its_own_stream(tmp_path):
    out = tmp_path / "r.json"
    r = _run([os.path.join(BENCH, "bench.py"), "--smoke", "--only", "pipe_small_roundtrip",
              "--no-busy", "--no-aa", "--json", str(out), "--silent"])
    assert r.returncode == 0, r.stderr[-3000:]
    cases = json.loads(out.read_text())["cases"]
    assert list(cases) == ["pipe_raw_floor", "pipe_small_roundtrip"]
    assert set(cases["pipe_raw_floor"]["values"]) == {"raw"}
    assert set(cases["pipe_small_roundtrip"]["values"]) == {"stdlib", "ours"}


def test_spinners_stop_when_the_measurement_ends():
    sys.path.insert(0, BENCH)
    try:
        import harness
    finally:
        sys.path.remove(BENCH)
    with harness.Spinners(2) as spin:
        procs = list(spin.procs)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


@pytest.mark.timeout(120)
def test_report_fills_the_doc_sections_from_two_runs(tmp_path):
    out = tmp_path / "r.json"
    r = _run([os.path.join(BENCH, "bench_shared.py"), "--smoke", "--only", "value_get",
              "--json", str(out), "--silent"])
    assert r.returncode == 0, r.stderr[-3000:]
    doc = tmp_path / "perf.md"
    key = json.loads(out.read_text())["meta"]["python"].rsplit(".", 1)[0]
    doc.write_text(f"# t\n<!-- bench matrix begin -->\nold\n<!-- bench matrix end -->\n"
                   f"<!-- bench {key} begin -->\n<!-- bench {key} end -->\ntail\n")
    r = _run([os.path.join(BENCH, "report.py"), str(out), str(out), "--matrix",
              "--update-doc", str(doc)])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run([os.path.join(BENCH, "report.py"), str(out), "--svg", str(tmp_path / "c.svg"),
              "--update-doc", str(doc)])
    assert r.returncode == 0, r.stderr[-3000:]
    text = doc.read_text()
    assert "old" not in text and text.endswith("tail\n")
    assert text.count("| value_get |") == 2
    assert "](c.svg)" in text


def test_cheap_cases_keep_their_own_rounds_unless_rounds_is_given():
    sys.path.insert(0, BENCH)
    try:
        import harness
        cases = harness.load_cases()
    finally:
        sys.path.remove(BENCH)
    ns = harness.parser().parse_args(["--quick"])
    lock, pipe = cases["lock_uncontended"], cases["pipe_small_roundtrip"]
    assert harness.case_rounds(lock, ns, 2) == lock.rounds > 2
    assert harness.case_rounds(pipe, ns, 2) == 2
    ns.rounds = 3
    assert harness.case_rounds(lock, ns, 3) == 3
    ns.rounds, ns.mode = None, "smoke"
    assert harness.case_rounds(lock, ns, 1) == 1
