"""Shared fixtures: demo data generated once per session and handed out as copies (MNE's style)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REAL_DATA = Path(os.environ.get("LABKIT_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labkit.datasets import write_demo

    base = tmp_path_factory.mktemp("demo-source")
    write_demo(base)
    return base


@pytest.fixture
def demo_dir(tmp_path: Path, demo_source: Path) -> Path:
    """A fresh base directory holding a copy of the demo recording (labkit-demo/demo_raw.fif)."""
    base = tmp_path / "userdata"
    shutil.copytree(demo_source, base)
    return base


@pytest.fixture
def real_dir(tmp_path: Path) -> Path:
    """A base directory holding copies of the real recordings in shared/data/real."""
    if not REAL_DATA.is_dir():
        raise FileNotFoundError(f"real recordings not found at {REAL_DATA}; set LABKIT_REAL_DATA")
    base = tmp_path / "real"
    shutil.copytree(REAL_DATA, base)
    for f in base.iterdir():
        f.chmod(0o644)
    return base
