"""studylib.forms: the 14-form catalogue (a data file) and ingestion of raw form exports."""

from studylib.data.form_catalogue import Form, FormCatalogue, FormField, catalogue_markdown, form_catalogue, load_catalogue

__all__ = ["Form", "FormCatalogue", "FormField", "catalogue_markdown", "form_catalogue", "load_catalogue"]
