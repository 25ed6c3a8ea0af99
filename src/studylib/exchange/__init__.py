"""studylib.exchange: data for others and from others (issue 18).

One module per job:

- :mod:`~studylib.exchange.codes` the exchange formats (``htcds.yaml``): HTCDS v2 field names,
  code maps, the quasi-identifiers' hierarchies, the CTDC public file's columns and codes;
- :mod:`~studylib.exchange.anonymity` k-anonymity by global recoding, then local suppression;
- :mod:`~studylib.exchange.htcds_export` case-level export in HTCDS v2 field names;
- :mod:`~studylib.exchange.synthetic_export` synthetic microdata under differential privacy (noisy marginals);
- :mod:`~studylib.exchange.ctdc_import` a CTDC-style public file (or our HTCDS export) into a dataset;
- :mod:`~studylib.exchange.aggregates` a release's published tables as CSV and XLSX, from the ledger.
"""
