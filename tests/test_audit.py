"""The output audit: a corpus of planted leaks, each caught where it is; clean reports pass.

Reports are real files: notebooks written with nbformat (one executed by a real kernel),
HTML pages (one exported by nbconvert from an executed notebook), PDFs printed by
WeasyPrint. Safe tables and figures come from studylib.report, the key from
studylib.privacy.tokens, the deny list from make_deny_list.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from typer.testing import CliRunner

from studylib.cli import app
from studylib.privacy import DenyList, audit_path, make_deny_list, normalise_name
from studylib.privacy.marker import marker_attribute, marker_for
from studylib.privacy.personal_data import TextScanner
from studylib.privacy.tokens import new_key, read_key
from studylib.report import safe_figure, safe_table

NAMES = ["Maria Grace Okafor", "Jonas Ruud", "Søren Ågård", "AB7654321"]
TOKEN = "3f9a" + "0c1d2e3f4a5b6c7d" * 3 + "8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secrets")
    key_file = new_key(folder / "audit.key")
    key = read_key(key_file)
    deny = make_deny_list(NAMES, key)
    return SimpleNamespace(key=key, key_file=key_file, deny=deny, deny_file=deny.write(folder / "deny.json"))


def _audit(path, secrets, strict: bool = False):
    return audit_path(path, min_cell=5, deny_list=secrets.deny, key=secrets.key, strict=strict)


# ---------------------------------------------------------------- report builders


def _page(body: str) -> str:
    return f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Study</title></head>\n<body>\n{body}\n</body></html>\n"


def _png() -> bytes:
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([1, 2])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _marked_figure(alt: str) -> str:
    data = base64.b64encode(_png()).decode()
    marker = marker_attribute(marker_for("suppression", 5, None, True, False))
    return f'<figure{marker}><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>Persons</figcaption></figure>'


def _html(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "report.html"
    path.write_text(_page(body))
    return path


def _notebook(tmp_path: Path, cells, metadata=None) -> Path:
    nb = new_notebook(cells=cells, metadata=metadata or {"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, path)
    return path


def _code_with(output, source="result") -> nbformat.NotebookNode:
    cell = new_code_cell(source, execution_count=1)
    cell.outputs = [output]
    return cell


def _pdf(tmp_path: Path, body: str) -> Path:
    from weasyprint import HTML

    path = tmp_path / "report.pdf"
    HTML(string=_page(body)).write_pdf(path)
    return path


_counts = pd.Series([12, 30, 25], index=pd.Index(["hovedstaden", "sjaelland", "syddanmark"], name="region"), name="persons")
_frame = pd.DataFrame({"female": [3, 14], "male": [22, 9]}, index=["au pair", "cleaning"])


def _leak_cases():
    """(id, builder(tmp_path, secrets) -> path, rules expected, text in the finding's location)."""
    return [
        ("cpr-with-dash-as-table-label", lambda t, s: _html(t, safe_table(pd.Series([12, 30], index=["010190-1234", "others"])).to_html()), {"cpr"}, "line"),
        ("cpr-without-dash-as-column-label", lambda t, s: _html(t, safe_table(pd.DataFrame({"0101901234": [12, 40], "b": [30, 9]})).to_html()), {"cpr"}, "line"),
        ("cpr-in-caption", lambda t, s: _html(t, safe_table(_counts, caption="Persons, incl. case 010190-1234").to_html()), {"cpr"}, "line"),
        ("cpr-in-figure-title", lambda t, s: _html(t, safe_figure(_counts, title="Case 0101901234", caption="Persons").to_html()), {"cpr"}, "line"),
        ("cpr-in-alt-text", lambda t, s: _html(t, _marked_figure("photo of 311299-4321")), {"cpr"}, "line 4"),
        ("cpr-in-markdown-cell", lambda t, s: _notebook(t, [new_markdown_cell("# Notes\n\nMet 010190-1234 at the station.")]), {"cpr"}, "cell 1 (markdown) source line 3"),
        ("cpr-in-traceback", lambda t, s: _notebook(t, [_code_with(new_output(
            "error", ename="KeyError", evalue="'0101901234'",
            traceback=["\x1b[0;31mKeyError\x1b[0m                  Traceback", "\x1b[0;31mKeyError\x1b[0m: '0101901234'"]),
            source="lookup(person)")]), {"cpr"}, "cell 1 (code) output 1 (error traceback)"),
        ("cpr-in-notebook-metadata", lambda t, s: _notebook(t, [new_markdown_cell("# Study")], metadata={
            "papermill": {"parameters": {"person": "010190-1234"}}}), {"cpr"}, "notebook metadata"),
        ("cpr-in-cell-metadata", lambda t, s: _notebook(t, [new_markdown_cell("# Study", metadata={"note": "case 0101901234"})]), {"cpr"}, "cell 1 (markdown) metadata"),
        ("plain-display-in-a-study-run", lambda t, s: _notebook(t, [_code_with(new_output(
            "execute_result", data={"text/plain": "3"}, execution_count=1))]), {"unmarked-output"}, "cell 1 (code) output 1"),
        ("phone-in-stream", lambda t, s: _notebook(t, [_code_with(new_output("stream", name="stdout", text="ring +45 12 34 56 78\n"))]), {"phone"}, "cell 1 (code) output 1 (stdout) line 1"),
        ("phone-after-cue", lambda t, s: _html(t, "<p>Contact:</p>\n<p>tlf. 2345 6789</p>"), {"phone"}, "line 5"),
        ("email-in-markdown", lambda t, s: _notebook(t, [new_markdown_cell("Write to anna.k@example.dk")]), {"email"}, "cell 1 (markdown) source line 1"),
        ("iban-in-html", lambda t, s: _html(t, "<p>Paid to DK50 0040 0440 1162 43 by the employer.</p>"), {"iban"}, "line 4"),
        ("passport-in-code", lambda t, s: _notebook(t, [new_code_cell('passport = "AB1234567"')]), {"passport"}, "cell 1 (code) source line 1"),
        ("small-count-in-marked-table", lambda t, s: _html(t, f"<table{marker_attribute(marker_for('suppression', 5, None, True, False))}>"
                                                          "<tr><th>a</th><td>12</td></tr>\n<tr><th>b</th><td>3</td></tr></table>"), {"small-count"}, "<td>"),
        ("unmarked-dataframe-in-notebook", lambda t, s: _notebook(t, [_code_with(new_output(
            "display_data", data={"text/html": _frame.to_html(), "text/plain": _frame.to_string()}))]), {"unmarked-table"}, "cell 1 (code) output 1 (text/html)"),
        ("unmarked-image-in-notebook", lambda t, s: _notebook(t, [_code_with(new_output(
            "display_data", data={"image/png": base64.b64encode(_png()).decode(), "text/plain": "<Figure>"}))]), {"unmarked-figure"}, "output 1 (image/png)"),
        ("unmarked-image-in-html", lambda t, s: _html(t, f'<div><img src="data:image/png;base64,{base64.b64encode(_png()).decode()}"></div>'), {"unmarked-figure"}, "<img>"),
        ("table-printed-as-text", lambda t, s: _notebook(t, [_code_with(new_output("stream", name="stdout", text=_frame.to_string() + "\n"))]), {"unmarked-text-table"}, "output 1 (stdout)"),
        ("markdown-pipe-table", lambda t, s: _notebook(t, [new_markdown_cell("| region | n |\n|---|---|\n| north | 3 |")]), {"unmarked-table"}, "line 1"),
        ("key-as-hex-in-output", lambda t, s: _notebook(t, [_code_with(new_output("stream", name="stdout", text=f"key: {s.key.hex()}\n"))]), {"key"}, "output 1 (stdout) line 1"),
        ("key-as-base64-in-html-comment", lambda t, s: _html(t, f"<p>Report</p>\n<!-- {base64.b64encode(s.key).decode()} -->"), {"key"}, "line 5"),
        ("person-token-as-table-label", lambda t, s: _html(t, safe_table(pd.Series([12, 30], index=[TOKEN, "others"])).to_html()), {"token"}, "line"),
        ("person-token-cut-short", lambda t, s: _notebook(t, [_code_with(new_output("execute_result", data={"text/plain": f"'{TOKEN[:47]}...'"}, execution_count=1))]), {"token"}, "(text/plain) line 1"),
        ("deny-listed-name-in-figure-caption", lambda t, s: _html(t, safe_figure(_counts, caption="Persons met with Maria Okafor").to_html()), {"deny-list"}, "line"),
        ("deny-listed-name-in-capitals", lambda t, s: _notebook(t, [new_markdown_cell("Interview with MARIA GRACE OKAFOR.")]), {"deny-list"}, "cell 1 (markdown) source line 1"),
        ("deny-listed-name-without-danish-letters", lambda t, s: _notebook(t, [_code_with(new_output("execute_result", data={"text/plain": "'Soren Agard'"}, execution_count=1))]), {"deny-list"}, "(text/plain) line 1"),
        ("weak-marker-and-its-small-count", lambda t, s: _html(t, safe_table(_frame, settings={"min_cell": 3}).to_html()), {"weak-marker", "small-count"}, "<table>"),
        ("unreadable-marker", lambda t, s: _html(t, '<table data-studylib-safe="{not json"><tr><td>12</td></tr></table>'), {"bad-marker"}, "<table>"),
        ("cpr-in-pdf", lambda t, s: _pdf(t, "<h1>Study</h1><p>Case 010190-1234 was closed.</p>"), {"cpr"}, "page 1"),
        ("deny-listed-name-in-pdf", lambda t, s: _pdf(t, "<h1>Study</h1><p>Jonas Ruud left the safe house.</p>"), {"deny-list"}, "page 1"),
    ]


@pytest.mark.parametrize("case", _leak_cases(), ids=lambda c: c[0])
def test_each_planted_leak_is_caught_where_it_is(case, tmp_path, secrets):
    _, build, rules, where = case
    path = build(tmp_path, secrets)
    result = _audit(path, secrets, strict="unmarked-output" in rules)  # strict content: study runs only
    assert not result.passed
    assert {f.rule for f in result.findings} == rules, [str(f) for f in result.findings]
    assert any(where in f.where for f in result.findings), [str(f) for f in result.findings]
    # the audit's own output never repeats what it found
    shown = "\n".join(str(f) for f in result.findings) + json.dumps(result.as_dict())
    for secret in ("010190-1234", "0101901234", "311299-4321", "anna.k@", "AB1234567", "Okafor", "Ruud", "Agard",
                   secrets.key.hex(), TOKEN[:20], "2345 6789", "0040 0440"):
        assert secret not in shown


def test_the_corpus_plants_a_leak_for_every_rule_of_the_audit():
    from studylib.privacy.audit import RULES

    planted = set().union(*(rules for _, _, rules, _ in _leak_cases()))
    assert planted == set(RULES), f"rules without a planted leak: {sorted(set(RULES) - planted)}"


# ---------------------------------------------------------------- executed notebooks, exported reports

_KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _execute(cells, tmp_path: Path, name: str, allow_errors=False) -> Path:
    from nbclient import NotebookClient

    nb = new_notebook(cells=cells, metadata=_KERNEL)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=allow_errors).execute(cwd=str(tmp_path))
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _export_html(notebook: Path) -> Path:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_filename(str(notebook))
    path = notebook.with_suffix(".html")
    path.write_text(body)
    return path


@pytest.mark.slow
def test_a_clean_report_built_with_safe_tables_and_figures_passes(tmp_path, secrets):
    cells = [
        new_markdown_cell("# Cleaning, 2019–2023\n\nPersons by year: 2019, 2020, 2021. Of 152 persons 12 34 56 were minors."),
        new_code_cell("import pandas as pd\nfrom studylib.report import configure, safe_table, safe_figure, published_shares\n"
                      "from studylib.privacy import protect_table\nimport matplotlib.pyplot as plt\nconfigure(min_cell=5)"),
        new_code_cell("by_sex = pd.DataFrame({'identified': [3, 40, 12], 'not identified': [22, 1, 30], 'pending': [2, 18, 25]},\n"
                      "    index=pd.Index(['female', 'male', 'unknown'], name='sex'))\nby_sex.columns.name = 'identification'\n"
                      "safe_table(by_sex, caption='Persons by sex and identification, 2019–2023')"),
        new_code_cell("safe_table(by_sex, caption='Shares by sex', shares='rows')"),
        new_code_cell("years = pd.Series([14, 3, 22, 19, 2], index=pd.Index(['2019', '2020', '2021', '2022', '2023'], name='year'))\n"
                      "safe_figure(years, kind='line', caption='Persons by year of first contact', xlabel='year', ylabel='persons')"),
        new_code_cell("safe_figure(by_sex, kind='bar', caption='Persons by sex and identification', ylabel='persons')"),
        new_code_cell("p = protect_table(years)\nfig, ax = plt.subplots()\nax.bar(range(5), p.published.iloc[:5].fillna(0))\n"
                      "safe_figure(fig, caption='Drawn by hand from a protected table', sources=[p])"),
        new_code_cell("print('Data: sha256:' + 'ab12' * 16)\nprint('tables shown:', 2, 'figures shown:', 3)"),
    ]
    notebook = _execute(cells, tmp_path, "clean.ipynb")
    html = _export_html(notebook)
    from weasyprint import HTML

    HTML(filename=str(html)).write_pdf(tmp_path / "clean.pdf")
    result = _audit(tmp_path, secrets)
    assert sorted(Path(f).name for f in result.files) == ["clean.html", "clean.ipynb", "clean.pdf"]
    assert result.findings == []
    assert result.passed and result.key_checked and result.deny_list_checked
    page = html.read_text()
    assert page.count("data-studylib-safe") == 5 and "[c]" in page and "&lt;5" not in page


@pytest.mark.slow
def test_leaks_in_an_executed_notebook_and_its_html_are_caught(tmp_path, secrets):
    cells = [
        new_code_cell("import pandas as pd\nimport matplotlib.pyplot as plt\n"
                      "df = pd.DataFrame({'female': [3, 14], 'male': [22, 9]}, index=['au pair', 'cleaning'])\ndf"),
        new_code_cell("print(df)"),
        new_code_cell("df['female']"),
        new_code_cell("plt.bar([0, 1], [3, 14]); plt.show()"),
        new_code_cell("ids = {'a': 1}\nperson = '0101' + '901234'\nids[person]"),
    ]
    notebook = _execute(cells, tmp_path, "leaky.ipynb", allow_errors=True)
    found = {(f.rule, f.where.split(" output")[0]) for f in _audit(notebook, secrets).findings}
    assert ("unmarked-table", "cell 1 (code)") in found
    assert ("unmarked-text-table", "cell 2 (code)") in found
    assert ("unmarked-text-table", "cell 3 (code)") in found
    assert ("unmarked-figure", "cell 4 (code)") in found
    assert ("cpr", "cell 5 (code)") in found  # the KeyError's traceback
    html = _export_html(notebook)
    rules = {f.rule for f in _audit(html, secrets).findings}
    assert {"unmarked-table", "unmarked-text-table", "unmarked-figure", "cpr"} <= rules


# ---------------------------------------------------------------- text rules without false alarms


@pytest.mark.parametrize("text", [
    "Persons by year 2019 2020 2021 2022 2023; totals 1,234 and 12 345.",
    "12 34 56 78 persons in four regions",  # counts side by side, no phone cue
    "Ages 15-17 and 18-24; period 2019–2023; date 2024-05-01 and 20240501.",
    "Data hash sha256:" + "ab12" * 16 + " and template sha256 " + "cd34" * 16,
    "p = 0.12345678, rate 1.23456789e+08, share 45.1 %",
    "Forms F01 to F14, ISO 3166-1 alpha-2, ISIC v4 section A.",
    "<5: not shown; fewer than 5 persons.",
    "Reflection period 30+30+40 days, 120 days since 2013.",
])
def test_ordinary_report_text_raises_no_alarm(text, secrets):
    assert TextScanner(secrets.key, secrets.deny).scan(text) == []


def test_deny_list_holds_only_keyed_hashes(secrets):
    text = secrets.deny_file.read_text()
    assert "Okafor" not in text and "okafor" not in text
    assert DenyList.read(secrets.deny_file) == secrets.deny
    other = make_deny_list(NAMES, bytes(range(32)))
    assert not (other.digests & secrets.deny.digests)  # another key: nothing in common
    assert TextScanner(bytes(range(32)), secrets.deny).scan("Maria Okafor") == []


def test_names_are_normalised_for_comparison():
    assert normalise_name("  Søren  ÅGÅRD ") == "soeren aagaard"
    assert normalise_name("José-María O'Neil") == "jose maria o neil"
    assert normalise_name("010190-1234") == normalise_name("0101901234") == "0101901234"
    assert normalise_name("Олена Коваль") == "олена коваль"


# ---------------------------------------------------------------- command line


def test_studylib_audit_command(tmp_path, secrets):
    runner = CliRunner()
    clean = tmp_path / "clean"
    clean.mkdir()
    _html(clean, safe_table(_counts, caption="Persons by region").to_html())
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    _html(leaky, "<p>Jonas Ruud, 010190-1234</p>")
    args = ["--min-cell", "5", "--deny-list", str(secrets.deny_file), "--key-file", str(secrets.key_file)]

    result = runner.invoke(app, ["audit", str(clean), *args])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["audit", str(leaky), *args])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert any("report.html: line 4: CPR number" in line for line in lines)
    assert any("deny-listed name" in line for line in lines)
    assert "Ruud" not in result.output and "010190" not in result.output
    result = runner.invoke(app, ["audit", str(leaky), "--deny-list", str(secrets.deny_file)], env={"STUDYLIB_KEY_FILE": ""})
    assert result.exit_code == 2 and "key" in result.output
    result = runner.invoke(app, ["audit", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such file" in result.output
