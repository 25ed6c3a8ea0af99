"""The synthetic data generator (studylib.synthetic, `studylib synth`): real runs, real files.

Raw exports are checked against the form catalogue by a small independent checker below;
the truth folder is used the way validation uses it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from typer.testing import CliRunner

from studylib.cli import app
from studylib.data import vocabularies as V
from studylib.data.form_catalogue import form_catalogue
from studylib.indicators import indicator_codes
from studylib.paths import profiles_dir
from studylib.synthetic import SynthOptions, generate, load_profiles

CAT = form_catalogue()
EXPORT = CAT.export
runner = CliRunner()


# --- the reference linker's name key ------------------------------------------------------------


def normalise_name(text: str | None) -> str | None:
    """The linkage form of a name that the messy model promises to keep: every spelling variant
    (case, accents, Danish letters written out, extra spaces, hyphen and space swapped) maps to
    one string. Casefold, Danish letters written out first (å to aa), accents dropped, then
    spaces, hyphens and apostrophes removed."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    s = text.casefold().translate(str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"}))
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = "".join(ch for ch in s if ch not in " -'\t")
    return s or None


# --- an independent checker of raw exports against the form catalogue --------------------------


def read_csv_export(path: Path) -> tuple[list[str], list[list[str]]]:
    """Read a raw CSV in any of the dialects: BOM, UTF-8 or cp1252; comma or semicolon."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        text = raw[3:].decode("utf-8")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252")
    header_line = text.split("\n", 1)[0]
    sep = ";" if header_line.count(";") > header_line.count(",") else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    return rows[0], rows[1:]


def read_xlsx_export(path: Path) -> tuple[list[str], list[list]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    rows = [list(r) for r in wb.active.iter_rows(values_only=True)]
    width = len(rows[0])  # empty cells are not stored: short rows are padded
    return [str(c) for c in rows[0]], [r + [None] * (width - len(r)) for r in rows[1:]]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in EXPORT.missing)


def _parse_date(value) -> bool:
    if isinstance(value, (dt.date, dt.datetime)):
        return True
    for fmt in EXPORT.date_formats:
        try:
            dt.datetime.strptime(value, fmt)
            return True
        except ValueError:
            pass
    return False


def _number(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return float(value.replace(",", "."))


def catalogue_problems(path: Path) -> list[str]:
    """Every way a raw export breaks the form catalogue (empty list: it validates)."""
    m = re.match(EXPORT.file_pattern, path.name)
    if not m:
        return [f"{path.name}: file name does not match the catalogue's pattern"]
    code = m.group("code")
    if CAT.file_name(code, path.suffix[1:]) != path.name:
        return [f"{path.name}: should be {CAT.file_name(code, path.suffix[1:])}"]
    header, rows = read_csv_export(path) if path.suffix == ".csv" else read_xlsx_export(path)
    if header != CAT.columns_of(code):
        return [f"{path.name}: columns {header} differ from the catalogue's {CAT.columns_of(code)}"]
    indicators = set(indicator_codes())
    true_words, false_words = set(EXPORT.booleans[True]), set(EXPORT.booleans[False])
    problems = []
    seen_ids = set()
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            problems.append(f"{path.name} row {i}: {len(row)} cells, expected {len(header)}")
            continue
        for field, value in zip(CAT.fields_of(code), row):
            where = f"{path.name} row {i} column {field.name}"
            if _is_missing(value):
                if field.required:
                    problems.append(f"{where}: required but missing")
                continue
            allowed = field.allowed_codes()
            if field.type == "code":
                if value not in (allowed or ()):
                    problems.append(f"{where}: unknown code {value!r}")
            elif field.type == "codes":
                parts = str(value).split(EXPORT.multi_separator)
                pool = indicators if field.codes == "indicator" else set(allowed or ())
                bad = [p for p in parts if p not in pool]
                if bad:
                    problems.append(f"{where}: unknown codes {bad}")
            elif field.type == "date":
                if not _parse_date(value):
                    problems.append(f"{where}: not a date {value!r}")
            elif field.type in ("integer", "decimal"):
                try:
                    x = _number(value)
                except ValueError:
                    problems.append(f"{where}: not a number {value!r}")
                    continue
                if field.type == "integer" and x != int(x):
                    problems.append(f"{where}: not a whole number {value!r}")
                if (field.min is not None and x < field.min) or (field.max is not None and x > field.max):
                    problems.append(f"{where}: {value!r} outside [{field.min}, {field.max}]")
            elif field.type == "boolean":
                if str(value).lower() not in true_words | false_words:
                    problems.append(f"{where}: not a boolean spelling {value!r}")
            else:
                text = str(value)
                if field.max_length is not None and len(text) > field.max_length:
                    problems.append(f"{where}: longer than {field.max_length}")
                if field.format is not None and not re.fullmatch(field.format, text):
                    problems.append(f"{where}: {text!r} does not match {field.format}")
            if field.name == "record_id":
                if value in seen_ids:
                    problems.append(f"{where}: record_id {value!r} repeated")
                seen_ids.add(value)
    return problems


# --- runs shared by the tests (small, fast) ----------------------------------------------------


def synth(out: Path, **kw) -> Path:
    generate(SynthOptions(out=out, **kw))
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return synth(tmp_path_factory.mktemp("clean") / "raw", persons=600, seed=11)


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    return synth(tmp_path_factory.mktemp("messy") / "raw", persons=600, seed=12, messy=True)


def form_files(folder: Path, ext: str = "csv") -> list[Path]:
    return [folder / CAT.file_name(code, ext) for code in V.FORM_CODES]


def raw_frame(folder: Path, code: str) -> pd.DataFrame:
    """A raw CSV export as text (dialect detected), joined to the truth's true_id."""
    header, rows = read_csv_export(folder / CAT.file_name(code, "csv"))
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    truth = pd.read_parquet(folder / "truth" / "records.parquet")
    truth = truth[truth["form"].astype(str) == code]
    return frame.merge(truth[["record_id", "true_id", "duplicate"]], on="record_id", how="left", validate="one_to_one")


def _date(series: pd.Series) -> pd.Series:
    """Dates in any of the catalogue's formats (each value tried against each format in turn)."""
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    for fmt in EXPORT.date_formats:
        out = out.fillna(pd.to_datetime(series, format=fmt, errors="coerce"))
    return out


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["clean", "messy"])
def test_every_raw_export_validates_against_the_form_catalogue(fixture, request):
    folder = request.getfixturevalue(fixture)
    files = form_files(folder)
    assert all(p.is_file() for p in files), "every form file is written, even when empty"
    problems = [p for f in files for p in catalogue_problems(f)]
    assert problems == []
    assert sum(len(read_csv_export(f)[1]) for f in files) > 1000


def test_messy_exports_use_the_danish_excel_dialects_and_contain_mess(messy, clean):
    raw = {p.name: p.read_bytes() for p in form_files(messy)}
    assert any(b.startswith(b"\xef\xbb\xbf") for b in raw.values()), "some file is UTF-8 with BOM"
    assert any(b.split(b"\n", 1)[0].count(b";") > 5 for b in raw.values()), "some file is semicolon-separated"
    meta = json.loads((messy / "synth.json").read_text())
    encodings = {f["dialect"]["encoding"] for f in meta["files"].values()}
    assert "cp1252" in encodings
    truth = pd.read_parquet(messy / "truth" / "records.parquet")
    assert truth["duplicate"].sum() > 0
    f01 = raw_frame(messy, "F01")
    assert re.search(r"\d{2}-\d{2}-\d{4}", " ".join(f01["date"])) or any(
        f["dialect"]["date_format"] == "%d-%m-%Y" for f in meta["files"].values())
    # spelling variants: same person, same normalised name, different raw spellings
    names = f01.dropna(subset=["first_name"]).query("first_name != ''")
    spellings = names.groupby("true_id")["first_name"].nunique()
    assert (spellings > 1).any()
    assert (names.groupby("true_id")["first_name"].agg(lambda s: len({normalise_name(x) for x in s})) == 1).mean() > 0.99
    # clean exports have none of it
    clean_meta = json.loads((clean / "synth.json").read_text())
    assert {f["dialect"]["encoding"] for f in clean_meta["files"].values()} == {"utf-8"}
    assert pd.read_parquet(clean / "truth" / "records.parquet")["duplicate"].sum() == 0


def test_xlsx_exports_validate_and_are_byte_identical_for_one_seed(tmp_path):
    a = synth(tmp_path / "a", persons=120, seed=5, messy=True, fmt="xlsx")
    b = synth(tmp_path / "b", persons=120, seed=5, messy=True, fmt="xlsx")
    files = form_files(a, "xlsx")
    assert [p for f in files for p in catalogue_problems(f)] == []
    for f in files:
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    wb = openpyxl.load_workbook(a / CAT.file_name("F01", "xlsx"))
    assert wb.properties.modified.year == 2000  # fixed, not the time of writing


def _all_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_files(tmp_path):
    a = _all_bytes(synth(tmp_path / "a", persons=250, seed=21, messy=True))
    b = _all_bytes(synth(tmp_path / "b", persons=250, seed=21, messy=True))
    c = _all_bytes(synth(tmp_path / "c", persons=250, seed=22, messy=True))
    assert a.keys() == b.keys() == c.keys()
    assert a == b  # raw exports, truth Parquet and synth.json alike
    differing = [name for name in a if name.endswith(".csv") and a[name] != c[name]]
    assert len(differing) >= 12


def test_truth_holds_more_persons_than_were_registered(clean):
    pop = pd.read_parquet(clean / "truth" / "population.parquet")
    records = pd.read_parquet(clean / "truth" / "records.parquet")
    lists = pop[[f"list_{o}" for o in V.ORGANISATION]].to_numpy()
    assert pop["registered"].sum() == 600  # --persons counts registered persons
    assert len(pop) > 1.5 * pop["registered"].sum()
    assert (pop["registered"].to_numpy() == lists.any(axis=1)).all()
    assert pop["true_id"].is_unique
    assert set(records["true_id"]) == set(pop.loc[pop["registered"], "true_id"])  # every registered person has records
    assert not (clean / "truth" / "README.md").read_text().find("Only validation may read it") < 0
    meta = json.loads((clean / "synth.json").read_text())
    assert meta["seed"] == 11 and meta["counts"]["true_persons"] == len(pop)
    blob = (clean / "synth.json").read_text()
    first = raw_frame(clean, "F01")
    assert not any(name in blob for name in first["last_name"].head(50) if name), "synth.json holds no personal data"


def test_sector_marginals_match_their_profiles(tmp_path):
    tolerance = 0.035  # absolute, per share (about 3 standard errors); each sector has > 1,000 true persons here
    out = synth(tmp_path / "big", persons=12000, seed=3, pii=False, years="2020-2021")
    pop = pd.read_parquet(out / "truth" / "population.parquet")
    profiles = load_profiles(profiles_dir())
    pop["age_band"] = V.age_band(pop["age"]).to_numpy()
    checked = 0
    for sector, profile in profiles.sectors.items():
        rows = pop[pop["sector"] == sector]
        assert len(rows) > 1000, sector
        for column, shares in (("sex", profile.sex), ("nationality", profile.nationality), ("age_band", profile.age_bands),
                               ("exploitation", profile.exploitation)):
            seen = rows[column].astype(str).value_counts(normalize=True)
            for code in set(shares) | set(seen.index):
                assert abs(seen.get(code, 0.0) - shares.get(code, 0.0)) <= tolerance, (sector, column, code)
                checked += 1
        assert abs(rows["victim"].mean() - profile.victim_share) <= tolerance
    assert checked > 100
    registered = pop[pop["registered"]]
    mix = registered["sector"].astype(str).value_counts(normalize=True)
    for sector, share in profiles.scenario.sector_mix.items():
        assert abs(mix[sector] - share) < 0.002  # registered persons are allocated exactly


def test_minors_get_a_child_protection_notification(clean):
    pop = pd.read_parquet(clean / "truth" / "population.parquet")
    minors = set(pop.loc[pop["registered"] & (pop["age"] < 18), "true_id"])
    assert minors, "the demo profiles produce registered minors"
    f13 = raw_frame(clean, "F13")
    assert set(f13["true_id"]) == minors
    # the notification follows the first contact of the minor
    contacts = pd.concat([raw_frame(clean, c)[["true_id", "date"]] for c in ("F01", "F02", "F03")])
    first = _date(contacts["date"]).groupby(contacts["true_id"]).min()
    assert (_date(f13["date"]).to_numpy() >= first.loc[f13["true_id"]].to_numpy()).all()


def test_the_interview_records_the_recruitment_fee_and_the_recruiter_by_channel(clean):
    f04 = raw_frame(clean, "F04")
    fee = pd.to_numeric(f04["recruitment_fee_dkk"].str.replace(",", ".", regex=False))
    assert fee.notna().all() and (fee >= 0).all()
    assert set(f04["recruiter_relation"]) <= set(V.RECRUITER_RELATION)
    by_channel = f04.assign(paid=fee > 0).groupby("recruitment_channel")
    assert by_channel.paid.mean()["agency"] > by_channel.paid.mean()["family_or_friends"] + 0.3  # 0.75 against 0.15
    agency = f04[f04.recruitment_channel == "agency"].recruiter_relation
    assert len(agency) > 20 and (agency == "recruitment_agent").mean() > 0.75
    assert (f04[f04.recruitment_channel == "partner"].recruiter_relation.isin(["intimate_partner", "other"])).all()


def test_the_notification_comes_before_the_eighteenth_birthday(tmp_path):
    """Minors first registered days before turning 18 are still minors on their F13."""
    out = synth(tmp_path / "raw", persons=40_000, seed=3, pii=False)
    pop = pd.read_parquet(out / "truth" / "population.parquet").set_index("true_id")
    f13 = raw_frame(out, "F13")
    born = pd.to_datetime(pop.loc[f13["true_id"], "birth_date"]).dt.tz_localize(None)
    eighteen = (pd.DatetimeIndex(born) + pd.DateOffset(years=18)).to_numpy()
    assert len(f13) > 500
    assert (_date(f13["date"]).to_numpy() < eighteen).all()


def test_identified_persons_get_a_decision_before_reflection_and_safe_house(clean):
    f04, f05 = raw_frame(clean, "F04"), raw_frame(clean, "F05")
    identified = f05[f05["decision"] == "identified"].set_index("true_id")
    assert len(identified) > 50 and identified.index.is_unique
    decided = _date(identified["date"])
    interviewed = _date(f04.set_index("true_id")["date"])
    assert (decided.to_numpy() >= interviewed.loc[decided.index].to_numpy()).all(), "decision after interview"
    for code in ("F06", "F07"):
        later = raw_frame(clean, code)
        assert len(later) > 10
        assert set(later["true_id"]) <= set(identified.index), f"{code} only for identified persons"
        assert (_date(later["date"]).to_numpy() >= decided.loc[later["true_id"]].to_numpy()).all(), code
    f06 = raw_frame(clean, "F06")
    granted = pd.to_numeric(f06["days_granted"].replace("", np.nan))
    assert granted.dropna().between(30, 120).all()
    f14 = raw_frame(clean, "F14")
    assert set(f14["outcome"]) <= set(V.OUTCOME)


def test_reflection_period_rule_before_2013(tmp_path):
    out = synth(tmp_path / "old", persons=800, seed=4, pii=False, years="2009-2011")
    f06 = raw_frame(out, "F06")
    granted = set(pd.to_numeric(f06["days_granted"].replace("", np.nan)).dropna().astype(int))
    assert granted and granted <= {30, 60, 100}  # 30 + 30 + 40


def test_messy_records_link_back_to_their_persons(messy):
    """Connected components over CPR, passport + nationality and normalised name + birth date."""
    frames = [raw_frame(messy, c) for c in V.FORM_CODES]
    rec = pd.concat([f[["true_id", "cpr", "passport_no", "nationality", "first_name", "last_name", "birth_date"]] for f in frames],
                    ignore_index=True).replace({m: None for m in EXPORT.missing})
    keys = [
        rec["cpr"].str.replace("-", "", regex=False),
        (rec["passport_no"] + "/" + rec["nationality"]).where(rec["passport_no"].notna()),
        (rec["first_name"].map(normalise_name, na_action="ignore") + "/" + rec["last_name"].map(normalise_name, na_action="ignore")
         + "/" + _date(rec["birth_date"]).dt.strftime("%Y-%m-%d")),
    ]
    n = len(rec)
    src, dst, offset = [], [], n  # records are nodes 0..n-1, then one node per key value
    for k in keys:
        codes, uniques = pd.factorize(k)  # -1 where missing
        ok = codes >= 0
        src.append(np.flatnonzero(ok))
        dst.append(offset + codes[ok])
        offset += len(uniques)
    src, dst = np.concatenate(src), np.concatenate(dst)
    size = offset
    graph = coo_matrix((np.ones(src.size), (src, dst)), shape=(size, size))
    _, label = connected_components(graph, directed=False)
    rec["component"] = label[:n]
    per_person = rec.groupby("true_id")["component"].nunique()
    per_component = rec.groupby("component")["true_id"].nunique()
    assert (per_person == 1).mean() >= 0.99, "at least 99% of persons fully linked"
    assert (per_component > 1).sum() <= max(1, 0.001 * len(per_person)), "wrong merges at most 0.1%"
    assert rec["cpr"].str.contains("-", na=False).any() and rec["cpr"].str.fullmatch(r"\d{10}", na=False).any()


def test_fake_personal_data_is_consistent_per_person(clean):
    frames = pd.concat([raw_frame(clean, c) for c in V.FORM_CODES], ignore_index=True)
    with_cpr = frames[frames["cpr"] != ""]
    assert len(with_cpr) > 100
    # the CPR number holds the birth date (DDMMYY) and the sex (last digit even for women)
    born = _date(with_cpr["birth_date"]).dt.strftime("%d%m%y")
    assert (with_cpr["cpr"].str[:6] == born).all()
    parity = with_cpr["cpr"].str[-1].astype(int) % 2
    assert (parity[with_cpr["sex"] == "female"] == 0).all() and (parity[with_cpr["sex"] == "male"] == 1).all()
    # one CPR number and one passport number per person, and no two persons share one
    for key in ("cpr", "passport_no"):
        known = frames[frames[key] != ""]
        assert (known.groupby(key)["true_id"].nunique() == 1).all(), key
        assert (known.groupby("true_id")[key].nunique() == 1).all(), key
    # names as a Danish register stores them: Latin letters (transliterated from other scripts)
    for name in pd.unique(pd.concat([frames["first_name"], frames["last_name"]])):
        assert all(ch in " -'" or "LATIN" in unicodedata.name(ch, "") for ch in name), name
    pop = pd.read_parquet(clean / "truth" / "population.parquet").set_index("true_id")
    assert (frames.groupby("true_id")["nationality"].first() == pop.loc[frames.groupby("true_id").size().index, "nationality"].astype(str)).all()


def test_no_pii_leaves_personal_fields_empty(tmp_path):
    out = synth(tmp_path / "nopii", persons=100, seed=2, pii=False)
    for code in V.FORM_CODES:
        frame = raw_frame(out, code)
        for name in CAT.personal_fields(code):
            assert (frame[name] == "").all(), (code, name)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_no_registered_persons_gives_header_only_files(tmp_path, fmt):
    out = synth(tmp_path / "empty", persons=0, messy=True, fmt=fmt)
    for path in form_files(out, fmt):
        header, rows = read_csv_export(path) if fmt == "csv" else read_xlsx_export(path)
        assert header == CAT.columns_of(path.name[:3]) and rows == []
    assert len(pd.read_parquet(out / "truth" / "population.parquet")) == 0


def test_demo_defaults_identify_60_to_120_persons_a_year(tmp_path):
    out = synth(tmp_path / "demo", pii=False)
    meta = json.loads((out / "synth.json").read_text())
    per_year = meta["counts"]["identified_by_year"]
    assert sorted(per_year) == [str(y) for y in range(2015, 2025)]
    assert all(60 <= n <= 120 for n in per_year.values()), per_year


# --- bad input through the command line ----------------------------------------------------------


def _no_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture
def profile_copy(tmp_path) -> Path:
    folder = tmp_path / "profiles"
    shutil.copytree(profiles_dir(), folder)
    return folder


def _fails(args: list[str], *expected: str) -> str:
    result = runner.invoke(app, ["synth", *args])
    assert result.exit_code != 0, result.output
    message = result.output + (result.stderr if result.stderr_bytes is not None else "")
    for text in expected:
        assert text in message, (text, message)
    assert "Traceback" not in message
    return message


def test_unknown_profile_fails_naming_the_file(tmp_path, profile_copy):
    (profile_copy / "bogus.yaml").write_text("sector: bogus\n")
    out = tmp_path / "out"
    _fails(["--out", str(out), "--profiles", str(profile_copy), "--persons", "20"], "bogus.yaml", "unknown profile")
    assert not out.exists() and _no_leftovers(tmp_path) == []


def test_unknown_sector_fails(tmp_path):
    out = tmp_path / "out"
    _fails(["--out", str(out), "--sectors", "au_pair,shipbuilding"], "--sectors", "shipbuilding")
    _fails(["--out", str(out), "--sectors", "fishing"], "--sectors", "fishing.yaml")
    assert not out.exists()


@pytest.mark.parametrize("years", ["2024-2015", "20x5", "1800-1801"])
def test_bad_year_range_fails(tmp_path, years):
    _fails(["--out", str(tmp_path / "out"), "--years", years], "--years", years)
    assert not (tmp_path / "out").exists()


def test_negative_size_fails(tmp_path):
    _fails(["--out", str(tmp_path / "out"), "--persons", "-5"], "--persons", "-5")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_fails(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _fails(["--out", str(blocker / "out"), "--persons", "10"], str(blocker / "out"), "output folder")
    _fails(["--out", str(blocker), "--persons", "10"], str(blocker), "not a folder")
    assert blocker.read_text() == "not a folder"


def test_foreign_folder_is_never_replaced(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.docx").write_text("precious")
    _fails(["--out", str(mine), "--persons", "10"], "refusing to replace")
    assert (mine / "chapter1.docx").read_text() == "precious"


@pytest.mark.parametrize(
    "file,edit,key",
    [
        ("au_pair.yaml", lambda t: t.replace("sex: {female: 0.96, male: 0.04}", "sex: {female: 0.96, male: 0.40}"), "key sex"),
        ("cleaning.yaml", lambda t: t.replace("nationality: {RO: 0.35", "nationality: {ZZ: 0.35"), "key nationality"),
        ("prostitution.yaml", lambda t: t.replace("victim_share: 0.65", "victim_share: 1.65"), "key victim_share"),
        ("demo.yaml", lambda t: t.replace("heterogeneity_sd: 0.6", "heterogeneity_sd: lots"), "key capture.heterogeneity_sd"),
        ("agriculture.yaml", lambda t: t.replace("sector: agriculture", "sector: [agriculture"), "not valid YAML"),
        ("construction.yaml", lambda t: t.replace("coercive_recruitment:", "coercion_by_magic:", 1), "unknown dimension"),
        ("hospitality.yaml", lambda t: re.sub(r"(visibility: \{[^}]*\})", lambda m: re.sub(r": 0\.\d+", ": 0.0", m.group(1)), t),
         "key visibility"),
    ],
)
def test_malformed_profile_fails_naming_file_and_key(tmp_path, profile_copy, file, edit, key):
    path = profile_copy / file
    text = path.read_text()
    changed = edit(text)
    assert changed != text, "the test's edit applies"
    path.write_text(changed)
    out = tmp_path / "out"
    _fails(["--out", str(out), "--profiles", str(profile_copy), "--persons", "20"], file, key)
    assert not out.exists() and _no_leftovers(tmp_path) == []


def test_rerun_replaces_a_previous_output_atomically(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", "--out", str(out), "--persons", "30", "--seed", "1"])
    assert result.exit_code == 0, result.output
    first = _all_bytes(out)
    bad = runner.invoke(app, ["synth", "--out", str(out), "--persons", "-1"])
    assert bad.exit_code != 0 and _all_bytes(out) == first, "a failed run leaves the last good output"
    again = runner.invoke(app, ["synth", "--out", str(out), "--persons", "30", "--seed", "2"])
    assert again.exit_code == 0 and _all_bytes(out) != first
    assert _no_leftovers(tmp_path) == []
