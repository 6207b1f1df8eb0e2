"""The five shared real recordings: each completes with the right channels filtered, or fails before any work.

"Filtered" is read back from the saved ICA's own header (``components-ica.fif``): the
band the ICA really saw, not what labkit meant to do. Short crops keep the suite quick.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mne
import pytest
from click.testing import CliRunner

from labkit import IcaParams
from labkit.analysis import ica, recording
from labkit.cli.main import main
from labkit.results.layout import ICA_FILE
from labkit.results.reading import find_run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

#: recording, channel type, components, crop end (s), whether its channel names give topomaps
CASES = [
    ("neuromag_mag_grad_raw.fif", "meg", 8, None, True),
    ("neuromag_mag_grad_raw.fif", "mag", 6, None, True),
    ("neuromag_mag_grad_raw.fif", "grad", 6, None, True),
    ("egi_pns.mff", "eeg", 6, 10.0, True),
    ("test.edf", "eeg", 6, None, False),
    ("test.vhdr", "eeg", 6, None, True),
    ("test_raw.set", "eeg", 6, 20.0, False),
]
MEG_TYPES = {"meg": {"mag", "grad"}, "mag": {"mag"}, "grad": {"grad"}}


@pytest.mark.parametrize("name, channel_type, n_components, crop_tmax, topomaps", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_real_recording_completes_with_its_channels_filtered(real_dir: Path, tmp_path: Path, name: str,
                                                             channel_type: str, n_components: int,
                                                             crop_tmax: float | None, topomaps: bool) -> None:
    params = IcaParams(base_dir=str(real_dir), raw_file_path=name, channel_type=channel_type,
                       n_components=n_components, crop_tmax=crop_tmax, filter_fmin=1.0, filter_fmax=30.0)
    recording.preflight(params)
    out = tmp_path / "out"
    res = ica.run(params, out, verbose="error")
    saved = mne.preprocessing.read_ica(out / ICA_FILE, verbose="error")
    assert saved.info["highpass"] == pytest.approx(1.0) and saved.info["lowpass"] == pytest.approx(30.0), \
        "the saved ICA's header records the band-pass it was fitted on"
    fitted = set(saved.get_channel_types())
    assert fitted == MEG_TYPES.get(channel_type, {channel_type})
    assert saved.n_components_ == n_components
    assert res.raw.info["highpass"] == pytest.approx(1.0), "every kept channel was filtered"
    assert bool(list(out.glob("topomaps*.png"))) == topomaps
    assert sorted(p.name for p in out.glob("maps/*.png")) == [f"ICA{c:03d}.png" for c in range(n_components * topomaps)]
    if not topomaps:
        assert any("topomaps skipped" in w for w in res.metrics["warnings"])
    assert res.metrics["filtered"] == {"highpass": pytest.approx(1.0), "lowpass": pytest.approx(30.0)}
    if channel_type == "eeg" and topomaps:
        assert len(res.metrics["labels"]["labels"]) == n_components, "ICLabel labels every EEG component"
    elif channel_type == "eeg":  # ICLabel reads the maps: no positions, no labels, and the run says so
        assert res.metrics["labels"] is None
        assert any("components not labelled: iclabel reads the components' maps" in w for w in res.metrics["warnings"])
    else:  # 10 s of MEG: MEGnet needs 60 s, and the run says so instead of failing
        assert res.metrics["labels"] is None
        assert any("MEGnet needs at least 60 s" in w for w in res.metrics["warnings"])


def test_the_mff_folder_runs_through_labkit_run(real_dir: Path) -> None:
    """The EGI folder recording end to end: CLI, preflight, papermill, result folder."""
    proc = subprocess.run([sys.executable, "-m", "labkit", "run", "--base-dir", str(real_dir), "--raw-file-path",
                           "egi_pns.mff", "--n-components", "5", "--crop-tmax", "6", "--run-id", "mff"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = find_run(real_dir, "mff")
    assert found.state == "succeeded"
    saved = found.read_ica()
    assert set(saved.get_channel_types()) == {"eeg"} and saved.info["highpass"] == pytest.approx(1.0)
    assert "ecg_suspects" in found.metrics, "its ECG channel was used for scoring"


def test_misc_channels_are_refused_before_any_work(real_dir: Path) -> None:
    """BrainVision's 6 misc channels: a type MNE's ICA does not fit; exit 2, nothing written."""
    before = sorted(p.name for p in real_dir.iterdir())
    out = CliRunner().invoke(main, ["run", "--base-dir", str(real_dir), "--raw-file-path", "test.vhdr",
                                    "--channel-type", "misc", "--n-components", "4"])
    assert out.exit_code == 2, out.output
    assert "'channel_type'" in out.output and "eeg (26)" in out.output and "misc" in out.output
    assert sorted(p.name for p in real_dir.iterdir()) == before


def test_every_real_recording_is_found_and_no_sidecar_is(real_dir: Path) -> None:
    found = [p.name for p in recording.find_recordings(real_dir)]
    assert found == ["egi_pns.mff", "neuromag_mag_grad_raw.fif", "test.edf", "test.vhdr", "test_raw.set"]
    assert recording.recording_format(real_dir / "egi_pns.mff") == "EGI"
    offered = {p.name: recording.describe(p).ica_types for p in recording.find_recordings(real_dir)}
    assert offered["neuromag_mag_grad_raw.fif"] == {"meg": 306, "mag": 102, "grad": 204}
    assert offered["test.vhdr"] == {"eeg": 26}, "misc channels are not offered"
    assert offered["egi_pns.mff"] == {"eeg": 257}, "ECG/EMG/bio channels are scored or ignored, not offered"
