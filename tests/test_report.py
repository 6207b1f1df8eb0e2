"""The report: MNE's ICA section, labkit's outcome, warnings, labels, parameters and versions; all text escaped."""

from __future__ import annotations

import html
from pathlib import Path

import mne
import numpy as np
import pytest

from labkit import IcaParams
from labkit.analysis import ica
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.results.layout import REPORT_FILE
from labkit.results.reading import RunResult
from labkit.widgets import ResultView

pytestmark = pytest.mark.slow
PAYLOAD = "<script>alert('labkit')</script>"


def test_channel_names_and_paths_are_escaped(tmp_path: Path) -> None:
    base = tmp_path / "base"
    folder = base / PAYLOAD.replace("/", "_")
    folder.mkdir(parents=True)
    names = ["Fp1", "Fp2", "Cz", "Pz", "O1", PAYLOAD]
    rng = np.random.default_rng(1)
    raw = mne.io.RawArray(rng.laplace(size=(6, 3000)) * 1e-5, mne.create_info(names, 100.0, "eeg"), verbose="error")
    raw.save(folder / "x_raw.fif", verbose="error")
    params = IcaParams(base_dir=str(base), raw_file_path=str((folder / "x_raw.fif").relative_to(base)),
                       n_components=3, crop_tmax=None, filter_fmax=30.0)
    res = ica.run(params, tmp_path / "out", verbose="error")
    assert any(PAYLOAD in w for w in res.metrics["warnings"]), "the channel name reaches a warning"
    report = (tmp_path / "out" / REPORT_FILE).read_text()
    assert "alert('labkit')</script>" not in report and "<script>alert(" not in report
    assert html.escape(PAYLOAD) in report, "shown, escaped"
    view = ResultView(RunResult(path=tmp_path / "PreExperiment_ICA_x", status={"state": "succeeded",
                      "warnings": res.metrics["warnings"]}, params=params, metrics=res.metrics), compact=True)
    assert "<script>alert(" not in view.children[0].value and "succeeded with warnings" in view.children[0].value


@pytest.mark.parametrize("in_worker", [True, False], ids=["ica-section-by-the-worker", "ica-section-here"])
def test_report_has_mnes_ica_section_and_labkits_parts(demo_dir: Path, tmp_path: Path, in_worker: bool,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """MNE's ICA section is drawn by the run's worker beside the plots (``process``), or here (``inline``,
    as in a warm kernel); the same report."""
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=15, crop_tmax=40.0)
    with caplog.at_level("INFO", logger="labkit"):
        res = ica.run(params, tmp_path / "out", verbose="error", beside="process" if in_worker else "inline")
    assert ("topomaps' worker" in caplog.text) is in_worker and "failed" not in caplog.text
    assert res.metrics["exclude"], "the demo's blink and heartbeat are suspects"
    report = (tmp_path / "out" / REPORT_FILE).read_text()
    order = ("Outcome", "ICA", "Component labels", "Metrics", "Parameters", "Versions")  # the table of contents
    at = [report.find(f">{part}<") for part in order]
    assert all(i >= 0 for i in at) and at == sorted(at), dict(zip(order, at, strict=True))
    assert "EOG patterns" in report and "ICA component topographies" in report
    assert f"<td>{mne.__version__}</td>" in report
    assert "Outcome: succeeded" in report
