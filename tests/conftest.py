"""Shared fixtures: demo data generated once per session and handed out as copies (MNE's style)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REAL_DATA = Path(os.environ.get("LABKIT_REAL_DATA", Path(__file__).resolve().parent / "data" / "real"))


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labkit.analysis.datasets import write_demo

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
    """A base directory holding copies of the real recordings in tests/data/real."""
    if not REAL_DATA.is_dir():
        raise FileNotFoundError(f"real recordings not found at {REAL_DATA}; set LABKIT_REAL_DATA")
    base = tmp_path / "real"
    shutil.copytree(REAL_DATA, base)
    for f in base.iterdir():
        f.chmod(0o644)
    return base


@pytest.fixture(scope="session")
def fitted_runs(tmp_path_factory: pytest.TempPathFactory, demo_source: Path) -> Path:
    """A base directory with real short ICA fits on the demo (picard, fastica, infomax x seeds 0 and 1; 20 components,
    20 s), one fit on a copy of the demo without ground truth, and one failed run, in folders as labkit writes them."""
    import json

    from labkit import IcaParams
    from labkit.analysis import ica as analysis
    from labkit.analysis.datasets import DEMO_FILENAME
    from labkit.results import provenance
    from labkit.results.folder import RunFolder
    from labkit.results.layout import ICA_FILE, METRICS_FILE

    base = tmp_path_factory.mktemp("fitted-runs")
    shutil.copytree(demo_source, base, dirs_exist_ok=True)
    shutil.copy(base / DEMO_FILENAME, base / "no_truth_raw.fif")
    params = IcaParams(base_dir=str(base), raw_file_path=DEMO_FILENAME, n_components=20, crop_tmax=20.0,
                       random_state=0)
    sets = [params.replace(method=m, random_state=s) for m in ("picard", "fastica", "infomax") for s in (0, 1)]
    for p in [*sets, params.replace(raw_file_path="no_truth_raw.fif")]:
        folder = RunFolder.create(p)
        folder.start()
        raw = analysis.load(p, verbose="error")
        analysis.preprocess(raw, p, verbose="error")
        with analysis.step("fit") as timing:
            ica = analysis.fit(raw, p, verbose="error")
        scores = analysis.score(ica, raw, verbose="error")
        ica.save(folder.file(ICA_FILE), verbose="error")
        folder.file(METRICS_FILE).write_text(json.dumps(
            {"method": p.method, "fit_time_s": timing["seconds"], "n_iter": int(ica.n_iter_), "versions": analysis.versions(), "host": "test",
             "preprocessing": "computed", **scores}))
        provenance.record(folder, provenance.current(p))
        folder.succeed()
    failed = RunFolder.create(params.replace(method="picard", random_state=2))
    failed.fail("the test says so")
    return base
