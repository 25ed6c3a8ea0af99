"""studylib: publishable sector studies from the registration data of an anti-trafficking centre.

The package is split by stage of the flow (see DESIGN section 2): ``data`` (vocabularies,
schemas, dataset I/O), ``forms`` (the form catalogue and ingest), ``privacy``
(pseudonymisation, disclosure control, audit), ``synthetic`` (the generator),
``indicators``, ``analysis``, ``report``, ``runner`` and ``training``.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("studylib")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
