"""Benchmark of the HTCDS case-level export (target: 1,000,000 persons in at most 60 s).

A dataset of 1,000,000 synthetic persons (random codes over the vocabularies, made here and
written with studylib.data.write_dataset; not timed) is exported end to end with
``write_htcds_export`` (read the cases, map codes, k-anonymise with k = 11, shuffle, fresh
tokens, write CSV and metadata). The floor, measured in the same run: the bare Parquet read of
the cases columns the export uses and a Parquet write of them with pyarrow. Prints both and the ratio.

Run: nice .venv/bin/python benchmarks/bench_exports.py [PERSONS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from studylib.data import vocabularies as v
from studylib.data import write_dataset
from studylib.exchange.codes import exchange_formats
from studylib.exchange.htcds_export import write_htcds_export

TARGET = 60.0


def synthetic_tables(n: int, seed: int = 18) -> dict[str, pd.DataFrame]:
    """Schema-valid tables of ``n`` persons, one contact event each (vectorised)."""
    rng = np.random.default_rng(seed)
    ids = pd.Series(rng.integers(0, 2**63 - 1, size=(n, 4), dtype=np.int64).view(np.uint64).tolist()).map(
        lambda parts: "".join(f"{p:016x}" for p in parts))
    pick = lambda codes, p=None: rng.choice(np.asarray(codes, dtype=object), size=n, p=p)  # noqa: E731
    sex = pick(v.SEX, [0.6, 0.37, 0.01, 0.02])
    nationality = pick(v.NATIONALITY)
    year = rng.integers(2010, 2025, size=n)
    first = pd.to_datetime(year.astype(str), format="%Y") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    age = rng.integers(12, 70, size=n)
    region = pick(v.REGION[:5])
    orgs = np.asarray(v.ORGANISATION, dtype=object)
    org = rng.integers(0, len(orgs), size=n)
    persons = pd.DataFrame({"person_id": ids, "sex": sex, "birth_year": pd.array(year - age, dtype="Int64"), "nationality": nationality})
    events = pd.DataFrame({"event_id": "F01-" + pd.Series(np.arange(n)).map("{:020x}".format), "person_id": ids, "form": "F01",
                           "date": first, "organisation": orgs[org], "region": region})
    indicators = pd.DataFrame({"person_id": pd.Series([], dtype=str), "indicator": pd.Series([], dtype=str), "event_id": pd.Series([], dtype=str)})
    decision = pick(v.DECISION, [0.5, 0.3, 0.2])
    cases = pd.DataFrame({
        "person_id": ids, "sex": sex, "birth_year": persons.birth_year, "nationality": nationality, "region": region,
        "first_contact_date": first, "first_contact_year": pd.array(year, dtype="Int64"), "age_at_first_contact": pd.array(age, dtype="Int64"),
        "age_band": v.age_band(pd.Series(age)).to_numpy(), "minor": pd.array(age < 18, dtype="boolean"),
        "sector": pick(v.SECTOR), "exploitation": pick(v.EXPLOITATION), "recruitment_channel": pick(v.RECRUITMENT_CHANNEL),
        "referral_source": orgs[org], **{f"list_{o}": org == i for i, o in enumerate(orgs)},
        "n_lists": pd.array(np.ones(n, dtype=np.int64), dtype="Int64"), "decision": decision,
        "decision_date": pd.Series(first).where(decision != "pending"),
        "reflection_days": pd.array([pd.NA] * n, dtype="Int64"), "safe_house_days": pd.array([pd.NA] * n, dtype="Int64"),
        **{f"service_{s}": rng.random(n) < 0.3 for s in v.SERVICE},
        "outcome": pd.Series([None] * n, dtype=object), "research_consent": pick(v.RESEARCH_CONSENT, [0.7, 0.1, 0.2]),
    })
    return {"persons": persons, "events": events, "indicators": indicators, "cases": cases}


def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        data = write_dataset(synthetic_tables(n), tmp / "dataset", made_by={"tool": "benchmarks/bench_exports.py"})
        print(f"setup: {n:,} synthetic persons written in {time.perf_counter() - start:.1f} s (not timed)")

        needed = sorted({*exchange_formats()["export"]["fields"].values(), "research_consent"})
        start = time.perf_counter()
        table = pq.read_table(data / "cases.parquet", columns=needed)
        pq.write_table(table, tmp / "floor.parquet")
        floor = time.perf_counter() - start

        start = time.perf_counter()
        out, meta = write_htcds_export(data, tmp / "partner.csv", k=11)
        export = time.perf_counter() - start
        loss = meta["information_loss"]
        print(f"floor (bare Parquet read + write of the cases columns the export uses): {floor:6.2f} s")
        print(f"HTCDS export, k = 11 (achieved {meta['k_achieved']}; precision lost {loss['precision_lost']:.0%}, "
              f"removed {loss['removed_share']:.2%}): {export:6.2f} s  ({export / TARGET:.2f} of the {TARGET:.0f} s target; "
              f"{export / floor:.1f}x the floor); file {out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
