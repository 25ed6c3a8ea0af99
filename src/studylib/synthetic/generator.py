"""``studylib synth``: the whole generator, from options to a finished output folder.

Population and capture (:mod:`population`, :mod:`capture`), the forms that follow
(:mod:`events`), fake personal data (:mod:`pii`), mess on request (:mod:`messy`) and the
files (:mod:`export`). Output, written to a temporary folder beside ``out`` and renamed into
place only when complete::

    out/F01_outreach.csv ... F14_closure.csv   one raw export per form (header only if empty)
    out/truth/population.parquet               the true population (validation only)
    out/truth/records.parquet                  form, record_id, true_id of every raw row
    out/truth/README.md
    out/synth.json                             parameters, seed, counts (no personal data)

The same options and seed give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from studylib import __version__
from studylib.data import vocabularies as V
from studylib.data.atomic import replace_folder
from studylib.errors import ConfigError
from studylib.data.form_catalogue import form_catalogue
from studylib.synthetic import capture, events, messy, pii, population
from studylib.synthetic.export import spell, write_csv, write_xlsx
from studylib.synthetic.profiles import ProfileSet, load_profiles, parse_years, select_sectors

DEFAULT_SEED = 2007  # the year the Danish centre was established
STAGES = ("profiles", "population", "forms", "personal data", "records", "exports", "truth")
MARKER = "synth.json"

TRUTH_README = """# Ground truth of a synthetic export: for validation only

This folder was written by `studylib synth` together with the raw form exports beside it.
It holds what a real centre never knows: the whole population in exploitation (most of it
never registered), who is a victim, who was registered by which organisation, and which
true person each raw record belongs to (duplicates included).

Only validation may read it: tests of ingest (linkage accuracy), of the extent estimators
(coverage of the true population) and of the indicator classification. Analysis code,
templates and reports must never read it: they see the data through ingest, as they would
see real data.

- `population.parquet`: one row per true person: `true_id`, `year`, `sector`, `sex`,
  `birth_date`, `age` (at first contact), `minor`, `nationality`, `region`, `exploitation`,
  `recruitment_channel`, `victim`, `latent_visibility`, `has_cpr`, `has_passport`,
  `registered`, and `list_<organisation>` (registered by that organisation that year).
- `records.parquet`: `form`, `record_id`, `true_id`, `duplicate` (a second submission).
"""


@dataclass(frozen=True)
class SynthOptions:
    """What ``studylib synth`` was asked for; None means the scenario's default."""

    out: Path
    persons: int | None = None
    years: str | None = None
    seed: int = DEFAULT_SEED
    messy: bool = False
    pii: bool = True
    fmt: str = "csv"
    profiles: Path | None = None
    sectors: tuple[str, ...] | None = None


@dataclass
class SynthResult:
    out: Path
    counts: dict
    timings: dict[str, float] = field(default_factory=dict)


Progress = Callable[[str], None]


# --- options and output folder ----------------------------------------------------------------


def _check_options(options: SynthOptions) -> None:
    problems = []
    if options.persons is not None and options.persons < 0:
        problems.append(f"--persons: must be 0 or more, got {options.persons}")
    if options.fmt not in ("csv", "xlsx"):
        problems.append(f"--format: must be csv or xlsx, got {options.fmt!r}")
    if options.seed < 0:
        problems.append(f"--seed: must be 0 or more, got {options.seed}")
    if problems:
        raise ConfigError("\n".join(problems))


def _prepare_output(out: Path) -> Path:
    """Check that ``out`` may be (re)written and make the temporary folder beside it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output folder: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ConfigError(f"{out}: output folder: not empty and not written by studylib synth (no {MARKER}); refusing to replace it")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{out}: output folder: cannot write in {parent}: {exc.strerror or exc}") from None
    return tmp


# --- records: the forms with personal data and mess ---------------------------------------------


def _ordered(forms: dict[str, dict], options: SynthOptions, duplicate_rate: float, rng: np.random.Generator) -> dict[str, dict]:
    """Each form's rows with duplicate submissions added (messy) and sorted by date."""
    ordered = {}
    for code in V.FORM_CODES:
        df = forms.pop(code)
        size = len(df["person"])
        rows = messy.duplicate_rows(size, duplicate_rate, rng) if options.messy else np.arange(size)
        dup = np.r_[False, rows[1:] == rows[:-1]] if rows.size else np.zeros(0, bool)
        order = np.lexsort((rng.random(rows.size), np.asarray(df["date"])[rows]))
        df = events.take(df, rows[order])
        df["duplicate"] = dup[order]
        ordered[code] = df
    return ordered


def _person_columns(person: np.ndarray, reg: pd.DataFrame, people: pii.PersonPII | None, mcfg, messy_on: bool,
                    rng: np.random.Generator) -> dict:
    """The person fields of every record (``person``: row of ``reg`` per record)."""
    n = person.size
    cols = {
        "sex": np.array(V.SEX, dtype=object)[reg["sex"].to_numpy()][person],
        "nationality": np.array(V.NATIONALITY, dtype=object)[reg["nationality"].to_numpy()][person],
    }
    if people is None:
        empty = np.full(n, None, dtype=object)
        for name in ("first_name", "last_name", "cpr", "passport_no", "phone", "email", "address", "notes"):
            cols[name] = empty
        cols["birth_date"] = pd.array(np.zeros(n, np.int64), dtype="Int64")
        cols["birth_date"][:] = pd.NA
        return cols
    pcfg = pii.pii_config()
    if messy_on:
        keys = messy.keys_on_records(person, reg["has_cpr"].to_numpy(), reg["has_passport"].to_numpy(),
                                     mcfg.missing_key_rate, mcfg.broken_person_rate, rng)
        table = messy.name_variants(people.names)
        first = table[people.first[person], messy.variant_kinds(rng, n, mcfg.name_variant_rate)]
        last = table[people.last[person], messy.variant_kinds(rng, n, mcfg.name_variant_rate)]
    else:
        keys = {k: np.ones(n, bool) for k in ("cpr", "passport", "birth_date", "names")}
        first, last = people.names[people.first[person]], people.names[people.last[person]]
    first = np.where(keys["names"], first, None)
    last = np.where(keys["names"], last, None)
    cpr = np.where(keys["cpr"], people.cpr[person], None)
    if messy_on:
        plain = (rng.random(n) < mcfg.cpr_without_hyphen_rate) & pd.notna(cpr)
        if plain.any():
            cpr[plain] = np.char.replace(cpr[plain].astype(str), "-", "").astype(object)
    on = pcfg["on_record"]
    birth = pd.array(reg["birth_day"].to_numpy(np.int64)[person], dtype="Int64")
    birth[~keys["birth_date"]] = pd.NA
    cols.update({
        "first_name": first,
        "last_name": last,
        "birth_date": birth,
        "cpr": cpr,
        "passport_no": np.where(keys["passport"], people.passport[person], None),
        "phone": np.where(rng.random(n) < on["phone"], people.phone[person], None),
        "email": np.where(rng.random(n) < on["email"], people.email[person], None),
        "address": np.where(rng.random(n) < on["address"], people.address[person], None),
        "notes": pii.free_text(pcfg["notes"], first, rng.random(n) < on["notes"], rng),
    })
    return cols


def _records(forms: dict[str, dict], reg: pd.DataFrame, people: pii.PersonPII | None, profiles: ProfileSet,
             options: SynthOptions, rng: np.random.Generator) -> tuple[dict[str, dict], pa.Table]:
    """Every form as its export columns (typed, catalogue order), plus the truth rows
    (form, record_id, true_id, duplicate)."""
    cat = form_catalogue()
    mcfg = profiles.scenario.messy
    pcfg = pii.pii_config()
    ordered = _ordered(forms, options, mcfg.duplicate_rate, rng)
    lengths = [len(ordered[c]["person"]) for c in V.FORM_CODES]
    person = np.concatenate([ordered[c]["person"] for c in V.FORM_CODES]).astype(np.int64)
    cols = _person_columns(person, reg, people, mcfg, options.messy, rng)
    out, truth = {}, []
    start = 0
    for code, length in zip(V.FORM_CODES, lengths):
        df = ordered[code]
        part = slice(start, start + length)
        start += length
        record_id = record_ids(code, length)
        data = {"record_id": record_id}
        for f in cat.fields_of(code):
            if f.name == "record_id":
                continue
            if f.name in cols:
                data[f.name] = cols[f.name][part]
            elif f.name == "closure_reason":  # free text that fits the outcome
                present = (rng.random(length) < pcfg["on_record"]["closure_reason"]) & (people is not None)
                given = cols["first_name"][part]
                outcome = np.asarray(df["outcome"], dtype=object)
                reason = np.full(length, None, dtype=object)
                for kind, templates in pcfg["closure_reasons"].items():
                    rows = outcome == kind
                    reason[rows] = pii.free_text(templates, given[rows], present[rows], rng)
                data[f.name] = reason
            else:
                data[f.name] = df[f.name]
        if options.messy and length:
            for f in cat.fields_of(code):
                if not f.required and not f.personal:
                    gone = rng.random(length) < mcfg.missing_field_rate
                    data[f.name] = _blank(data[f.name], gone)
        out[code] = data
        truth.append(pa.table({
            "form": pa.array(np.full(length, code, dtype=object), type=pa.string()).dictionary_encode(),
            "record_id": record_id.cast(pa.string()),
            "true_id": pa.array(reg["true_id"].to_numpy()[df["person"]]),
            "duplicate": pa.array(df["duplicate"]),
        }))
    return out, pa.concat_tables(truth).combine_chunks()


def record_ids(code: str, n: int) -> pa.Array:
    """The database ids of a form's records: ``F01-0000001`` ... (unique per form)."""
    width = max(7, len(str(n)))
    seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.large_string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(f"{code}-", pa.large_string()), seq, pa.scalar("", pa.large_string()))


def _blank(values, gone: np.ndarray):
    """A copy of ``values`` with the ``gone`` cells missing."""
    if not gone.any():
        return values
    if isinstance(values, np.ndarray):
        out = values.astype(object) if values.dtype != object else values.copy()
        out[gone] = None
        return out
    out = values.copy()
    out[gone] = pd.NA
    return out


# --- the whole run ----------------------------------------------------------------------------


def _profile_hashes(profiles: ProfileSet) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(profiles.folder.glob("*.yaml"))}


def generate(options: SynthOptions, progress: Progress | None = None) -> SynthResult:
    """Generate a synthetic export into ``options.out`` (atomically). Raises ConfigError."""
    from studylib.paths import profiles_dir

    step = progress or (lambda stage: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    step("profiles")
    _check_options(options)
    profiles = load_profiles(options.profiles or profiles_dir())
    years = parse_years(options.years, "--years") if options.years is not None else parse_years(profiles.scenario.years, f"{profiles.folder / 'demo.yaml'}: key years")
    mix = select_sectors(profiles, list(options.sectors) if options.sectors else None)
    tmp = _prepare_output(Path(options.out))
    lap("profiles")
    try:
        result = _generate_into(tmp, options, profiles, years, mix, step, lap)
        replace_folder(tmp, Path(options.out))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.timings = timings
    return result


def _generate_into(tmp: Path, options: SynthOptions, profiles: ProfileSet, years: tuple[int, ...], mix: dict[str, float],
                   step: Progress, lap) -> SynthResult:
    cat = form_catalogue()
    seeds = np.random.SeedSequence(options.seed).spawn(6)
    rng_pop, rng_contact, rng_events, rng_pii, rng_records, rng_files = (np.random.default_rng(s) for s in seeds)
    export_day = population.day(years[-1], 12, 31) + profiles.scenario.pathway.export_lag_days

    step("population")
    targets = population.registered_targets(profiles, years, mix, options.persons)
    pop = population.simulate(profiles, targets, rng_pop)
    registered = pop.frame["registered"].to_numpy()
    reg = pop.frame[registered].reset_index(drop=True)
    outreach, hotline = capture.ORG_INDEX["centre_outreach"], capture.ORG_INDEX["hotline"]
    reg["hotline_to_outreach"] = pop.induced_by[registered][:, outreach] == hotline
    lap("population")

    step("forms")
    contacts = capture.contacts(reg, pop.captured[registered], pop.induced_by[registered], profiles.scenario.capture, rng_contact)
    forms = events.all_forms(reg, contacts, profiles, rng_events, export_day)
    lap("forms")

    step("personal data")
    people = pii.person_pii(reg, rng_pii) if options.pii else None
    lap("personal data")

    step("records")
    records, truth_records = _records(forms, reg, people, profiles, options, rng_records)
    del forms, people
    lap("records")

    step("exports")
    dialects = (messy.choose_dialects(rng_files, profiles.scenario.messy.dialects, V.FORM_CODES) if options.messy
                else {c: profiles.scenario.clean_dialect for c in V.FORM_CODES})
    files, rows = {}, {}
    f05 = truth_records.filter(pc.equal(truth_records["form"].cast(pa.string()), "F05"))["true_id"].to_numpy()
    identified = f05[np.asarray(records["F05"]["decision"], dtype=object) == "identified"]
    for code in V.FORM_CODES:
        name = cat.file_name(code, options.fmt)
        fields = cat.fields_of(code)
        dialect = dialects[code]
        columns = records.pop(code)  # written, then released
        rows[code] = len(columns["record_id"])
        if options.fmt == "csv":
            text = spell(columns, fields, dialect)
            if options.messy:
                text = messy.spell_missing(text, profiles.scenario.messy.missing_spellings, rng_files)
            write_csv(text, tmp / name, dialect, free_text={f.name for f in fields if f.type == "string"})
            files[code] = {"file": name, "rows": rows[code], "dialect": dialect.model_dump(exclude={"weight"})}
        else:
            write_xlsx(columns, fields, tmp / name, dialect, sheet=code)
            files[code] = {"file": name, "rows": rows[code], "booleans": [dialect.true, dialect.false]}
        del columns
    lap("exports")

    step("truth")
    truth_dir = tmp / "truth"
    truth_dir.mkdir()
    truth_pop = population.truth_table(pop)
    truth_pop.to_parquet(truth_dir / "population.parquet", index=False)
    pq.write_table(truth_records, truth_dir / "records.parquet")
    (truth_dir / "README.md").write_text(TRUTH_README, encoding="utf-8")
    counts = _counts(truth_pop, rows, truth_records, identified)
    meta = {
        "generator": "studylib synth",
        "studylib_version": __version__,
        "seed": options.seed,
        "persons": options.persons,
        "years": [years[0], years[-1]],
        "sectors": {s: round(v, 6) for s, v in mix.items()},
        "messy": options.messy,
        "pii": options.pii,
        "format": options.fmt,
        "scenario": profiles.scenario.name,
        "profiles": {"folder": profiles.folder.name, "sha256": _profile_hashes(profiles)},
        "form_catalogue_version": cat.version,
        "indicator_catalogue_version": _indicator_version(),
        "export_date": str(np.datetime64(export_day, "D")),
        "counts": counts,
        "files": files,
        "truth": "truth/ is ground truth for validation only; see truth/README.md",
    }
    (tmp / MARKER).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lap("truth")
    return SynthResult(out=Path(options.out), counts=counts)


def _indicator_version() -> str:
    from studylib.indicators import catalogue

    return str(catalogue().attrs["version"])


def _counts(truth_pop: pd.DataFrame, records: dict[str, int], truth_records: pa.Table, identified: np.ndarray) -> dict:
    ident_ids = identified
    years = truth_pop.set_index("true_id")["year"]
    ident_by_year = pd.Series(years.loc[np.unique(ident_ids)].to_numpy()).value_counts().sort_index() if ident_ids.size else pd.Series(dtype=int)
    return {
        "true_persons": int(len(truth_pop)),
        "registered_persons": int(truth_pop["registered"].sum()),
        "victims": int(truth_pop["victim"].sum()),
        "identified_by_year": {str(k): int(v) for k, v in ident_by_year.items()},
        "records": records,
        "duplicates": int(pc.sum(truth_records["duplicate"]).as_py() or 0),
    }
