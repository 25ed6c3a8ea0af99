"""studylib.data: the data contract. Vocabularies, table schemas, and dataset read/write.

Every module that needs a code list imports it from :mod:`studylib.data.vocabularies`.
The dataset and schema names load pandas and pandera on first use only, so that light
modules of this package (vocabularies, atomic writes) cost nothing to import.
"""

from studylib.lazy_exports import lazy_dir, lazy_getattr

from studylib.data import vocabularies

_EXPORTS = {
    **{name: "studylib.data.dataset" for name in ("Dataset", "content_hash", "read_dataset", "validate_tables", "write_dataset")},
    **{name: "studylib.data.meta" for name in ("DatasetError", "META_FILE", "is_dataset", "read_meta")},
    **{name: "studylib.data.schemas" for name in ("CASE_COLUMNS", "SCHEMA_VERSION", "TABLES")},
    "first_contact_in": "studylib.data.cases",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__dir__ = lazy_dir(globals(), _EXPORTS)  # tab completion and dir() see the lazy names


__all__ = sorted([*_EXPORTS, "vocabularies"])
