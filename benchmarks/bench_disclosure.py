"""Benchmark of disclosure control and the output audit (targets: 2 s each).

1. A 50x50 count table protected (protect_table attacks its own result) and then
   attacked in full (exact bounds of every hidden cell): a typical table (about one cell in
   ten below the minimum), a sparse one (about two in five), and the typical one with
   controlled rounding instead of suppression. The full attack is timed twice: as
   maximum flows (what attack() does for one- and two-dimensional tables) and as the linear
   programmes they replace (attack(..., networks=False)); the bounds must be the same.
2. The audit of a 5 MB report, with the key and a deny list: an HTML page as exported
   (figures as embedded PNG, safe tables, text) and the executed notebook it came from;
   also a 5 MB page of text and tables only (the worst case for the text rules).

Run: .venv/bin/python benchmarks/bench_disclosure.py
"""

from __future__ import annotations

import json
import time

import nbformat
import numpy as np
import pandas as pd
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from studylib.privacy import attack, audit_html, audit_notebook, make_deny_list, protect_table
from studylib.report import safe_figure, safe_table

TARGET = 2.0
MB = 1024 * 1024


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_tables() -> None:
    rng = np.random.default_rng(2024)
    typical = rng.poisson(rng.lognormal(3.0, 1.0, size=(50, 50)))
    sparse = rng.poisson(rng.lognormal(1.5, 1.2, size=(50, 50)))
    cases = [
        ("typical (~10% small)", typical, {}),
        ("sparse (~40% small)", sparse, {}),
        ("typical, rounding base 5", typical, {"rounding": 5}),
        ("sparse, rounding base 5", sparse, {"rounding": 5}),
    ]
    for name, counts, options in cases:
        protected, t_protect = _timed(protect_table, pd.DataFrame(counts), min_cell=5, **options)
        bounds, t_attack = _timed(attack, protected)
        reference, t_lp = _timed(attack, protected, networks=False)
        total = t_protect + t_attack
        print(f"50x50 {name:26s} attacked {len(bounds):4d}  protect {t_protect:5.2f} s  full attack "
              f"{t_attack:5.2f} s  total {total:5.2f} s  ({total / TARGET:.2f} of target)  | attack as "
              f"programmes {t_lp:5.2f} s ({t_lp / t_attack:4.1f}x slower), same bounds: {bounds.equals(reference)}  "
              f"all safe: {bool(bounds['safe'].all())}")


def _report_parts(rng):
    regions = ["hovedstaden", "sjaelland", "syddanmark", "midtjylland", "nordjylland"]
    figures = []
    for i in range(12):
        series = pd.Series(rng.integers(0, 60, size=8), index=pd.Index([f"group {j}" for j in range(8)], name="group"))
        figures.append(safe_figure(series, kind="bar", caption=f"Persons by group, panel {i}", ylabel="persons"))
    tables = []
    for i in range(40):
        frame = pd.DataFrame(rng.integers(0, 40, size=(5, 4)), index=pd.Index(regions, name="region"),
                             columns=pd.Index(["female", "male", "transgender", "unknown"], name="sex"))
        tables.append(safe_table(frame, caption=f"Persons by region and sex, {2010 + i % 14}"))
    text = ("<p>In 2019 the centre registered 64 persons, 38 in prostitution and 17 in forced labour; "
            "the reflection period was 30+30+40 days until 2013 and up to 120 days since. Persons were "
            "referred by outreach teams, the police and NGOs; 12 34 56 of them were minors.</p>\n")
    return figures, tables, text


def _html_report(figures, tables, text, size: int, with_figures: bool) -> str:
    parts, length, i = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Bench</title></head><body>"], 0, 0
    while length < size:
        piece = (figures[i % len(figures)].to_html() if with_figures and i % 3 == 0 else "") \
            + tables[i % len(tables)].to_html() + text * 3
        parts.append(piece)
        length += len(piece)
        i += 1
    parts.append("<footer><code>sha256:" + "ab12" * 16 + "</code></footer></body></html>")
    return "\n".join(parts)


def _notebook_report(figures, tables, text, size: int) -> dict:
    cells, length, i = [], 0, 0
    while length < size:
        exhibit = figures[i % len(figures)] if i % 3 == 0 else tables[i % len(tables)]
        data, metadata = exhibit._repr_mimebundle_()
        cell = new_code_cell(f"safe_table(table_{i}, caption='...')", execution_count=i + 1)
        cell.outputs = [new_output("execute_result", data=data, metadata=metadata, execution_count=i + 1),
                        new_output("stream", name="stdout", text="persons: 64, events: 1234\n")]
        cells += [new_markdown_cell(text), cell]
        length += len(json.dumps(data)) + len(text)
        i += 1
    return new_notebook(cells=cells, metadata={"papermill": {"parameters": {"sector": "cleaning", "min_cell": 5}}})


def bench_audit() -> None:
    rng = np.random.default_rng(7)
    key = rng.bytes(32)
    deny = make_deny_list([f"Name{i} Surname{i}" for i in range(2000)] + ["Maria Grace Okafor"], key)
    figures, tables, text = _report_parts(rng)
    for label, page in [
        ("HTML report with figures", _html_report(figures, tables, text, 5 * MB, True)),
        ("HTML of text and tables", _html_report(figures, tables, text, 5 * MB, False)),
    ]:
        findings, seconds = _timed(audit_html, page, min_cell=5, deny_list=deny, key=key)
        print(f"audit {label:26s} {len(page) / MB:4.1f} MB  {seconds:5.2f} s  ({seconds / TARGET:.2f} of target)  "
              f"findings: {len(findings)}")
    notebook = _notebook_report(figures, tables, text, 5 * MB)
    size = len(nbformat.writes(notebook)) / MB
    findings, seconds = _timed(audit_notebook, notebook, min_cell=5, deny_list=deny, key=key)
    print(f"audit {'executed notebook':26s} {size:4.1f} MB  {seconds:5.2f} s  ({seconds / TARGET:.2f} of target)  "
          f"findings: {len(findings)}")


if __name__ == "__main__":
    bench_tables()
    bench_audit()
