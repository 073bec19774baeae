"""Tables and charts from the suite's JSON (harness.py --json).

    python benchmarks/report.py RESULTS.json                  # Markdown table
    python benchmarks/report.py RESULTS.json --svg CHART.svg  # and the chart
    python benchmarks/report.py A.json B.json --matrix        # ratios across runs
    python benchmarks/report.py RESULTS.json --svg CHART.svg --update-doc docs/performance.md

--update-doc writes into the file's `<!-- bench KEY begin -->` ...
`<!-- bench KEY end -->` section (KEY: the run's Python version, such as
3.11, or `matrix`), which is how docs/performance.md's tables are made.

The chart is plain SVG written by this file (no plotting library): one row
per case, the speed-up against the stdlib of ours and of the PyPI
multiprocess side by side on a log scale, the grey strip around 1x being
that case's A/A noise band in the run.
"""
import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape


def fmt_time(sec):
    if sec is None:
        return "-"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if sec >= scale * 0.9995:
            return f"{sec / scale:.3g} {unit}"
    return f"{sec * 1e9:.3g} ns"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def fmt_band(band):
    return "-" if band is None else f"±{(band - 1) * 100:.0f}%"


def heading(data):
    m = data["meta"]
    v = m.get("versions", {})
    extra = f", PyPI multiprocess {v['pypi']}" if v.get("pypi") else ""
    load = m.get("loadavg_end")
    load = f", load average {load[0]:.1f} at the end" if load else ""
    return (f"Python {m['python']}, {m['cpus']} CPUs, {m['mode']} mode, "
            f"{m['rounds']} interleaved rounds, started {m['started']}, "
            f"{m['seconds']:.0f} s{load}; ours {v.get('ours', '?')}{extra}. "
            "Times are the best per operation; `xN` columns are speed-ups "
            "(stdlib time / ours: above 1, ours is faster); the A/A band is how "
            "far two measurements of the stdlib landed apart.")


def _stdlib_speedup(entry, impl):
    best = entry.get("best", {})
    if best.get("stdlib") and best.get(impl):
        return best["stdlib"] / best[impl]
    return None


def markdown_table(data):
    cases = data["cases"]
    pypi = data["meta"].get("pypi")
    head = ["case", "unit", "stdlib", "ours"] + (["pypi"] if pypi else []) + \
        ["ours x stdlib", "A/A band", "target", "verdict"] + \
        (["pypi x stdlib", "ours x pypi"] if pypi else [])
    rows = []
    for name, e in cases.items():
        best = e.get("best", {})
        if e.get("floor_of"):
            t = fmt_time(best.get("raw"))
            row = [name, e["unit"], t, t] + (["-"] if pypi else []) + \
                ["ref", "", "", f"floor of {e['floor_of']}"] + (["", ""] if pypi else [])
            rows.append(row)
            continue

        def shown(impl):
            if impl in e.get("errors", {}) and not best.get(impl):
                return "ERROR"
            return fmt_time(best.get(impl))
        row = [name, e["unit"], shown("stdlib"), shown("ours")]
        if pypi:
            row.append(shown("pypi"))
        tgt = "-" if e["target"] is None else f">={e['target']:.2f}x"
        row += [fmt_ratio(e.get("ratio")), fmt_band(e.get("band")), tgt,
                e.get("verdict") or ""]
        if pypi:
            vs = fmt_ratio(e.get("pypi_ratio"))
            if e.get("pypi_target"):
                vs += f" (>={e['pypi_target']:.0f}x {e.get('pypi_verdict')})"
            row += [fmt_ratio(_stdlib_speedup(e, "pypi")), vs]
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append(summary(data))
    costs = option_costs(data)
    if costs:
        lines.append("")
        lines.append(costs)
    return "\n".join(lines)


def option_costs(data):
    """Our time with an option on over our time with it off, same run."""
    out = []
    for name, e in data["cases"].items():
        off = data["cases"].get(e.get("off_case") or "")
        on_t, off_t = e.get("best", {}).get("ours"), (off or {}).get("best", {}).get("ours")
        if on_t and off_t:
            out.append(f"{name} {on_t / off_t:.2f}")
    if not out:
        return ""
    return ("Our time with the option on / off (1.00: free): " + "; ".join(out) + ".")


def below_parity(data):
    """Cases where ours is below the stdlib's speed outside the A/A band."""
    out = []
    for name, e in data["cases"].items():
        r, band = e.get("ratio"), e.get("band") or 1.0
        if r is not None and r * band < 1.0:
            out.append((name, r, band))
    return out


def summary(data):
    counts = {}
    for e in data["cases"].values():
        v = e.get("verdict")
        if v:
            counts[v] = counts.get(v, 0) + 1
    parts = [f"{counts.get(k, 0)} {k}" for k in ("ok", "ok~", "MISS", "ERROR")]
    misses = [f"{n} {e['ratio']:.2f}x (target {e['target']:.2f}x, band "
              f"{fmt_band(e.get('band'))})" for n, e in data["cases"].items()
              if e.get("verdict") == "MISS" and e.get("ratio") is not None]
    low = below_parity(data)
    text = "Verdicts: " + ", ".join(parts) + "."
    if misses:
        text += " Targets missed: " + "; ".join(misses) + "."
    if low:
        text += " Below the stdlib outside the noise band: " + "; ".join(
            f"{n} {r:.2f}x (band {fmt_band(b)})" for n, r, b in low) + "."
    else:
        text += " No case below the stdlib's speed outside its noise band."
    return text


# ----------------------------------------------------------------------------
# SVG chart

COLORS = {"ours": "#1f77b4", "pypi": "#ff7f0e"}


def _tick(v):
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.2g}"


def svg_chart(data, title=None):
    rows = [(n, e) for n, e in data["cases"].items() if not e.get("floor_of")]
    impls = ["ours"] + (["pypi"] if data["meta"].get("pypi") else [])
    values = [_stdlib_speedup(e, i) for _, e in rows for i in impls]
    values = [v for v in values if v]
    lo = min([0.5] + values)
    hi = max([2.0] + values)
    lo_e, hi_e = math.floor(math.log10(lo) * 2) / 2, math.ceil(math.log10(hi) * 2) / 2
    label_w, plot_w, right = 270, 560, 60
    bar_h, gap = 8, 6
    row_h = bar_h * len(impls) + gap
    top, bottom = 54, 40
    width = label_w + plot_w + right
    height = top + row_h * len(rows) + bottom

    def x(v):
        return label_w + (math.log10(v) - lo_e) / (hi_e - lo_e) * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    m = data["meta"]
    title = title or (f"Speed-up against the stdlib, Python {m['python']}, "
                      f"{m['mode']} run of {m['started']} (log scale)")
    out.append(f'<text x="10" y="18" font-size="13" font-weight="bold">'
               f'{escape(title)}</text>')
    lx = label_w
    for i in impls:
        label = {"ours": "multiprocess (ours)", "pypi": "PyPI multiprocess 0.70.19"}[i]
        out.append(f'<rect x="{lx}" y="28" width="12" height="10" fill="{COLORS[i]}"/>')
        out.append(f'<text x="{lx + 16}" y="37">{escape(label)}</text>')
        lx += 190
    out.append(f'<rect x="{lx}" y="28" width="12" height="10" fill="#ddd"/>'
               f'<text x="{lx + 16}" y="37">A/A noise band</text>')
    # grid: every half decade over a short span, else every decade
    step = 0.5 if hi_e - lo_e <= 3 else 1.0
    e = math.ceil(lo_e / step) * step
    while e <= hi_e + 1e-9:
        v = 10 ** e
        gx = x(v)
        strong = abs(e) < 1e-9
        out.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" '
                   f'y2="{top + row_h * len(rows)}" stroke="{"#333" if strong else "#ccc"}" '
                   f'stroke-width="{1.2 if strong else 0.6}"/>')
        out.append(f'<text x="{gx:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                   f'{_tick(v)}x</text>')
        e += step
    for k, (name, entry) in enumerate(rows):
        y0 = top + k * row_h
        band = entry.get("band")
        if band:
            bx0, bx1 = x(max(10 ** lo_e, 1 / band)), x(min(10 ** hi_e, band))
            out.append(f'<rect x="{bx0:.1f}" y="{y0}" width="{max(1.0, bx1 - bx0):.1f}" '
                       f'height="{bar_h * len(impls)}" fill="#ddd"/>')
        color = "#c00" if entry.get("verdict") == "MISS" else "#000"
        out.append(f'<text x="{label_w - 6}" y="{y0 + bar_h * len(impls) / 2 + 4:.1f}" '
                   f'text-anchor="end" fill="{color}">{escape(name)}</text>')
        for j, impl in enumerate(impls):
            v = _stdlib_speedup(entry, impl)
            yb = y0 + j * bar_h
            if not v:
                out.append(f'<text x="{x(1) + 4:.1f}" y="{yb + bar_h - 1}" '
                           f'font-size="8">n/a</text>')
                continue
            x0, x1 = sorted((x(1), x(v)))
            out.append(f'<rect x="{x0:.1f}" y="{yb}" width="{max(1.0, x1 - x0):.1f}" '
                       f'height="{bar_h - 1}" fill="{COLORS[impl]}"/>')
            tx = x(v) + (4 if v >= 1 else -4)
            out.append(f'<text x="{tx:.1f}" y="{yb + bar_h - 1}" font-size="8" '
                       f'text-anchor="{"start" if v >= 1 else "end"}">{v:.2f}x</text>')
    out.append(f'<text x="{label_w + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
               'stdlib time / implementation time (right of 1x: faster than the stdlib)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def matrix_table(datas):
    """One row per case, one column per run (Python version): stdlib/ours
    with the run's verdict, so that a target can be followed across
    versions."""
    cols = [d["meta"]["python"] + ("" if d["meta"]["mode"] == "full" else f" ({d['meta']['mode']})")
            for d in datas]
    names = []
    for d in datas:
        names += [n for n in d["cases"] if n not in names]
    head = ["case", "target"] + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    marks = {"ok": "", "ok~": " ~", "MISS": " **MISS**", "ERROR": " ERROR"}
    for n in names:
        entries = [d["cases"].get(n) for d in datas]
        ref = next(e for e in entries if e)
        if ref.get("floor_of"):
            continue
        tgt = "-" if ref["target"] is None else f">={ref['target']:.2f}x"
        cells = []
        for e in entries:
            if not e or e.get("ratio") is None:
                cells.append("-")
                continue
            cells.append(f"{e['ratio']:.2f}x {fmt_band(e.get('band'))}"
                         + marks.get(e.get("verdict"), ""))
        lines.append("| " + " | ".join([n, tgt] + cells) + " |")
    lines.append("")
    lines.append("Each cell: stdlib/ours in that version's run, its A/A band, and "
                 "`~` when the target is missed by less than the band, **MISS** "
                 "when by more.")
    return "\n".join(lines)


def update_doc(path, key, text):
    """Put text between the `<!-- bench KEY begin -->` and `<!-- bench KEY
    end -->` lines of a Markdown file (the generated parts of
    docs/performance.md)."""
    begin, end = f"<!-- bench {key} begin -->", f"<!-- bench {key} end -->"
    with open(path) as f:
        doc = f.read()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: no '{begin}' ... '{end}' section")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + text.rstrip() + "\n" + end + tail)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="JSON written by the suite's --json")
    ap.add_argument("--svg", help="write the chart of the (first) results here")
    ap.add_argument("--title", help="the chart's title")
    ap.add_argument("--matrix", action="store_true",
                    help="one table of stdlib/ours across all the results given")
    ap.add_argument("--update-doc", metavar="MD",
                    help="write the output into MD's '<!-- bench KEY begin/end -->' "
                         "section instead of stdout (KEY: the Python version, or "
                         "'matrix')")
    ns = ap.parse_args(argv)
    datas = []
    for path in ns.results:
        with open(path) as f:
            datas.append(json.load(f))
    if ns.matrix:
        key, text = "matrix", matrix_table(datas)
    else:
        data = datas[0]
        key = data["meta"]["python"].rsplit(".", 1)[0]
        text = heading(data) + "\n\n" + markdown_table(data)
        if ns.svg:
            with open(ns.svg, "w") as f:
                f.write(svg_chart(data, ns.title))
            if ns.update_doc:
                rel = os.path.relpath(ns.svg, os.path.dirname(os.path.abspath(ns.update_doc)))
                text += f"\n\n![Speed-up against the stdlib, Python {key}]({rel})"
    if ns.update_doc:
        update_doc(ns.update_doc, key, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
