"""Report kernels cannot reach the key or the batch's secrets (issue 12, item 2).

A real template searches for the key the way a careless or curious researcher would: its
own environment, ``/proc/<pid>/environ``, ``cmdline`` and ``mem`` of the processes it can
see (its parents up the ``JPY_PARENT_PID`` chain: the fork server and the batch, and the
batch's other children: the finisher), and the key file itself, whose path it is given as
a parameter. It reports what it reached by raising (the only channel out that needs no
file), and the test reads that verdict from the batch's outcome. The batch runs in a
subprocess that holds the key (``STUDYLIB_KEY_FILE``) and a secret under an unforeseen
name (``RT_DB_PASS``), as root and, in a second run, as a normal user (created here with
``useradd`` when the test runs as root, as in CI).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import nbformat
import pytest

from runner_fixtures import make_dataset, write_study
from studylib.runner.kernel import kernel_environment

pytestmark = pytest.mark.slow

SEARCH = r'''
import hashlib, json, os, re
found, reached = [], {"environ": [], "mem": [], "cmdline": []}

def look(where, text):
    for run in re.findall(r"[0-9a-f]{64}", text.lower()):
        if hashlib.sha256(run.encode()).hexdigest() == key_sha256:
            found.append(where)
    for name in ("STUDYLIB_KEY_FILE", "RT_DB_PASS", "STUDYLIB_DENY_LIST"):
        if name in text:
            found.append(f"{where}:{name}")

look("own environment", "\n".join(f"{k}={v}" for k, v in os.environ.items()))

def parent_of(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])

chain, pid = [], int(os.environ["JPY_PARENT_PID"])
while pid > 1 and len(chain) < 10:
    chain.append(pid)
    pid = parent_of(pid)
family = set(chain)
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
        try:
            if parent_of(int(entry)) in chain:
                family.add(int(entry))  # the batch's other children (the finisher), other kernels
        except OSError:
            pass
for pid in sorted(family):
    for part in ("environ", "cmdline"):
        try:
            text = open(f"/proc/{pid}/{part}", "rb").read().decode(errors="replace")
        except OSError:
            continue
        reached[part].append(pid)
        look(f"/proc/{pid}/{part}", text)
    try:
        open(f"/proc/{pid}/mem", "rb").close()
        reached["mem"].append(pid)
    except OSError:
        pass
try:
    look("key file", open(key_file).read())
    key_readable = True
except OSError as err:
    key_readable = False
verdict = {"chain": chain, "family": sorted(family), "reached": reached, "found": sorted(set(found)),
           "key_file_readable": key_readable, "own": sorted(k for k in os.environ if k.startswith("STUDYLIB_")),
           "ipython": get_ipython().profile_dir.location, "tmp": os.environ["TMPDIR"]}
raise RuntimeError("SEARCH " + json.dumps(verdict, sort_keys=True))
'''

DRIVER = r'''
import json, sys
from pathlib import Path
from studylib.runner.batch import BatchSettings, run_batch
from studylib.runner.study import find_studies
root = Path(sys.argv[1])
result = run_batch(find_studies(root / "studies"), BatchSettings(reports=root / "reports", workers=1))
print(json.dumps([o.message for o in result.outcomes]))
'''


def _project(root: Path) -> tuple[Path, str]:
    """A study whose template searches for the key; the key file (mode 600); sha256 of its hex."""
    data = make_dataset(root / "dataset", n=40)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("data_dir: str = ''\nkey_file: str = ''\nkey_sha256: str = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(SEARCH)]
    (root / "templates").mkdir(parents=True)
    nbformat.write(nb, root / "templates" / "search.ipynb")
    key_hex = os.urandom(32).hex()
    key = root / "keys" / "study.key"
    key.parent.mkdir(mode=0o700)
    key.write_text("# studylib key\n" + key_hex + "\n")
    key.chmod(0o600)
    digest = hashlib.sha256(key_hex.encode()).hexdigest()
    write_study(root, {
        "id": "search", "title": "Key search", "template": "../templates/search.ipynb", "data": str(data),
        "parameters": {"key_file": str(key), "key_sha256": digest}, "disclosure": {"min_cell": 5},
        "formats": ["html"], "timeout": {"cell": 120, "report": 240},
    })
    (root / "driver.py").write_text(DRIVER)
    return key, key_hex


def _run(root: Path, key: Path, key_hex: str, user: str | None = None, fork: str = "1") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDYLIB_")}
    env.update(STUDYLIB_KEY_FILE=str(key), RT_DB_PASS=key_hex, PYTHONPATH=str(Path(__file__).parent), STUDYLIB_KERNEL_FORK=fork)
    extra = {}
    if user is not None:
        env["HOME"] = str(root)
        extra = {"user": user, "group": pwd.getpwnam(user).pw_gid}
    done = subprocess.run([sys.executable, str(root / "driver.py"), str(root)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600, **extra)
    assert done.returncode == 0, done.stderr[-3000:]
    messages = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(messages) == 1, messages
    match = re.search(r"SEARCH (\{.*\})", messages[0])
    assert match, f"the search did not run to its end: {messages[0]}\n{done.stderr[-3000:]}"
    verdict = json.loads(match.group(1))
    for path in root.rglob("*"):  # nothing the batch wrote holds the key (the failure record, the log)
        if path.is_file() and path != key:
            assert key_hex not in path.read_text(errors="replace"), path
    return verdict


def _assert_unreachable(verdict: dict) -> None:
    assert verdict["found"] == [], verdict
    assert verdict["key_file_readable"] is False
    assert len(verdict["chain"]) >= 1  # the batch (and the fork server, if the kernel was forked) were searched
    batch_family = set(verdict["family"])
    assert not batch_family & set(verdict["reached"]["environ"]), verdict
    assert not batch_family & set(verdict["reached"]["mem"]), verdict
    assert verdict["reached"]["cmdline"]  # the search did look: cmdlines are readable, and hold no secret
    assert "STUDYLIB_REPORT" in verdict["own"] and "STUDYLIB_KEY_FILE" not in verdict["own"]
    # IPython's folder is the kernel's own (no startup scripts of whoever runs the batch; the
    # sandbox forbids making ~/.ipython where it does not exist yet)
    private = Path(verdict["tmp"]).parent
    assert Path(verdict["ipython"]).is_relative_to(private) and private.name.startswith("studylib-kernel-"), verdict


@pytest.mark.skipif(os.geteuid() != 0, reason="this half runs the batch as root (CI does); the next test is the normal-user half")
@pytest.mark.parametrize("fork", ["1", "0"], ids=["forked", "launched"])
def test_a_template_cannot_reach_the_key_when_the_batch_runs_as_root(tmp_path, fork):
    key, key_hex = _project(tmp_path)
    verdict = _run(tmp_path, key, key_hex, fork=fork)
    _assert_unreachable(verdict)
    assert len(verdict["chain"]) >= (2 if fork == "1" else 1)


def test_a_template_cannot_reach_the_key_when_the_batch_runs_as_a_normal_user():
    if os.geteuid() != 0:
        root = Path(tempfile.mkdtemp(prefix="studylib-secrets-"))
        try:
            key, key_hex = _project(root)
            _assert_unreachable(_run(root, key, key_hex))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    if shutil.which("useradd") is None:
        pytest.skip("running as root without useradd: no normal user to run the batch as")
    user = f"sl{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    try:
        usable = subprocess.run([sys.executable, "-c", "import studylib"], user=user, capture_output=True, cwd="/").returncode == 0
    except PermissionError:
        usable = False
    if not usable:
        subprocess.run(["userdel", user], check=False)
        pytest.skip(f"a normal user cannot run this Python ({sys.executable}: its installation is in a folder "
                    "closed to other users); install Python where all users can run it to run this half")
    root = Path(tempfile.mkdtemp(prefix="studylib-secrets-"))
    try:
        uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
        key, key_hex = _project(root)
        for path in [root, *root.rglob("*")]:
            os.chown(path, uid, gid)
        _assert_unreachable(_run(root, key, key_hex, user=user))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["userdel", user], check=False)


def test_only_allowed_variables_reach_a_kernel():
    base = {"PATH": "/usr/bin", "HOME": "/home/x", "LC_ALL": "C", "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1",
            "RT_DB_PASS": "hunter2", "AWS_ACCESS": "x", "STUDYLIB_KEY_FILE": "/k", "STUDYLIB_DENY_LIST": "/d",
            "STUDYLIB_REPORT": "r", "JUPYTER_PATH": "/j", "LD_PRELOAD": "/evil.so", "PYTHONSTARTUP": "/s.py"}
    env = kernel_environment({"STUDYLIB_LEDGER": "/l"}, base)
    assert {k for k in env if k in base} == {"PATH", "HOME", "LC_ALL", "MPLBACKEND", "OMP_NUM_THREADS", "STUDYLIB_REPORT", "JUPYTER_PATH"}
    assert env["STUDYLIB_LEDGER"] == "/l"
    with pytest.raises(ValueError, match="STUDYLIB_KEY_FILE"):
        kernel_environment({"STUDYLIB_KEY_FILE": "/k"}, base)
