"""The demo: synthetic raw exports → demo key → ingest → the pseudonymised demo dataset.

Every template's defaults point at the demo dataset (:func:`studylib.paths.demo_dataset_dir`);
:func:`ensure_demo_dataset` (re)creates it on demand, through the same synth → ingest path as
real data, and does nothing when it is up to date (same studylib version, profiles and
catalogues). A file lock keeps parallel kernels or commands from building it twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from studylib import __version__, paths
from studylib.data.atomic import write_file
from studylib.data.meta import is_dataset

STAMP_FILE = "demo.json"

Progress = Callable[[str], None]


def _file_hashes(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def demo_inputs() -> dict:
    """What the demo dataset depends on: the library version, the sector profiles, the catalogues
    and the data contract's columns."""
    from importlib.resources import files

    package = Path(str(files("studylib")))
    return {
        "studylib_version": __version__,
        "profiles": _file_hashes(paths.profiles_dir(), "*.yaml"),
        # the catalogues, linkage rules and generator data shipped in the package
        "package_data": {
            str(p.relative_to(package)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(package.rglob("*.yaml"))
        },
        # the data contract: a dataset made before a column was added (record_key, say) is made again
        "contract": _contract(),
    }


def _contract() -> dict[str, list[str]]:
    from studylib.data import schemas

    return {name: sorted(schema.columns) for name, schema in schemas.TABLES.items()}


def demo_is_current() -> bool:
    """True when the demo dataset exists and was made from the current inputs."""
    stamp = paths.demo_dir() / STAMP_FILE
    if not stamp.is_file() or not is_dataset(paths.demo_dataset_dir()):
        return False
    try:
        return json.loads(stamp.read_text()).get("inputs") == demo_inputs()
    except (OSError, json.JSONDecodeError):
        return False


@contextmanager
def _demo_lock() -> Iterator[None]:
    paths.generated_dir().mkdir(parents=True, exist_ok=True)
    with open(paths.generated_dir() / ".demo.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_demo_dataset(force: bool = False, progress: Progress | None = None) -> Path:
    """Return the demo dataset folder, generating and ingesting it first when needed."""
    say = progress or (lambda message: None)
    if not force and demo_is_current():  # the common case needs no lock (a report kernel may only read here)
        say(f"demo dataset is up to date: {paths.demo_dataset_dir()}")
        return paths.demo_dataset_dir()
    with _demo_lock():
        if not force and demo_is_current():
            say(f"demo dataset is up to date: {paths.demo_dataset_dir()}")
            return paths.demo_dataset_dir()
        return _build(say)


def _build(say: Progress) -> Path:
    from studylib.forms.ingest import ingest
    from studylib.privacy.pseudonymiser import Pseudonymiser
    from studylib.privacy.tokens import new_key
    from studylib.synthetic import SynthOptions, generate

    raw, dataset, key_file = paths.demo_raw_dir(), paths.demo_dataset_dir(), paths.demo_key_file()
    say("generating synthetic raw exports (fake personal data)")
    synth = generate(SynthOptions(out=raw))
    if not key_file.exists():
        say(f"making the demo key {key_file} (synthetic data only)")
        new_key(key_file, demo=True)
    say("ingesting: validate, link, pseudonymise")
    ingest([raw], dataset, Pseudonymiser.from_key_file(key_file))  # the demo marking goes into dataset.json
    stamp = {"inputs": demo_inputs(), "synth": synth.counts, "dataset": str(dataset)}
    write_file(paths.demo_dir() / STAMP_FILE, json.dumps(stamp, indent=2, sort_keys=True, default=str) + "\n")
    say(f"demo dataset written: {dataset}")
    return dataset


def load_dataset(data_dir):
    """Read a dataset folder for a template; the demo dataset is (re)created first when needed.

    Templates call this with their ``data_dir`` parameter, so that they run as they are in
    JupyterLab on a fresh checkout.
    """
    from studylib.data import read_dataset

    if Path(data_dir).resolve() == paths.demo_dataset_dir().resolve():
        ensure_demo_dataset()
    return read_dataset(data_dir)
