"""studylib.privacy: pseudonymisation, disclosure control of tables and releases, and the output audit.

- pseudonymisation (:mod:`~studylib.privacy.tokens`): secret keys and keyed person tokens;
- disclosure control (:mod:`~studylib.privacy.disclosure`): :func:`protect_table` (primary
  and secondary suppression checked by :func:`attack`, or controlled rounding), the one
  :class:`DisclosureSettings` value from the study file to the suppressed cell, and
  percentages and rates from published cells only;
- the release (:mod:`~studylib.privacy.ledger`, :mod:`~studylib.privacy.release`): which
  person falls in which cell of every published table, and the attacker and planner that
  protect all tables of a release together;
- the output audit (:mod:`~studylib.privacy.audit`): :func:`audit_path` checks executed
  notebooks, HTML and PDF reports for unmarked tables, figures and outputs, small counts,
  personal data, the key, person tokens and deny-listed names;
- deny lists (:mod:`~studylib.privacy.denylist`): keyed hashes of the names ingest saw.

Names are imported on first use, so that the runner's light paths load no scipy.
"""

from studylib.lazy_exports import lazy_dir, lazy_getattr

#: Public names and the module that holds each.
_EXPORTS = {
    "AuditError": "studylib.privacy.audit",
    "AuditResult": "studylib.privacy.audit",
    "Finding": "studylib.privacy.audit",
    "audit_html": "studylib.privacy.audit",
    "audit_notebook": "studylib.privacy.audit",
    "audit_path": "studylib.privacy.audit",
    "DenyList": "studylib.privacy.denylist",
    "make_deny_list": "studylib.privacy.denylist",
    "normalise_name": "studylib.privacy.denylist",
    "DisclosureError": "studylib.privacy.disclosure",
    "DisclosureSettings": "studylib.privacy.disclosure",
    "ProtectedTable": "studylib.privacy.disclosure",
    "apply_suppression": "studylib.privacy.disclosure",
    "attack": "studylib.privacy.disclosure",
    "protect_table": "studylib.privacy.disclosure",
    "published_rates": "studylib.privacy.disclosure",
    "published_shares": "studylib.privacy.disclosure",
    "LedgerEntry": "studylib.privacy.ledger",
    "read_ledger": "studylib.privacy.ledger",
    "CountedTable": "studylib.privacy.release",
    "Release": "studylib.privacy.release",
    "attack_release": "studylib.privacy.release",
    "protect_release": "studylib.privacy.release",
    "MARKER_ATTRIBUTE": "studylib.privacy.marker",
    "MARKER_METADATA_KEY": "studylib.privacy.marker",
    "parse_marker": "studylib.privacy.marker",
    "KeyFileError": "studylib.privacy.tokens",
    "new_key": "studylib.privacy.tokens",
    "person_token": "studylib.privacy.tokens",
    "read_key": "studylib.privacy.tokens",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)


__dir__ = lazy_dir(globals(), _EXPORTS)


__all__ = sorted(_EXPORTS)
