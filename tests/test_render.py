"""`studylib run --prepare-only` and `studylib render NOTEBOOK` (issue 15, item 10), through the real CLI.

The round trip a researcher makes: prepare a report's notebook, execute it with plain papermill,
render it in the house style. The oracle for the page's numbers is pandas on the dataset itself;
the refusals are hand-made notebooks on both sides (a marked table renders, a raw small count does not).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from runner_fixtures import write_study
from test_release_runner import _dataset, _study, _template

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "studylib"), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def project(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path)
    _study(tmp_path, data, "nation", year_to=2022)
    write_study(tmp_path, {"id": "years", "title": "years", "template": "../templates/by_sector.ipynb", "data": str(data),
                           "parameters": {}, "matrix": {"year_to": [2020, 2024]},
                           "disclosure": {"min_cell": 5, "rounding": None}, "formats": ["html"]})
    return tmp_path, data


def _injected(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    [cell] = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert not any(c.get("outputs") for c in nb.cells)  # prepared, not executed
    return cell.source


def test_prepare_only_writes_parameterised_notebooks_and_runs_nothing(project):
    root, data = project
    out = root / "prepared"
    done = _cli("run", "--all", "--studies", str(root / "studies"), "--reports", str(root / "reports"),
                "--prepare-only", "--out", str(out), "-p", "region_out=hovedstaden")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ipynb")) == [
        "nation.ipynb", "years/year_to-2020.ipynb", "years/year_to-2024.ipynb"]
    nation = _injected(out / "nation.ipynb")
    assert "year_to = 2022" in nation and "region_out = \"hovedstaden\"" in nation and f'data_dir = "{data}"' in nation
    assert "year_to = 2020" in _injected(out / "years" / "year_to-2020.ipynb")
    assert not (root / "reports").exists() or not any((root / "reports").glob("*/manifest.json"))

    (root / "studies" / "broken.yaml").write_text("id: broken\ntitle: broken\n")
    bad = _cli("run", "broken", "--studies", str(root / "studies"), "--prepare-only", "--out", str(out), "--json")
    rows = json.loads(bad.stdout)
    assert bad.returncode == 1 and rows[0]["report"] == "broken" and "template" in rows[0]["problem"]


def test_a_notebook_run_with_plain_papermill_renders_in_the_house_style(project):
    root, data = project
    out = root / "prepared"
    assert _cli("run", "nation", "--studies", str(root / "studies"), "--prepare-only", "--out", str(out)).returncode == 0
    executed = root / "lab" / "nation_run.ipynb"
    executed.parent.mkdir()
    ran = subprocess.run([str(BIN / "papermill"), str(out / "nation.ipynb"), str(executed), "--log-level", "ERROR"],
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr

    done = _cli("render", str(executed), "--out", str(root / "pages"))
    assert done.returncode == 0, done.stdout + done.stderr
    page = root / "pages" / "nation_run.html"
    assert (root / "pages" / "nation_run.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (root / "pages").iterdir()) == ["nation_run.html", "nation_run.pdf"]  # no temporary left
    html = page.read_text()
    assert "studylib-report" in html and "<script" not in html and "Persons by sector" in html
    cases = pd.read_parquet(data / "cases.parquet")
    expected = cases[cases.first_contact_year <= 2022].sector.value_counts()
    cells = _cells(html)
    assert cells, html[:2000]
    for sector, count in cells.items():
        assert count is None or count == int(expected[sector]), (sector, count)
    assert any(count is not None for count in cells.values())


def _cells(html: str) -> dict[str, int | None]:
    import re

    table = html[html.index("<table"):html.index("</table>")]
    return {label: None if value == "[c]" else int(value.replace(",", ""))
            for label, value in re.findall(r"<tr[^>]*><th>([^<]*)</th><td>([^<]*)</td></tr>", table)
            if label in {"au_pair", "agriculture", "cleaning", "construction", "hospitality", "prostitution"}}


def _executed(path: Path, cells: list[str], data: Path) -> Path:
    """A notebook as papermill leaves it: executed for real (nbclient), with its data_dir parameter recorded."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"data_dir = {str(data)!r}"), *map(nbformat.v4.new_code_cell, cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nb.metadata["papermill"] = {"parameters": {"data_dir": str(data)}}
    nbformat.write(nb, path)
    return path


def test_render_refuses_a_notebook_that_fails_the_audit_and_writes_nothing(tmp_path):
    data = _dataset(tmp_path)
    leaky = _executed(tmp_path / "leaky.ipynb", [
        "from IPython.display import HTML, display\ndisplay(HTML('<table><tr><td>persons in Bornholm</td><td>3</td></tr></table>'))"], data)
    done = _cli("render", str(leaky))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "audit failed" in done.stderr and "nothing was written" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "leaky.ipynb"]  # no page, no temporary folder

    safe = _executed(tmp_path / "safe.ipynb", [
        "from studylib.data import read_dataset\nfrom studylib.report import safe_table\n"
        "safe_table(read_dataset(data_dir).cases, rows='sector', caption='Persons by sector')"], data)
    done = _cli("render", str(safe), "--format", "html")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "safe.html").is_file() and not (tmp_path / "safe.pdf").exists()


def test_render_says_why_it_cannot_render(tmp_path):
    data = _dataset(tmp_path)
    _template(tmp_path)
    done = _cli("render", str(tmp_path / "templates" / "by_sector.ipynb"), "--data", str(data))
    assert done.returncode == 2 and "not executed" in done.stderr
    (tmp_path / "x.ipynb").write_text("not json")
    done = _cli("render", str(tmp_path / "x.ipynb"))
    assert done.returncode == 2 and "not a notebook" in done.stderr
    done = _cli("render", str(tmp_path / "missing.ipynb"))
    assert done.returncode == 2 and "no such notebook" in done.stderr
