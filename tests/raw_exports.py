"""Hand-made raw form exports for the ingest tests, built from the form catalogue.

Small and independent of the generator (``studylib synth``): every valid value comes from
the catalogue (codes, ranges, who submits which form), the fake names come from short pools
with Danish letters, and the truth (which records are one person) is returned with them.
``messy=True`` spells names differently across records (case, Danish letters, accents,
spacing, hyphens, word order) and leaves linkage keys out of some records.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.data import vocabularies
from studylib.data.form_catalogue import form_catalogue
from studylib.indicators import indicator_codes

FIRST = {"female": ["Anne-Marie", "Søs", "Maria", "Jovelyn", "Blessing", "Ioana", "Ærø", "Åse", "Grace", "Mette", "Olga", "Nkechi",
                    "Lærke", "Bøgild", "Zoë", "Renée", "Marie Louise", "Kateryna", "Agnieszka", "Precious"],
         "male": ["Søren", "Jens", "Mihai", "Juan Carlos", "Chukwu", "Åge", "Bjørn", "Nguyen", "Rafael", "Andrzej", "José", "Ole",
                  "Kjærgaard", "Tomás", "Ivan", "Ali", "Mohammed", "Piotr", "Jörg", "Efosa"]}
LAST = ["Jensen", "Møller", "Nielsen", "Popescu", "Okafor", "Ærbøl", "Sørensen", "Dela Cruz", "Nowak", "Ålund", "García",
        "Østergård", "Kowalski", "Nguyen", "Müller", "Ionescu", "Edo-Osagie", "Hansen", "Kristiansen", "Brønnum",
        "Pedersen", "Andersen", "Santos", "Rasmussen", "Lund", "Olsen", "Petersen", "Mortensen", "Holm", "Schmidt"]


def _variant(name: str, rng: np.random.Generator) -> str:
    """One messy spelling of a name (the linkage must undo it)."""
    kind = rng.integers(0, 7)
    if kind == 0:
        return name.upper()
    if kind == 1:
        return name.lower()
    if kind == 2:
        return name.replace("æ", "ae").replace("ø", "oe").replace("å", "aa").replace("Æ", "Ae").replace("Ø", "Oe").replace("Å", "Aa")
    if kind == 3:
        return name.replace("ø", "o").replace("å", "a").replace("é", "e").replace("ë", "e").replace("ö", "o").replace("ü", "u").replace("ř", "r")
    if kind == 4:
        return name.replace("-", " ").replace(" ", "  ")
    if kind == 5:
        return name.replace(" ", "-")
    return f" {name} "


def _cpr(born: pd.Timestamp, rng: np.random.Generator) -> str:
    year = born.year
    if year < 1900:
        first = 5
    elif year >= 2000:
        first = 4 if year <= 2036 else 5
    else:
        first = int(rng.integers(0, 4))
    return f"{born:%d%m%y}-{first}{int(rng.integers(0, 1000)):03d}"


def make_persons(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], size=n, p=[0.6, 0.4])
    nat = rng.choice([c for c in vocabularies.NATIONALITY if c != "XX"], size=n)
    born = pd.to_datetime("1960-01-01") + pd.to_timedelta(rng.integers(0, 45 * 365, size=n), unit="D")
    minors = rng.random(n) < 0.05
    born = born.where(~minors, pd.to_datetime("2006-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, size=n), unit="D"))
    first = [FIRST[s][i] for s, i in zip(sex, rng.integers(0, 20, size=n))]
    last = [LAST[i] for i in rng.integers(0, len(LAST), size=n)]
    has_cpr = (nat == "DK") | (rng.random(n) < 0.35)
    has_passport = rng.random(n) < 0.6
    persons = pd.DataFrame({
        "true_id": [f"P{i:07d}" for i in range(n)], "sex": sex, "nationality": nat, "birth_date": born,
        "first_name": first, "last_name": last,
        "cpr": [_cpr(b, rng) if h else "" for b, h in zip(born, has_cpr)],
        "passport_no": [f"{nat_}{int(rng.integers(10**6, 10**8))}" if h else "" for nat_, h in zip(nat, has_passport)],
        "first_contact": pd.to_datetime("2019-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, size=n), unit="D"),
    })
    return persons


def _value(field, form, rng, contact_date, person):
    """A valid raw value of one field for one record."""
    cat = form_catalogue()
    if field.name == "organisation":
        return str(rng.choice(form.submitted_by))
    if field.type == "code":
        codes = [c for c in field.allowed_codes() if c not in ("XX",)]
        return str(rng.choice(codes))
    if field.type == "codes":
        codes = indicator_codes()
        k = int(rng.integers(0, 5))
        return cat.export.multi_separator.join(rng.choice(codes, size=k, replace=False)) if k else ""
    if field.type == "boolean":
        return str(rng.choice(["yes", "no"] if field.required else ["yes", "no", ""]))
    if field.type == "integer":
        lo, hi = int(field.min if field.min is not None else 0), int(field.max if field.max is not None else 100)
        return str(int(rng.integers(lo, min(hi, lo + 200) + 1)))
    if field.type == "decimal":
        return f"{rng.uniform(0, min(field.max or 1000, 50000)):.2f}"
    if field.type == "date":
        if field.name == "end_date":
            return ""  # filled below (after start_date)
        return (contact_date + pd.Timedelta(days=int(rng.integers(0, 60)))).strftime("%Y-%m-%d")
    if field.type == "string":
        return "" if field.personal else "x"
    raise AssertionError(field.type)


def make_records(persons: pd.DataFrame, seed: int = 2, messy: bool = False) -> pd.DataFrame:
    """Records of every form for the persons: each has a contact form, many go further."""
    rng = np.random.default_rng(seed)
    cat = form_catalogue()
    rows = []
    counter = {code: 0 for code in vocabularies.FORM_CODES}
    for p in persons.itertuples(index=False):
        forms = [str(rng.choice(["F01", "F02", "F03"]))]
        forms += [f for f in ("F01", "F02", "F03") if rng.random() < 0.15 and f not in forms]
        if rng.random() < 0.6:
            forms += ["F04", "F05"]
            forms += [f for f in ("F06", "F07", "F08", "F09", "F10", "F11", "F12", "F14") if rng.random() < 0.3]
            if (p.first_contact - p.birth_date).days < 17 * 365:
                forms.append("F13")
        for k, code in enumerate(forms):
            form = cat.form(code)
            counter[code] += 1
            date = p.first_contact + pd.Timedelta(days=0 if k == 0 else int(rng.integers(1, 90)))
            row = {"form": code, "true_id": p.true_id, "record_id": f"{code}-{counter[code]:07d}"}
            for f in cat.fields_of(code):
                if f.name in ("record_id",):
                    continue
                if f.name == "date":
                    row["date"] = date.strftime("%Y-%m-%d")
                elif f.name in ("first_name", "last_name", "cpr", "passport_no", "sex", "nationality"):
                    row[f.name] = getattr(p, f.name)
                elif f.name == "birth_date":
                    row[f.name] = p.birth_date.strftime("%Y-%m-%d")
                elif f.name == "phone":
                    row[f.name] = f"+45 {int(rng.integers(10**7, 10**8))}" if rng.random() < 0.5 else ""
                elif f.name == "email":
                    row[f.name] = f"{p.first_name.split()[0].lower()}.{int(rng.integers(100, 999))}@example.org" if rng.random() < 0.3 else ""
                elif f.name == "address":
                    row[f.name] = f"Vesterbrogade {int(rng.integers(1, 200))}, 1620 København V" if rng.random() < 0.3 else ""
                elif f.name == "notes":
                    row[f.name] = f"Mødt ved {p.first_name}s arbejdsplads; siger \"ingen løn\"\nopfølgning" if rng.random() < 0.4 else ""
                elif f.name == "closure_reason":
                    row[f.name] = f"{p.first_name} rejste hjem" if rng.random() < 0.5 else ""
                elif f.name in ("start_date", "return_date"):
                    row[f.name] = (date + pd.Timedelta(days=int(rng.integers(0, 10)))).strftime("%Y-%m-%d")
                else:
                    row[f.name] = _value(f, form, rng, date, p)
            if code == "F07" and rng.random() < 0.8:
                row["end_date"] = (pd.Timestamp(row["start_date"]) + pd.Timedelta(days=int(rng.integers(1, 120)))).strftime("%Y-%m-%d")
            if code == "F06":
                row["offered"] = "yes"
            if messy:
                if rng.random() < 0.3:
                    row["first_name"] = _variant(row["first_name"], rng)
                if rng.random() < 0.3:
                    row["last_name"] = _variant(row["last_name"], rng)
                if rng.random() < 0.05:
                    row["first_name"], row["last_name"] = row["last_name"], row["first_name"]
                if k > 0 and rng.random() < 0.2:
                    row["cpr"] = ""
                if k > 0 and rng.random() < 0.2:
                    row["passport_no"] = ""
                if rng.random() < 0.1:
                    row["cpr"] = row["cpr"].replace("-", "")
            rows.append(row)
    return pd.DataFrame(rows)


DIALECTS = {
    "iso": {"sep": ",", "encoding": "utf-8", "date": "%Y-%m-%d", "decimal": ".", "yes": "yes", "no": "no"},
    "danish": {"sep": ";", "encoding": "cp1252", "date": "%d-%m-%Y", "decimal": ",", "yes": "ja", "no": "nej"},
    "bom": {"sep": ";", "encoding": "utf-8-sig", "date": "%d.%m.%Y", "decimal": ",", "yes": "ja", "no": "nej"},
}


def export_frame(records: pd.DataFrame, code: str, dialect: str = "iso") -> pd.DataFrame:
    """The rows of one form as an export would spell them."""
    cat = form_catalogue()
    d = DIALECTS[dialect]
    frame = records[records["form"] == code].reindex(columns=cat.columns_of(code)).fillna("")
    for f in cat.fields_of(code):
        col = frame[f.name].astype(str)
        if f.type == "date":
            parsed = pd.to_datetime(col.where(col != ""), format="%Y-%m-%d", errors="coerce")
            col = parsed.dt.strftime(d["date"]).fillna("")
        elif f.type == "decimal":
            col = col.str.replace(".", d["decimal"], regex=False)
        elif f.type == "boolean":
            col = col.map({"yes": d["yes"], "no": d["no"], "": ""})
        frame[f.name] = col
    return frame


def write_export(frame: pd.DataFrame, path: Path, dialect: str = "iso") -> Path:
    d = DIALECTS[dialect]
    path.write_text(frame.to_csv(index=False, sep=d["sep"], quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n" if d["sep"] == ";" else "\n"),
                    encoding=d["encoding"], newline="")
    return path


def write_raw_exports(folder: Path, n_persons: int = 200, seed: int = 1, messy: bool = False, dialects=("iso", "danish", "bom"),
                      records: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write one export per form into ``folder``; return the records with their true person."""
    folder.mkdir(parents=True, exist_ok=True)
    if records is None:
        records = make_records(make_persons(n_persons, seed), seed + 1, messy=messy)
    cat = form_catalogue()
    for i, code in enumerate(vocabularies.FORM_CODES):
        dialect = dialects[i % len(dialects)]
        write_export(export_frame(records, code, dialect), folder / cat.file_name(code), dialect)
    return records
