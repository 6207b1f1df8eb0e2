"""A fresh clone of the repository holds the real recordings the tests read, with nothing beside it.

The committed HEAD is cloned into an empty temporary directory and, inside the clone, a Python
process imports the clone's own ``tests/conftest.py`` and reads every recording under its
``REAL_DATA`` with MNE. If a recording were left uncommitted (or the lookup pointed outside the
repository), the clone would not have it and this test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the recordings tests/data/real must hold (each readable by mne.io.read_raw)
RECORDINGS = ["test.vhdr", "test.edf", "neuromag_mag_grad_raw.fif", "egi_pns.mff", "test_raw.set"]

PROBE = """
import json, sys
sys.path.insert(0, "tests")
import mne
from conftest import REAL_DATA
names = json.loads(sys.argv[1])
out = {"real_data": str(REAL_DATA.resolve()), "channels": {}}
for name in names:
    raw = mne.io.read_raw(REAL_DATA / name, preload=False, verbose="error")
    out["channels"][name] = len(raw.ch_names)
print(json.dumps(out))
"""


def test_a_fresh_clone_reads_every_real_recording_from_its_own_tests_data(tmp_path: Path) -> None:
    assert shutil.which("git"), "git is needed to clone the repository"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_REAL_DATA"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(RECORDINGS)], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"a recording is missing or unreadable in the clone:\n{proc.stderr[-3000:]}"
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["real_data"]) == (clone / "tests" / "data" / "real").resolve()
    assert set(found["channels"]) == set(RECORDINGS)
    assert all(n > 0 for n in found["channels"].values()), found
    assert (clone / "tests" / "data" / "real" / "README.md").read_text().count("BSD-3-Clause")
