"""The bad-input corpus of `studylib ingest`: malformed exports and what must come of them.

The expected outcomes are data (tests/corpus/ingest/expectations.yaml); the function of the
same name below builds each case from clean exports. Every case runs the real command line
(in-process) and checks the exit code, the message, the dataset (complete and valid, or not
there at all) and the rows the ingest report lists.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from openpyxl import Workbook
from typer.testing import CliRunner

import raw_exports
from studylib.cli import app
from studylib.data import read_dataset
from studylib.data.form_catalogue import form_catalogue
from studylib.privacy.tokens import new_key

CORPUS = Path(__file__).parent / "corpus" / "ingest" / "expectations.yaml"
CASES = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))["cases"]
CAT = form_catalogue()


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return raw_exports.make_records(raw_exports.make_persons(40, 1), 2)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    return new_key(tmp_path_factory.mktemp("key") / "test.key")


def _ingest(raw: Path, out: Path, key_file: Path, strict: bool = False):
    args = ["ingest", str(raw), "--out", str(out), "--key-file", str(key_file)] + (["--strict"] if strict else [])
    return CliRunner().invoke(app, args)


class _Finished:
    """What a child process running the command line gave: exit code and output (as CliRunner's result)."""

    def __init__(self, exit_code: int, output: str):
        self.exit_code, self.output = exit_code, output


_CLI = "import sys; from studylib.cli import main; sys.argv[0] = 'studylib'; main()"


def _ingest_limited(raw: Path, out: Path, key_file: Path, fsize: int) -> _Finished:
    """The command line in a child process under a file-size limit (RLIMIT_FSIZE)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    done = subprocess.run([sys.executable, "-c", _CLI, "ingest", str(raw), "--out", str(out), "--key-file", str(key_file)],
                          capture_output=True, text=True, preexec_fn=limit, timeout=300, env=os.environ | {"COLUMNS": "200"})
    return _Finished(done.returncode, done.stdout + done.stderr)


def _ingest_on_small_disk(raw: Path, out: Path, key_file: Path, kib: int) -> tuple[_Finished, list[str]]:
    """The command line writing to a tmpfs of ``kib`` KiB (mounted in a user and mount namespace,
    so it works as root and as a normal user); also what is left on that file system after it."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    disk = out.parent
    script = (f'mount -t tmpfs -o size={kib}k tmpfs "$1" || exit 99; shift; "$@"; rc=$?; '
              'echo "==left:"; ls -A "$DISK"; exit $rc')
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(disk),
                           sys.executable, "-c", _CLI, "ingest", str(raw), "--out", str(out), "--key-file", str(key_file)],
                          capture_output=True, text=True, timeout=300, env=os.environ | {"COLUMNS": "200", "DISK": str(disk)})
    if done.returncode == 99 or "unshare failed" in done.stderr or "Operation not permitted" in done.stderr[:300]:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()[:200]}")
    output, _, left = done.stdout.partition("==left:")
    return _Finished(done.returncode, output + done.stderr), left.split()


def _clean(raw: Path, records: pd.DataFrame) -> None:
    raw_exports.write_raw_exports(raw, records=records, dialects=("iso",))


@pytest.fixture(scope="module")
def clean_hash(records, key_file, tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("clean")
    _clean(base / "raw", records)
    result = _ingest(base / "raw", base / "out", key_file)
    assert result.exit_code == 0, result.output
    return read_dataset(base / "out", validate=True).meta["content_hash"]


# -- helpers the builders use ------------------------------------------------------------------------------


def frame(records, code: str, dialect: str = "iso") -> pd.DataFrame:
    return raw_exports.export_frame(records, code, dialect).reset_index(drop=True)


def path_of(raw: Path, code: str, suffix: str = "csv") -> Path:
    return raw / CAT.file_name(code, suffix)


def write(raw: Path, code: str, table: pd.DataFrame, dialect: str = "iso", **csv) -> Path:
    target = path_of(raw, code)
    if csv:
        options = {"index": False, "lineterminator": "\n"} | csv
        encoding = options.pop("encoding", "utf-8")
        target.write_text(table.to_csv(**options), encoding=encoding, newline="")
        return target
    return raw_exports.write_export(table, target, dialect)


def write_xlsx(path: Path, table: pd.DataFrame, typed: bool = True) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.append(list(table.columns))
    for row in table.itertuples(index=False):
        cells = []
        for column, value in zip(table.columns, row):
            field = next(f for f in CAT.fields_of(path.name[:3]) if f.name == column)
            if typed and value not in ("", None) and field.type == "date":
                value = pd.Timestamp(value).to_pydatetime()
            elif typed and value not in ("", None) and field.type in ("integer",):
                value = int(value)
            cells.append(value if value != "" else None)
        sheet.append(cells)
    book.save(path)
    return path


# -- the builders: one per case of the corpus ------------------------------------------------------------------


def semicolon_delimiter(raw, records):
    write(raw, "F01", frame(records, "F01"), sep=";")


def tab_delimiter(raw, records):
    write(raw, "F02", frame(records, "F02"), sep="\t")


def utf8_bom(raw, records):
    write(raw, "F03", frame(records, "F03", "bom"), "bom")


def cp1252_danish_letters(raw, records):
    assert records["first_name"].str.contains("[æøåÆØÅ]").any()
    for code in raw_exports.vocabularies.FORM_CODES:
        write(raw, code, frame(records, code, "danish"), "danish")


def mixed_date_formats(raw, records):
    table = frame(records, "F04")
    dates = pd.to_datetime(table["date"])
    spelled = [d.strftime(("%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y")[i % 3]) for i, d in enumerate(dates)]
    write(raw, "F04", table.assign(date=spelled))


def decimal_comma(raw, records):
    table = frame(records, "F04")
    debts = pd.to_numeric(table["claimed_debt_dkk"])
    spelled = [f"{v:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".") if i % 2 else f"{v:.2f}".replace(".", ",")
               for i, v in enumerate(debts)]
    write(raw, "F04", table.assign(claimed_debt_dkk=spelled))


def missing_spellings(raw, records):
    for code, column in (("F01", "interpreter_used"), ("F02", "outreach_requested"), ("F03", "urgent")):
        table = frame(records, code)
        table[column] = [v if v else ("NA", "-", "ukendt")[i % 3] for i, v in enumerate(table[column])]
        write(raw, code, table)


def header_case_and_spaces(raw, records):
    table = frame(records, "F12")
    table.columns = [f" {c.upper()} " if i % 2 else c.capitalize() for i, c in enumerate(table.columns)]
    write(raw, "F12", table)


def blank_lines(raw, records):
    text = frame(records, "F11").to_csv(index=False, lineterminator="\n")
    lines = text.splitlines()
    path_of(raw, "F11").write_text("\n".join(lines[:2] + [""] + lines[2:] + ["", ""]) + "\n", encoding="utf-8")


def xlsx_export(raw, records):
    path_of(raw, "F05").unlink()
    write_xlsx(path_of(raw, "F05", "xlsx"), frame(records, "F05"))


def non_form_files_ignored(raw, records):
    (raw / "synth.json").write_text("{}")
    (raw / "README.md").write_text("# raw exports\n")
    (raw / "truth").mkdir()
    (raw / "truth" / "F01_outreach.csv").write_text("not,a,form\n")
    (raw / "quarantine").mkdir()
    (raw / "quarantine" / "F01_outreach.rejected.csv").write_text("_row\n2\n")


def duplicate_rows(raw, records):
    table = frame(records, "F06")
    write(raw, "F06", pd.concat([table, table.iloc[[0]]], ignore_index=True))


def duplicate_record_id_other_content(raw, records):
    table = frame(records, "F01")
    other = table.iloc[[0]].assign(sector="cleaning" if table["sector"].iloc[0] != "cleaning" else "agriculture")
    write(raw, "F01", pd.concat([table.iloc[:3], other, table.iloc[3:]], ignore_index=True))


def _set(raw, records, code, row, column, value):
    table = frame(records, code)
    table.loc[row, column] = value
    write(raw, code, table)


def impossible_date(raw, records):
    _set(raw, records, "F01", 1, "date", "31-02-2020")


def cpr_impossible_date(raw, records):
    _set(raw, records, "F02", 0, "cpr", "310289-1234")


def cpr_bad_format(raw, records):
    _set(raw, records, "F02", 1, "cpr", "12345")


def unknown_code(raw, records):
    _set(raw, records, "F02", 0, "sector", "fishing_boat")


def unknown_indicator(raw, records):
    _set(raw, records, "F04", 1, "indicators", "xx_not_an_indicator")


def required_value_missing(raw, records):
    _set(raw, records, "F05", 0, "decision", "")


def number_out_of_range(raw, records):
    table = frame(records, "F02")
    table.loc[0, "call_minutes"], table.loc[1, "call_minutes"] = "601", "twelve"
    write(raw, "F02", table)


def organisation_not_submitting(raw, records):
    _set(raw, records, "F01", 0, "organisation", "police")


def birth_date_after_date(raw, records):
    _set(raw, records, "F01", 2, "birth_date", "2030-01-01")


def adult_on_minor_form(raw, records):
    table = frame(records, "F13")
    table.loc[0, "birth_date"], table.loc[0, "cpr"] = "1980-01-01", ""
    write(raw, "F13", table)


def truncated_last_line(raw, records):
    table = frame(records, "F04")
    table.loc[len(table) - 1, "notes"] = ""  # no line break inside the last row
    text = table.to_csv(index=False, lineterminator="\n").rstrip("\n")
    head, last = text.rsplit("\n", 1)
    path_of(raw, "F04").write_text(head + "\n" + ",".join(last.split(",")[:3]), encoding="utf-8")


def truncated_inside_quote(raw, records):
    table = frame(records, "F01")
    table.loc[len(table) - 1, "notes"] = 'Siger "jeg må ikke gå", bor på arbejdspladsen'
    text = table.to_csv(index=False, lineterminator="\n")
    cut = text.rindex("jeg må")
    path_of(raw, "F01").write_text(text[:cut], encoding="utf-8")


def rows_with_other_delimiter(raw, records):
    table = frame(records, "F09")
    header = ",".join(table.columns)
    rows = table.to_csv(index=False, sep=";", lineterminator="\n").splitlines()[1:]
    path_of(raw, "F09").write_text("\n".join([header] + rows) + "\n", encoding="utf-8")


def ten_megabyte_field(raw, records):
    _set(raw, records, "F01", 0, "notes", "Lang note. " * (1024 * 1024))


def formula_cells(raw, records):
    table = frame(records, "F01")
    table.loc[0, "notes"] = '=HYPERLINK("http://example.invalid","klik")'
    table.loc[1, "sector"] = "=1+2"
    write(raw, "F01", table)


def xlsx_formula_not_evaluated(raw, records):
    table = frame(records, "F05")
    table.loc[0, "sector"] = '=CONCAT("clean","ing")'
    path_of(raw, "F05").unlink()
    write_xlsx(path_of(raw, "F05", "xlsx"), table)


def unexpected_column(raw, records):
    table = frame(records, "F01")
    table["mother_name"] = "Ingrid Hemmeligsen"
    write(raw, "F01", table)


def missing_optional_column(raw, records):
    write(raw, "F01", frame(records, "F01").drop(columns="interpreter_used"))


def header_only(raw, records):
    write(raw, "F06", frame(records, "F06").iloc[0:0])


def missing_required_column(raw, records):
    write(raw, "F03", frame(records, "F03").drop(columns="sex"))


def duplicate_column_names(raw, records):
    table = frame(records, "F12")
    text = table.to_csv(index=False, lineterminator="\n").replace("nationality", "sex", 1)
    path_of(raw, "F12").write_text(text, encoding="utf-8")


def empty_file(raw, records):
    path_of(raw, "F05").write_bytes(b"")


def binary_garbage(raw, records):
    path_of(raw, "F08").write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def utf16_file(raw, records):
    write(raw, "F10", frame(records, "F10"), encoding="utf-16")


def form_file_under_wrong_name(raw, records):
    path_of(raw, "F02").unlink()
    path_of(raw, "F01").rename(path_of(raw, "F02"))


def wrong_slug(raw, records):
    path_of(raw, "F01").rename(raw / "F01_contacts.csv")


def unknown_spreadsheet(raw, records):
    (raw / "export_2024.csv").write_text("record_id,date\nx,2020-01-01\n")


def two_files_for_one_form(raw, records):
    write_xlsx(path_of(raw, "F01", "xlsx"), frame(records, "F01"))


def old_excel_xls(raw, records):
    path_of(raw, "F14").rename(raw / "F14_closure.xls")


def strict_unknown_code(raw, records):
    unknown_code(raw, records)


def strict_clean(raw, records):
    pass


def _without_final_line_break(raw, records, code: str, last_column: str, cut: int) -> None:
    """``code`` written with ``last_column`` last and the file cut ``cut`` characters into its last value."""
    table = frame(records, code)
    table = table[[c for c in table.columns if c != last_column] + [last_column]]
    table.loc[len(table) - 1, "notes" if "notes" in table.columns else last_column] = (
        "" if "notes" in table.columns else table.loc[len(table) - 1, last_column])
    text = table.to_csv(index=False, lineterminator="\n").rstrip("\n")
    assert text[-cut:].strip(), "the last value must be long enough to cut"
    path_of(raw, code).write_text(text[:-cut] if cut else text, encoding="utf-8", newline="")


def cut_inside_last_date(raw, records):
    _without_final_line_break(raw, records, "F04", "date", 1)  # 2022-02-17 -> 2022-02-1


def cut_inside_last_number(raw, records):
    table = frame(records, "F04")
    assert table["claimed_debt_dkk"].iloc[-1] not in ("", None)
    _without_final_line_break(raw, records, "F04", "claimed_debt_dkk", 2)


def no_final_line_break(raw, records):
    _without_final_line_break(raw, records, "F02", "record_id", 0)


def short_last_row_with_line_break(raw, records):
    table = frame(records, "F06")
    text = table.to_csv(index=False, lineterminator="\n").rstrip("\n")
    head, last = text.rsplit("\n", 1)
    path_of(raw, "F06").write_text(head + "\n" + ",".join(last.split(",")[:2]) + "\n", encoding="utf-8")


def crlf_line_endings(raw, records):
    write(raw, "F07", frame(records, "F07"), lineterminator="\r\n")


def utf8_file_with_one_cp1252_row(raw, records):
    table = frame(records, "F01")
    for column in ("notes", "address", "email", "phone"):
        table.loc[1, column] = ""
    table.loc[1, "first_name"], table.loc[1, "last_name"] = "Søren", "Jensen"
    before = table.iloc[:1].to_csv(index=False, lineterminator="\n").encode("utf-8")
    row = table.iloc[[1]].to_csv(index=False, header=False, lineterminator="\n").encode("cp1252")
    rest = table.iloc[2:].to_csv(index=False, header=False, lineterminator="\n").encode("utf-8")
    assert any(b >= 0x80 for b in rest), "the rest of the file must hold UTF-8 letters"
    path_of(raw, "F01").write_bytes(before + row + rest)


def cp1252_file_with_undefined_byte(raw, records):
    table = frame(records, "F03", "danish")
    table.loc[0, "last_name"] = "Jens§en"
    data = table.to_csv(index=False, sep=";", lineterminator="\r\n").encode("cp1252")
    assert data.count(b"\xa7") == 1
    path_of(raw, "F03").write_bytes(data.replace(b"\xa7", b"\x81"))


def date_in_2099(raw, records):
    _set(raw, records, "F01", 0, "date", "2099-05-01")


def start_date_after_export_date(raw, records):
    _set(raw, records, "F07", 0, "start_date", (pd.Timestamp.now() + pd.Timedelta(days=40)).strftime("%Y-%m-%d"))


def cpr_birth_after_form_date(raw, records):
    table = frame(records, "F02")
    day = pd.Timestamp(table.loc[1, "date"]) + pd.Timedelta(days=400)
    assert day.year >= 2000 and day.year % 100 <= 36
    table.loc[1, "cpr"] = day.strftime("%d%m%y") + "-4123"  # serial 4: born in the 2000s
    table.loc[1, "birth_date"] = ""
    write(raw, "F02", table)


def cpr_birth_before_1900(raw, records):
    table = frame(records, "F02")
    table.loc[0, "cpr"], table.loc[0, "birth_date"] = "010160-5123", ""  # serial 5, year 60: born 1860
    write(raw, "F02", table)


def age_over_120(raw, records):
    table = frame(records, "F01")
    table.loc[2, "birth_date"], table.loc[2, "cpr"], table.loc[2, "date"] = "1900-01-02", "", "2023-06-01"
    write(raw, "F01", table)


def two_digit_year(raw, records):
    _set(raw, records, "F05", 1, "date", "01-02-20")


def negative_number(raw, records):
    _set(raw, records, "F06", 0, "days_granted", "-5")


def boolean_not_yes_or_no(raw, records):
    _set(raw, records, "F06", 1, "offered", "maybe")


def record_id_too_long(raw, records):
    _set(raw, records, "F08", 0, "record_id", "R" * 41)


FORMULA_HEADER = '=HYPERLINK("http://example.invalid","klik")'


def formula_header(raw, records):
    table = frame(records, "F01")
    table[FORMULA_HEADER] = "x"
    table.loc[1, "date"] = "31-02-2020"  # a rejected row, so the quarantine file has the header
    write(raw, "F01", table)


def _bad_row(raw, records):
    impossible_date(raw, records)


def quarantine_symlink(raw, records):
    _bad_row(raw, records)
    outside = raw.parent / "outside"
    outside.mkdir()
    (raw / "quarantine").symlink_to(outside, target_is_directory=True)


def quarantine_file_symlink(raw, records):
    _bad_row(raw, records)
    outside = raw.parent / "outside"
    outside.mkdir()
    (raw / "quarantine").mkdir()
    (raw / "quarantine" / "F01_outreach.rejected.csv").symlink_to(outside / "stolen.csv")


def output_symlink(raw, records):
    outside = raw.parent / "outside"
    outside.mkdir()
    (raw.parent / "dataset").symlink_to(outside, target_is_directory=True)


def deny_list_symlink(raw, records):
    outside = raw.parent / "outside"
    outside.mkdir()
    (raw.parent / "dataset.denylist").symlink_to(outside / "stolen.json")


def stale_temporaries(raw, records):
    parent = raw.parent
    (parent / ".dataset.ingest-k1ll3d").mkdir()
    (parent / ".dataset.ingest-k1ll3d" / "persons.parquet").write_bytes(b"half")
    (parent / ".dataset.denylist-x7y8z9").write_text("{")
    (parent / ".dataset.denylist.abc123.tmp").write_text("{")
    (raw / "quarantine").mkdir()
    (raw / "quarantine" / ".F01_outreach.rejected.csv.q1w2e3.tmp").write_text("_row\n2\n")


def file_size_limit(raw, records):
    pass  # the limit is set on the ingest process (key `fsize`)


def disk_full(raw, records):
    pass  # the output goes to a small file system (key `disk_full`)


# -- the test ----------------------------------------------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def _row(spec, records) -> int:
    """A row number of the corpus: a number, ``last`` (the last row of the clean export) or ``after_last``."""
    if isinstance(spec["row"], int):
        return spec["row"]
    last = 1 + len(frame(records, spec["file"][:3]))
    return last if spec["row"] == "last" else last + 1


def test_every_case_of_the_corpus_has_one_builder():
    names = [c["name"] for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    bad = [c for c in CASES if c["exit"] != 0 or c.get("rejected") or c.get("rejected_all_of") or c.get("duplicates")]
    assert len(bad) >= 40, f"{len(bad)} bad inputs"
    assert [n for n in names if not callable(globals().get(n))] == [], "cases without a builder"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input(case, records, key_file, clean_hash, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "dataset"
    _clean(raw, records)
    globals()[case["name"]](raw, records)
    left_on_disk = None
    if "fsize" in case:
        result = _ingest_limited(raw, out, key_file, case["fsize"])
    elif "disk_full" in case:
        out = tmp_path / "disk" / "dataset"
        out.parent.mkdir()
        result, left_on_disk = _ingest_on_small_disk(raw, out, key_file, case["disk_full"])
    else:
        result = _ingest(raw, out, key_file, strict=case.get("strict", False))
    output = _flat(result.output)
    assert result.exit_code == case["exit"], output
    for fragment in case.get("message", []):
        assert _flat(fragment) in output
    assert "Traceback" not in output
    if left_on_disk is not None:
        assert left_on_disk == [], f"a full disk must leave nothing: {left_on_disk}"
    if case.get("outside_empty"):
        assert list((tmp_path / "outside").iterdir()) == [], "nothing may be written through a symbolic link"
    # no temporary is ever left: not beside the output, not in the quarantine
    assert not list(out.parent.glob(".dataset*")), list(out.parent.glob(".dataset*"))
    if (raw / "quarantine").is_dir() and not (raw / "quarantine").is_symlink():
        assert not list((raw / "quarantine").glob(".*")), "a quarantine temporary was left"
    if case["exit"] != 0:
        if case.get("output_is_link"):
            assert (tmp_path / "dataset").is_symlink() or (tmp_path / "dataset.denylist").is_symlink()
            assert not (tmp_path / "outside" / "dataset.json").exists()
        else:
            assert not out.exists(), "a failed ingest must leave no output"
        assert not out.with_name("dataset.linkage").exists() and not out.with_name("dataset.denylist").exists() or case.get("output_is_link")
        return
    data = read_dataset(out, validate=True)  # complete and valid
    if case.get("same_as_clean"):
        assert data.meta["content_hash"] == clean_hash
    report = json.loads((out / "ingest_report.json").read_text())
    listed = {(r["file"], r["row"], r["column"]) for r in report["rejected"]["listed"]}
    for spec in case.get("rejected", []):
        assert (spec["file"], _row(spec, records), spec["column"]) in listed, listed
    for spec in case.get("duplicates", []):
        assert (spec["file"], _row(spec, records), "record_id") in listed
        assert any(f["file"] == spec["file"] and f["duplicates_dropped"] == 1 for f in report["files"])
    expected_rows = {(s["file"], _row(s, records)) for s in case.get("rejected", []) + case.get("duplicates", [])}
    if "rejected_all_of" in case:  # every row of the file is rejected (how the text splits into rows is the parser's)
        (counts,) = [f for f in report["files"] if f["file"] == case["rejected_all_of"]]
        assert counts["accepted"] == 0 and counts["rejected"] >= len(frame(records, case["rejected_all_of"][:3]))
    else:
        assert report["rejected"]["rows"] == len(expected_rows), report["rejected"]["by_rule"]
    warned = {(w["file"], w["column"]) for w in report["warnings"]}
    for spec in case.get("warnings", []):
        assert (spec["file"], spec["column"]) in warned
    # rejected rows go to the quarantine beside the raw data, owner-only, formulas defused (header too)
    quarantine = raw / "quarantine"
    rejected_files = {s["file"] for s in case.get("rejected", [])}
    for name in rejected_files:
        target = quarantine / f"{Path(name).stem}.rejected.csv"
        assert target.is_file() and (target.stat().st_mode & 0o077) == 0
        header = pd.read_csv(target, dtype=str, keep_default_na=False, encoding="utf-8-sig", nrows=0).columns
        assert not any(str(c).startswith(("=", "+", "-", "@")) for c in header), list(header)
        if case.get("quarantine_header_escaped"):
            assert any(str(c).startswith("'=hyperlink(") for c in header), list(header)
        kept = pd.read_csv(target, dtype=str, keep_default_na=False, encoding="utf-8-sig").set_index("_row")
        for spec in case.get("rejected", []):
            if spec["file"] == name:
                row = kept.loc[str(_row(spec, records))]
                assert spec["column"] is not None or row["_text"], "a row that could not be split keeps its text"
    # the report carries no value of a personal field, and no header name that is a live formula
    text = (out / "ingest_report.json").read_text() + (out / "ingest_report.md").read_text()
    assert "=hyperlink" not in text.replace("'=hyperlink", "")
    personal = pd.concat([records[c] for c in ("first_name", "last_name", "cpr", "passport_no", "phone", "email")])
    for value in personal.dropna().unique():
        if len(str(value)) >= 5:
            assert str(value) not in text


def test_quarantine_defuses_formulas_and_keeps_the_rest(records, key_file, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "dataset"
    _clean(raw, records)
    formula_cells(raw, records)
    assert _ingest(raw, out, key_file).exit_code == 0
    quarantined = pd.read_csv(raw / "quarantine" / "F01_outreach.rejected.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(quarantined["_row"]) == ["3"] and quarantined["sector"].iloc[0] == "'=1+2"
    assert "sector" in quarantined["_problems"].iloc[0]
    cells = quarantined.drop(columns=["_row", "_problems"]).to_numpy().ravel()
    assert not any(str(c).startswith(("=", "+", "-", "@")) for c in cells)
    # the note with a formula was accepted as text; it never reaches the dataset
    data = read_dataset(out)
    for table in data.tables().values():
        assert not table.astype(str).apply(lambda col: col.str.contains("HYPERLINK", regex=False)).any().any()


def test_a_stale_quarantine_file_is_removed_when_the_rows_are_fixed(records, key_file, tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "dataset"
    _clean(raw, records)
    impossible_date(raw, records)
    assert _ingest(raw, out, key_file).exit_code == 0
    assert (raw / "quarantine" / "F01_outreach.rejected.csv").is_file()
    _clean(raw, records)
    assert _ingest(raw, out, key_file).exit_code == 0
    assert not (raw / "quarantine" / "F01_outreach.rejected.csv").exists()
    assert os.listdir(raw / "quarantine") == []
