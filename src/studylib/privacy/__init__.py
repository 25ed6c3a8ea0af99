"""studylib.privacy: pseudonymisation, disclosure control of tables, and the output audit.

- disclosure control (:mod:`~studylib.privacy.disclosure`): :func:`protect_table` (primary
  and secondary suppression checked by :func:`attack`, or controlled rounding), and
  percentages and rates from published cells only;
- the output audit (:mod:`~studylib.privacy.audit`): :func:`audit_path` checks executed
  notebooks, HTML and PDF reports for unmarked tables and figures, small counts, personal
  data, the key, person tokens and deny-listed names;
- deny lists (:mod:`~studylib.privacy.denylist`): keyed hashes of the names ingest saw.
"""

from studylib.privacy.disclosure import (
    DisclosureError,
    DisclosureSettings,
    ProtectedTable,
    apply_suppression,
    attack,
    protect_table,
    published_rates,
    published_shares,
)
from studylib.privacy.marker import MARKER_ATTRIBUTE, MARKER_METADATA_KEY, parse_marker

__all__ = [
    "DisclosureError",
    "DisclosureSettings",
    "MARKER_ATTRIBUTE",
    "MARKER_METADATA_KEY",
    "ProtectedTable",
    "apply_suppression",
    "attack",
    "parse_marker",
    "protect_table",
    "published_rates",
    "published_shares",
]
