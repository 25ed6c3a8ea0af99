"""Exchange on real runs: aggregates exported from the ledger of a published release, and the
real studies run on a dataset made by `studylib import ctdc`.

Oracle: the published report.html as a reader sees it (its tables parsed here); every cell of
the XLSX and CSV export must read the same, hidden cells as the study's symbol.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from openpyxl import load_workbook

from runner_fixtures import dataset_tables, make_project, made_by, write_study
from studylib.data import write_dataset
from studylib.exchange.ctdc_import import import_ctdc
from studylib.exchange.htcds_export import export_cases, write_csv
from studylib.privacy.pseudonymiser import Pseudonymiser
from studylib.runner.batch import BatchSettings, run_batch

pytestmark = pytest.mark.slow

CELLS = [
    ("code", "from studylib.data import read_dataset\nfrom studylib.report import safe_table"),
    ("parameters", "data_dir: str = ''"),
    ("code", "cases = read_dataset(data_dir).cases"),
    ("code", "safe_table(cases, rows='sector', caption='Persons by sector')"),
    ("code", "safe_table(cases, rows='nationality', columns='sex', caption='Persons by nationality and sex')"),
]


def _studylib(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studylib.cli", *args], capture_output=True, text=True, env=os.environ)


def _template(root: Path) -> None:
    nb = nbformat.v4.new_notebook()
    for kind, source in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (root / "templates").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / "templates" / "tables.ipynb")


def _html_tables(report: Path) -> list[tuple[str, list[list[str]]]]:
    """(caption, rows) of every table of the published HTML: the header row, then label and cells per row."""
    page = (report / "report.html").read_text()
    out = []
    for table in re.findall(r"<table.*?</table>", page, re.S):
        caption = re.search(r"<caption>(.*?)</caption>", table).group(1)
        header = re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[0])[-1]
        rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", header)]]
        body = table.split("<tbody>")[1]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body):
            rows.append([re.sub(r"<[^>]+>", "", c).replace(",", "") for c in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row)])
        out.append((caption, rows))
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    data = write_dataset(dataset_tables(300, seed=2), root / "dataset", made_by=made_by("tests/test_exchange_runs.py"))
    _template(root)
    common = {"template": "../templates/tables.ipynb", "data": str(data), "parameters": {}, "formats": ["html"]}
    studies = [write_study(root, {"id": "plain", "title": "Plain", **common, "disclosure": {"min_cell": 5, "rounding": None}}),
               write_study(root, {"id": "rounded", "title": "Rounded", **common,
                                  "disclosure": {"min_cell": 5, "rounding": 3, "symbol": "[x]"}})]
    result = run_batch(studies, BatchSettings(reports=root / "reports", workers=1, state=root / "state"))
    assert [o.status for o in result.outcomes] == ["published", "published"], [o.message for o in result.outcomes]
    return root


def test_the_aggregates_reload_cell_for_cell_as_published_with_their_metadata(release, tmp_path):
    out = tmp_path / "for_ministry"
    done = _studylib("export", "aggregates", "--release", "--reports", str(release / "reports"),
                     "--state", str(release / "state"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "aggregates.json").read_text())
    book = load_workbook(out / "aggregates.xlsx")
    published = {key: _html_tables(release / "reports" / key) for key in ("plain", "rounded")}
    assert [t["report"] for t in meta["tables"]] == ["plain", "plain", "rounded", "rounded"]
    hidden_seen = set()
    for table in meta["tables"]:
        caption, html_rows = published[table["report"]][[t["caption"] for t in meta["tables"] if t["report"] == table["report"]].index(table["caption"])]
        assert caption == table["caption"]
        sheet = book[table["sheet"]]
        rows = [[("" if v is None else str(v)) for v in r] for r in sheet.iter_rows(values_only=True)]
        assert rows[0][0] == caption
        grid_start = next(i for i, r in enumerate(rows) if i > 0 and not any(rows[i - 1]) and any(r))
        grid = [[v for v in r if v != ""] if i == 0 else r[:len(html_rows[1])] for i, r in enumerate(rows[grid_start:])]
        body = grid[1:]
        assert [[str(x).replace("_", " ") for x in r] for r in body] == html_rows[1:]  # every cell as the reader sees it
        with open(out / table["csv"], newline="") as handle:
            from_csv = list(csv.reader(handle))[1:]
        assert [[x.replace("_", " ") for x in r] for r in from_csv] == html_rows[1:]
        symbol = "[x]" if table["report"] == "rounded" else "[c]"
        assert table["symbol"] == symbol and any(symbol in n for n in table["notes"])
        assert any(symbol in str(c) for r in rows[:grid_start] for c in r)  # the note is on the sheet
        assert table["settings"]["min_cell"] == 5
        assert table["settings"]["rounding"] == (3 if table["report"] == "rounded" else None)
        hidden_seen |= {symbol for r in body for c in r if c == symbol}
    assert hidden_seen == {"[c]", "[x]"}  # the release hid cells in both: the symbols were exercised
    about = [[c for c in r if c is not None] for r in book["About"].iter_rows(values_only=True)]
    assert sum(1 for r in about if r and str(r[0]).startswith("Table ")) == 4


def test_one_study_only_and_a_study_never_run(release, tmp_path):
    out = tmp_path / "plain_only"
    assert _studylib("export", "aggregates", "--study", "plain", "--reports", str(release / "reports"),
                     "--state", str(release / "state"), "--out", str(out)).returncode == 0
    assert {t["report"] for t in json.loads((out / "aggregates.json").read_text())["tables"]} == {"plain"}
    done = _studylib("export", "aggregates", "--study", "never", "--reports", str(release / "reports"),
                     "--state", str(release / "state"), "--out", str(tmp_path / "none"))
    assert done.returncode == 2 and "no published report of study 'never'" in done.stderr
    assert not (tmp_path / "none").exists()
    # the ledger is read, not the data: without the state there is nothing to export
    done = _studylib("export", "aggregates", "--release", "--reports", str(release / "reports"),
                     "--state", str(tmp_path / "empty_state"), "--out", str(tmp_path / "none"))
    assert done.returncode == 2 and "ledger" in done.stderr and not (tmp_path / "none").exists()


def test_the_real_studies_run_on_a_dataset_imported_from_our_export(tmp_path):
    export = export_cases(dataset_tables(1500, seed=3)["cases"], k=1)
    write_csv(export.frame, tmp_path / "partner.csv")
    import_ctdc(tmp_path / "partner.csv", tmp_path / "imported", Pseudonymiser.from_key_file(os.environ["STUDYLIB_KEY_FILE"]))
    project = make_project(tmp_path / "project", tmp_path / "imported", studies=("au_pair", "overview"))
    for path in (project / "studies").glob("*.yaml"):
        study = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**study, "formats": ["html"]}))
    result = run_batch(sorted((project / "studies").glob("*.yaml")),
                       BatchSettings(reports=project / "reports", workers=1, state=project / "state", studies_dir=project / "studies"))
    assert {o.key: o.status for o in result.outcomes} == {"au_pair": "published", "overview": "published"}, \
        [o.message for o in result.outcomes]
    manifest = json.loads((project / "reports" / "au_pair" / "manifest.json").read_text())
    assert manifest["audit"]["status"] == "passed" and manifest["audit"]["key_checked"]  # at full strength: the key is the import's
