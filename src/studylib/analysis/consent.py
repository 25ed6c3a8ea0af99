"""The legal basis of a study and the persons it may use: research consent.

A study states its basis (``consent: required`` or ``not_required``, a template parameter the
study file sets). Under ``required`` only persons who agreed to research use of
non-identifying data (``research_consent == "yes"``, HTCDS con_Consent) are studied; everyone
else (``no`` or ``unknown``) is left out. :func:`consent_basis` checks the basis,
:func:`consent_status` says per person whether they are in or out (for a safe table of how
many were left out), :func:`studied_persons` keeps those the basis allows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASES = ("required", "not_required")
AGREED, LEFT_OUT = "agreed", "not_agreed_or_unknown"
#: the order in which a table of consent shows its two groups
STATUS_ORDER = (AGREED, LEFT_OUT)


def consent_basis(basis: str) -> str:
    """``basis`` if it is ``required`` or ``not_required``; otherwise an error that names both."""
    if basis not in BASES:
        raise ValueError(f"consent must be 'required' or 'not_required', not {basis!r}")
    return basis


def consent_status(persons: pd.DataFrame) -> pd.Series:
    """``agreed`` for persons who agreed to research use, ``not_agreed_or_unknown`` for the others."""
    if "research_consent" not in persons.columns:
        raise KeyError("the persons frame has no research_consent column (the dataset's cases table has one)")
    agreed = persons["research_consent"].astype(str).to_numpy() == "yes"
    return pd.Series(np.where(agreed, AGREED, LEFT_OUT), index=persons.index, name="consent", dtype=object)


def studied_persons(persons: pd.DataFrame, basis: str) -> pd.DataFrame:
    """The persons a study may use: all of them, or under ``required`` those who agreed."""
    if consent_basis(basis) == "not_required":
        return persons
    return persons[consent_status(persons).to_numpy() == AGREED]
