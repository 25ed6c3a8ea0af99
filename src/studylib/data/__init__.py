"""studylib.data: the data contract. Vocabularies, table schemas, and dataset read/write.

Every module that needs a code list imports it from :mod:`studylib.data.vocabularies`.
"""

from studylib.data import vocabularies
from studylib.data.dataset import Dataset, DatasetError, content_hash, read_dataset, read_meta, validate_tables, write_dataset
from studylib.data.schemas import CASE_COLUMNS, SCHEMA_VERSION, TABLES

__all__ = [
    "CASE_COLUMNS",
    "Dataset",
    "DatasetError",
    "SCHEMA_VERSION",
    "TABLES",
    "content_hash",
    "read_dataset",
    "read_meta",
    "validate_tables",
    "vocabularies",
    "write_dataset",
]
