"""studylib.synthetic: the generator of synthetic registration data (``studylib synth``).

A true population per year and sector (:mod:`population`), its registration by the
organisations (:mod:`capture`), the forms that follow (:mod:`events`), fake personal data
(:mod:`pii`), messy exports on request (:mod:`messy`), the files (:mod:`export`), and the
orchestration with an atomic write (:mod:`generator`). Sector profiles and the scenario are
YAML files (:mod:`profiles`), by default in ``synthetic_data/profiles/``.
"""

from studylib.synthetic.generator import DEFAULT_SEED, SynthOptions, SynthResult, generate
from studylib.synthetic.profiles import ProfileSet, load_profiles

__all__ = ["DEFAULT_SEED", "ProfileSet", "SynthOptions", "SynthResult", "generate", "load_profiles"]
