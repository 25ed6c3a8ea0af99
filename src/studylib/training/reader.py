"""A simple keyword reader of vignettes: which indicators a text carries, from cue phrases.

It is the test that a vignette's text carries its indicators (and a model answer a teacher can
compare with): every indicator of ``vignettes.yaml`` has cue phrases (regular expressions) per
language; the reader looks for the cues of the recruitment dimensions in the first paragraph
(life before and during recruitment) and those of the destination dimensions in the later
ones (work and life in Denmark). It knows nothing of the case the text was made from.
"""

from __future__ import annotations

import re

from studylib.training.vignettes import _catalogue_lookup, _check_language, _stage, phrasings

_PARAGRAPHS = re.compile(r"\n\s*\n")


def read_indicators(text: str, language: str = "en") -> tuple[str, ...]:
    """The indicator codes whose cues occur in ``text`` (catalogue order)."""
    _check_language(language)
    if not isinstance(text, str):
        raise TypeError(f"read_indicators needs the vignette text (str), not {type(text).__name__}")
    paragraphs = [p for p in _PARAGRAPHS.split(text.strip()) if p.strip()]
    parts = {"recruitment": paragraphs[:1], "destination": paragraphs[1:]}
    cues = phrasings()["cues"]
    found = []
    for code in _catalogue_lookup()["codes"]:
        if any(cues[code][language].search(p) for p in parts[_stage(code)]):
            found.append(code)
    return tuple(found)


__all__ = ["read_indicators"]
