"""Registration of persons by the eight organisations, and the dates of their contacts.

Each organisation registers a person of a sector with the sector's visibility to it, shifted
on the logit scale by the person's latent visibility: a part shared by every organisation
(the same persons tend to be seen by several organisations, which makes lists dependent)
and a part of each organisation's own (scenario settings ``heterogeneity_sd`` and
``heterogeneity_shared``). Dependence rules then add referrals: a person the
police registered is referred to the centre's outreach with some probability, a hotline
call leads to outreach, and so on. Vectorised over persons; no per-person loops.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from studylib.data.vocabularies import ORGANISATION

N_ORG = len(ORGANISATION)
ORG_INDEX = {o: i for i, o in enumerate(ORGANISATION)}
NOT_INDUCED = -1


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def visibility_vector(visibility: dict[str, float]) -> np.ndarray:
    """Per-organisation yearly chance of registration, in vocabulary order (missing: 0)."""
    return np.array([visibility.get(o, 0.0) for o in ORGANISATION])


def register(visibility: np.ndarray, latent: np.ndarray, sd: float, dependence, rng: np.random.Generator, shared: float = 1.0):
    """Who registers whom: ``captured`` (persons x organisations, bool) and ``induced_by``
    (the organisation index whose referral caused the registration, or -1).

    ``logit p = logit(visibility) + sd * (sqrt(shared) latent + sqrt(1 - shared) own)`` with
    ``own`` drawn per person and organisation only when ``shared < 1`` (so that scenarios
    with ``shared = 1`` draw exactly the same numbers as before the setting existed).
    """
    n = latent.shape[0]
    base = _logit(visibility)[None, :]
    effect = latent[:, None]
    if shared < 1.0:
        own = rng.standard_normal((n, N_ORG))
        effect = np.sqrt(shared) * effect + np.sqrt(1.0 - shared) * own
    p = 1.0 / (1.0 + np.exp(-(base + sd * effect)))
    p[:, visibility <= 0] = 0.0
    captured = rng.random((n, N_ORG), dtype=np.float32) < p
    induced_by = np.full((n, N_ORG), NOT_INDUCED, dtype=np.int8)
    for rule in dependence:
        f, t = ORG_INDEX[rule.from_], ORG_INDEX[rule.to]
        new = captured[:, f] & ~captured[:, t] & (rng.random(n, dtype=np.float32) < rule.probability)
        captured[:, t] |= new
        induced_by[new, t] = f
    return captured, induced_by


def contacts(persons: pd.DataFrame, captured: np.ndarray, induced_by: np.ndarray, capture, rng: np.random.Generator) -> pd.DataFrame:
    """One row per contact of a registered person: ``person`` (row of ``persons``),
    ``organisation`` (index), ``date`` (days since 1970), ``form`` (contact form code).

    The first contact falls on the person's ``first_contact`` day; the others follow within
    the same year (referrals after the contact that caused them; repeat contacts after).
    """
    n = len(persons)
    first = persons["first_contact"].to_numpy(np.int64)
    year_end = persons["year_end"].to_numpy(np.int64)
    offsets = rng.exponential(capture.spread_days, size=(n, N_ORG))
    own = captured & (induced_by == NOT_INDUCED)
    offsets = np.where(own, offsets, np.inf)
    offsets -= offsets.min(axis=1, keepdims=True)  # every registered person has an own registration
    dates = first[:, None] + np.floor(offsets)
    for rule in capture.dependence:
        f, t = ORG_INDEX[rule.from_], ORG_INDEX[rule.to]
        rows = induced_by[:, t] == f
        lag = rng.integers(rule.lag_days[0], rule.lag_days[1] + 1, size=int(rows.sum()))
        dates[rows, t] = dates[rows, f] + lag
    person, org = np.nonzero(captured)
    date = np.minimum(dates[person, org], year_end[person]).astype(np.int64)
    # repeat contacts by the same organisation, later in the same year
    rate = np.array([capture.repeat_contacts.get(o, 0.0) for o in ORGANISATION])
    extra = rng.poisson(rate[org])
    if extra.sum():
        rp = np.repeat(person, extra)
        ro = np.repeat(org, extra)
        rd = np.repeat(date, extra) + np.floor(rng.exponential(capture.spread_days, size=rp.shape[0])).astype(np.int64)
        person = np.concatenate([person, rp])
        org = np.concatenate([org, ro])
        date = np.concatenate([date, np.minimum(rd, year_end[rp])])
    form = np.empty(person.shape[0], dtype=object)
    for i, o in enumerate(ORGANISATION):
        rows = org == i
        shares = capture.contact_form[o]
        codes = np.array(list(shares), dtype=object)
        pick = np.searchsorted(np.cumsum(list(shares.values())), rng.random(int(rows.sum())), side="right")
        form[rows] = codes[np.minimum(pick, len(codes) - 1)]
    out = pd.DataFrame({"person": person.astype(np.int64), "organisation": org.astype(np.int8), "date": date, "form": form})
    return out.sort_values(["person", "date", "organisation"], kind="stable").reset_index(drop=True)
