"""A release protected as a whole, on real kernels: differencing across reports and across releases.

The oracle is the reader's own arithmetic on the published HTML: two reports' cells for the
same sector subtracted one from the other must never give a count from 1 to min_cell - 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from runner_fixtures import dataset_tables, made_by, write_study
from studylib.data import write_dataset
from studylib.runner.batch import BatchSettings, run_batch

pytestmark = pytest.mark.slow

TEMPLATE_CELLS = [
    ("code", "from typing import Optional\nfrom studylib.data import read_dataset\nfrom studylib.report import safe_table"),
    ("parameters", "data_dir: str = ''\nregion_out: Optional[str] = None\nyear_to: Optional[int] = None"),
    ("code", "cases = read_dataset(data_dir).cases\n"
             "persons = cases if region_out is None else cases[cases.region != region_out]\n"
             "persons = persons if year_to is None else persons[persons.first_contact_year <= year_to]"),
    ("code", "safe_table(persons, rows='sector', caption='Persons by sector')"),
]


def _template(folder: Path, extra: list[tuple[str, str]] = ()) -> Path:
    cells = []
    for kind, source in [*TEMPLATE_CELLS, *extra]:
        cell = nbformat.v4.new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "templates" / "by_sector.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _dataset(folder: Path) -> Path:
    tables = dataset_tables(n=400, seed=11)
    cases = tables["cases"]
    construction = np.flatnonzero(cases.sector.to_numpy() == "construction")
    region = cases.region.to_numpy(dtype=object).copy()
    region[construction] = "sjaelland"
    region[construction[:3]] = "hovedstaden"  # 3 construction workers in the capital region: the cell a reader must not get
    cases["region"] = region
    return write_dataset(tables, folder / "dataset", made_by=made_by("tests/test_release_runner.py"))


def _study(root: Path, data: Path, study_id: str, **parameters) -> Path:
    return write_study(root, {"id": study_id, "title": study_id, "template": "../templates/by_sector.ipynb",
                              "data": str(data), "parameters": parameters,
                              "disclosure": {"min_cell": 5, "rounding": None}, "formats": ["html"]})


def _published_cells(report: Path) -> dict[str, int | None]:
    """Sector -> count as a reader sees it in the published HTML (None where the symbol is shown)."""
    page = (report / "report.html").read_text()
    table = page[page.index("<table"):page.index("</table>")]
    cells = {}
    for label, value in re.findall(r"<tr[^>]*><th>([^<]*)</th><td>([^<]*)</td></tr>", table):
        cells[label] = None if value == "[c]" else int(value.replace(",", ""))
    return cells


def _differences(a: dict, b: dict) -> dict[str, int]:
    return {k: a[k] - b.get(k, 0) for k in a if a[k] is not None and b.get(k, 0) is not None}


def test_two_reports_whose_difference_would_show_a_small_group_are_protected_together(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path)
    studies = [_study(tmp_path, data, "nation"), _study(tmp_path, data, "without_capital", region_out="hovedstaden")]
    settings = BatchSettings(reports=tmp_path / "reports", workers=2, state=tmp_path / "state")
    result = run_batch(studies, settings)
    assert {o.key: o.status for o in result.outcomes} == {"nation": "published", "without_capital": "published"}, \
        [o.message for o in result.outcomes]
    nation = _published_cells(tmp_path / "reports" / "nation")
    without = _published_cells(tmp_path / "reports" / "without_capital")
    # each table alone hides nothing: every sector has at least 5 persons
    manifests = {k: json.loads((tmp_path / "reports" / k / "manifest.json").read_text()) for k in ("nation", "without_capital")}
    assert max(m["release"]["rounds"] for m in manifests.values()) >= 2  # the release needed another run
    differences = _differences(nation, without)
    assert all(not 1 <= d <= 4 for d in differences.values()), differences
    assert "construction" not in differences  # the 3 are hidden in one of the two reports
    # the ledger is private state: beside the reports, never under them
    assert (tmp_path / "state").is_dir() and not list((tmp_path / "reports").rglob("*.parquet"))


def test_a_new_release_beside_the_one_already_out_cannot_give_the_new_year_alone(tmp_path):
    tables = dataset_tables(n=400, seed=5)
    cases = tables["cases"]
    years = cases.first_contact_year.to_numpy().copy()
    construction = np.flatnonzero(cases.sector.to_numpy() == "construction")
    years[years == 2024] = 2023
    years[construction[:2]] = 2024  # the new year adds 2 construction workers
    cases["first_contact_year"] = years
    data = write_dataset(tables, tmp_path / "dataset", made_by=made_by("tests/test_release_runner.py"))
    _template(tmp_path)
    study = _study(tmp_path, data, "period", year_to=2023)
    settings = BatchSettings(reports=tmp_path / "reports", workers=1, state=tmp_path / "state")
    first = run_batch([study], settings)
    assert first.outcomes[0].status == "published", first.outcomes[0].message
    last_year = _published_cells(tmp_path / "reports" / "period")
    study = _study(tmp_path, data, "period", year_to=2024)
    second = run_batch([study], settings)
    assert second.outcomes[0].status == "published", second.outcomes[0].message
    this_year = _published_cells(tmp_path / "reports" / "period")
    differences = _differences(this_year, last_year)
    assert all(not 1 <= d <= 4 for d in differences.values()), differences
    assert this_year["construction"] is None  # the cell that would give the 2 away stays hidden
    history = list((tmp_path / "state").glob("*/history/*"))
    assert len(history) == 1  # the 2023 version is kept: it is still out there


def test_a_report_that_prints_a_count_is_refused_naming_the_cell(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path, [("code", "print('persons:', len(persons))")])
    study = _study(tmp_path, data, "careless")
    settings = BatchSettings(reports=tmp_path / "reports", workers=1, state=tmp_path / "state")
    outcome = run_batch([study], settings).outcomes[0]
    assert outcome.status == "failed"
    assert "output that did not come from a safe table" in outcome.message and "cell 5" in outcome.message
    assert "persons:" in outcome.message  # the output's first line is named
    assert not (tmp_path / "reports" / "careless" / "report.html").exists()


def test_a_warning_goes_to_the_staff_log_not_into_the_report(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path, [("code", "import warnings\nwarnings.warn('a note for staff')")])
    study = _study(tmp_path, data, "warned")
    settings = BatchSettings(reports=tmp_path / "reports", workers=1, state=tmp_path / "state")
    outcome = run_batch([study], settings).outcomes[0]
    assert outcome.status == "published", outcome.message
    assert "a note for staff" not in (tmp_path / "reports" / "warned" / "report.html").read_text()
