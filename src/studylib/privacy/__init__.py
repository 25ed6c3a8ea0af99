"""studylib.privacy: pseudonymisation, disclosure control of tables, and the output audit.

- pseudonymisation (:mod:`~studylib.privacy.tokens`): secret keys and keyed person tokens;
- disclosure control (:mod:`~studylib.privacy.disclosure`): :func:`protect_table` (primary
  and secondary suppression checked by :func:`attack`, or controlled rounding), and
  percentages and rates from published cells only;
- the output audit (:mod:`~studylib.privacy.audit`): :func:`audit_path` checks executed
  notebooks, HTML and PDF reports for unmarked tables and figures, small counts, personal
  data, the key, person tokens and deny-listed names;
- deny lists (:mod:`~studylib.privacy.denylist`): keyed hashes of the names ingest saw.
"""

from studylib.privacy.audit import AuditError, AuditResult, Finding, audit_html, audit_notebook, audit_path
from studylib.privacy.denylist import DenyList, make_deny_list, normalise_name
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
from studylib.privacy.tokens import KeyFileError, new_key, person_token, read_key

__all__ = [
    "AuditError",
    "AuditResult",
    "DenyList",
    "DisclosureError",
    "DisclosureSettings",
    "Finding",
    "KeyFileError",
    "MARKER_ATTRIBUTE",
    "MARKER_METADATA_KEY",
    "ProtectedTable",
    "apply_suppression",
    "attack",
    "audit_html",
    "audit_notebook",
    "audit_path",
    "make_deny_list",
    "new_key",
    "normalise_name",
    "parse_marker",
    "person_token",
    "protect_table",
    "published_rates",
    "published_shares",
    "read_key",
]
