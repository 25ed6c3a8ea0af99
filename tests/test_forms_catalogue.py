"""The form catalogue: the 14 forms as data, checked on load, documented from the same file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studylib.data import vocabularies as v
from studylib.errors import ConfigError
from studylib.forms import catalogue_markdown, form_catalogue, load_catalogue
from studylib.data.form_catalogue import DEFAULT_PATH

ROOT = Path(__file__).resolve().parents[1]


def test_the_catalogue_has_the_fourteen_forms_with_their_fields():
    cat = form_catalogue()
    assert [f.code for f in cat.forms] == list(v.FORM_CODES)
    for form in cat.forms:
        assert form.title and form.purpose and form.submitted_by
        assert set(form.submitted_by) <= set(v.ORGANISATION)
        cols = cat.columns_of(form.code)
        assert cols[:4] == ["record_id", "date", "organisation", "region"]
        assert {"first_name", "last_name", "birth_date", "cpr", "passport_no", "notes"} <= set(cat.personal_fields(form.code))
    f04 = {f.name: f for f in cat.fields_of("F04")}
    assert f04["indicators"].type == "codes" and f04["indicators"].codes == "indicator"
    assert f04["research_consent"].allowed_codes() == v.RESEARCH_CONSENT
    assert cat.form("F13").minors_only
    # every organisation can register a contact, so each is one list for extent estimation
    contact_orgs = {o for code in cat.contact_forms for o in cat.form(code).submitted_by}
    assert contact_orgs == set(v.ORGANISATION)


def test_the_identifiers_go_on_the_deny_list():
    cat = form_catalogue()
    for form in cat.forms:
        assert cat.deny_list_fields(form.code)[:4] == ["cpr", "passport_no", "phone", "email"]
        assert set(cat.deny_list_fields(form.code)) <= set(cat.personal_fields(form.code))


def test_no_field_is_both_free_text_and_kept():
    cat = form_catalogue()
    for form in cat.forms:
        for f in cat.fields_of(form.code):
            if f.type == "string" and f.name not in ("record_id",):
                assert f.personal, f"{form.code}.{f.name}: free text must be marked personal"


def _broken(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(Path(str(DEFAULT_PATH)).read_text())
    mutate(raw)
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["forms"].pop(), "exactly F01..F14"),
        (lambda c: c["forms"][0]["fields"][0].update(type="colour"), "forms.0.fields.0.type"),
        (lambda c: c["forms"][1]["fields"][0].update(codes="planets"), "unknown vocabulary 'planets'"),
        (lambda c: c["forms"][2].update(submitted_by=["police", "aliens"]), "unknown organisations"),
        (lambda c: c["forms"][3].update(colour="red"), "forms.3.colour"),
        (lambda c: c["forms"][4]["fields"].append(dict(c["forms"][4]["fields"][0])), "duplicate field names"),
        (lambda c: c["common_fields"][1].update(deny_list=True), "deny_list is for personal fields only"),
    ],
)
def test_a_malformed_catalogue_names_file_and_key(tmp_path, mutate, expected):
    path = _broken(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_catalogue(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_the_documentation_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "forms.md").read_text() == catalogue_markdown(), "run `studylib forms --markdown > docs/forms.md`"


def test_cli_lists_forms_and_rejects_an_unknown_one():
    exe = [sys.executable, "-m", "studylib.cli"]
    ok = subprocess.run([*exe, "forms", "F04"], capture_output=True, text=True)
    assert ok.returncode == 0 and "indicators" in ok.stdout
    bad = subprocess.run([*exe, "forms", "F15"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown form 'F15'" in bad.stderr
