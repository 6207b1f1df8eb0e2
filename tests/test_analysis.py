"""Input checked before any work, honest outcomes, every MNE format found one way, NaN/inf named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import numpy as np
import pytest
from click.testing import CliRunner

from labkit import IcaParams
from labkit.analysis import beside, figures, ica, recording, variance
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.errors import ParameterError, RecordingError
from labkit.results.layout import ICA_FILE, REPORT_FILE, STATUS_FILE, component_map
from labkit.results.reading import RunResult, find_run

REPO = Path(__file__).resolve().parents[1]


def _tree(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*"))


@pytest.mark.parametrize("flags, field, allowed", [
    (["--raw-file-path", "missing_raw.fif"], "raw_file_path", "an existing file"),
    (["--raw-file-path", "outside_raw.fif"], "raw_file_path", "resolves to"),
    (["--channel-type", "meg"], "channel_type", "eeg (60)"),
    (["--n-components", "61"], "n_components", "at most the 60 picked eeg channels"),
    (["--crop-tmin", "120", "--crop-tmax", "none"], "crop_tmin", "a start before the recording ends (119.996 s)"),
    (["--filter-fmax", "125"], "filter_fmax", "below the Nyquist frequency (125 Hz)"),
])
def test_mistakes_exit_2_before_any_work(demo_dir: Path, tmp_path: Path, flags: list[str], field: str,
                                         allowed: str) -> None:
    outside = tmp_path / "elsewhere_raw.fif"
    shutil.copy(demo_dir / DEMO_FILENAME, outside)
    (demo_dir / "outside_raw.fif").symlink_to(outside)
    before = _tree(demo_dir)
    out = CliRunner().invoke(main, ["run", "--base-dir", str(demo_dir), "--raw-file-path", DEMO_FILENAME, *flags])
    assert out.exit_code == 2, out.output
    assert f"'{field}'" in out.output and allowed in out.output, out.output
    assert "Traceback" not in out.output
    assert _tree(demo_dir) == before, "nothing is left behind: no result folder, no partial"


def test_missing_base_dir_is_an_error_and_never_created(tmp_path: Path) -> None:
    base = tmp_path / "userdata"
    out = CliRunner().invoke(main, ["run", "--base-dir", str(base), "--raw-file-path", DEMO_FILENAME])
    assert out.exit_code == 2 and "'base_dir'" in out.output and "an existing directory" in out.output
    assert not base.exists()


@pytest.mark.slow
def test_a_fit_that_does_not_converge_succeeds_with_warnings(demo_dir: Path) -> None:
    """Through the real ``labkit run`` (papermill): state stays succeeded, the outcome says 'with warnings'."""
    proc = subprocess.run([sys.executable, "-m", "labkit", "run", "--base-dir", str(demo_dir), "--raw-file-path",
                           DEMO_FILENAME, "--method", "fastica", "--max-iter", "2", "--n-components", "10",
                           "--crop-tmax", "20", "--run-id", "noconv"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = find_run(demo_dir, "noconv")
    status = json.loads(found.file(STATUS_FILE).read_text())
    assert status["state"] == "succeeded"
    assert any("did not converge" in w for w in status["warnings"]), status
    assert found.outcome == "succeeded with warnings"
    assert found.metrics["warnings"] == status["warnings"] and found.metrics["converged"] is False
    assert "FastICA did not converge" in " ".join(status["warnings"]), "scikit-learn's own warning is kept"
    report = found.file(REPORT_FILE).read_text()
    assert "succeeded with warnings" in report and "did not converge" in report
    assert "WARNING" in found.log and "did not converge" in found.log


def test_outcome_of_a_result() -> None:
    res = RunResult(path=Path("/x/PreExperiment_ICA_a"), status={"state": "succeeded"}, params=None,
                            metrics={})
    assert res.outcome == "succeeded"
    res.status["warnings"] = ["crop_tmax 99 s is past the recording's end; clamped to 60.000 s"]
    assert res.outcome == "succeeded with warnings"
    res.status["state"] = "failed"
    assert res.outcome == "failed"


def test_clamped_crop_and_short_span_are_warnings(demo_dir: Path, tmp_path: Path) -> None:
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=10, crop_tmin=118.0,
                       crop_tmax=500.0)
    res = ica.run(params, tmp_path / "out", verbose="warning")
    text = " | ".join(res.metrics["warnings"])
    assert "clamped to 119.996 s" in text
    assert "fewer than the 1000 (10 x 10^2)" in text, "2 s at 250 Hz is too short for 10 components"
    assert "longer than the signal" in text, "MNE's filter warning is captured"
    assert res.metrics["outcome"] == "succeeded with warnings"


def test_nan_samples_named_by_channel_and_time(tmp_path: Path) -> None:
    info = mne.create_info([f"EEG{i:02d}" for i in range(8)], 100.0, "eeg")
    data = np.random.default_rng(0).normal(size=(8, 2000)) * 1e-5
    data[5, 1234] = np.nan
    data[6, 1500] = np.inf
    mne.io.RawArray(data, info, verbose="error").save(tmp_path / "nan_raw.fif", verbose="error")
    params = IcaParams(base_dir=str(tmp_path), raw_file_path="nan_raw.fif", n_components=4, crop_tmax=None)
    with pytest.raises(RecordingError, match=r"channel 'EEG05' holds 1 NaN/infinite sample\(s\), the first at 12.340 s"):
        ica.run(params, tmp_path / "out", verbose="error")
    assert not (tmp_path / "out" / ICA_FILE).exists(), "refused before the fit"


# -- formats -------------------------------------------------------------------------------------------------
def test_formats_found_one_way_case_insensitive_without_sidecars(tmp_path: Path) -> None:
    for name in ("a_raw.FIF", "b.EDF", "c.vhdr", "c.vmrk", "c.eeg", "d.set", "d.fdt", "e.dat", "e.dap", "e.rs3", "n.txt",
                 "f.sqd", "notes.txt.bak", ".hidden.edf", "g.cdt", "g.cdt.dpa"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "nk.EEG").write_bytes(b"EEG-1200A V01.00" + bytes(100))  # Nihon Kohden, with its clashing extension
    (tmp_path / "h.mff").mkdir()
    (tmp_path / "i.ds").mkdir()
    (tmp_path / "plain_folder").mkdir()
    found = [p.name for p in recording.find_recordings(tmp_path)]
    assert found == ["a_raw.FIF", "b.EDF", "c.vhdr", "d.set", "e.dat", "f.sqd", "g.cdt", "h.mff", "i.ds", "nk.EEG"]
    assert recording.recording_format(tmp_path / "nk.EEG") == "NihonKoden"
    assert recording.recording_format(tmp_path / "c.eeg") is None, "BrainVision's data file"
    with pytest.raises(RecordingError, match="choose its .vhdr header"):
        recording.read_raw(tmp_path / "c.eeg")


def test_uppercase_extension_reads(demo_dir: Path) -> None:
    upper = demo_dir / "DEMO_RAW.FIF"
    shutil.copy(demo_dir / DEMO_FILENAME, upper)
    assert recording.describe(upper).count("eeg") == 60


def test_missing_reader_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader whose optional package is absent: the error names the package (as MNE's EGI reader says it)."""
    def reader(path, **kwargs):
        raise RuntimeError("For reading EGI MFF data to work, the module mffpy is needed, but it could not be imported.")

    (tmp_path / "x.mff").mkdir()
    monkeypatch.setitem(recording.reader_table(), ".mff", {"EGI": reader})
    with pytest.raises(RecordingError, match=r"reading EGI files needs the optional package 'mffpy'.*pip install mffpy"):
        recording.read_raw(tmp_path / "x.mff")


def test_header_bounds_use_rank_and_last_sample() -> None:
    rec = recording.RecordingInfo(path="r", sfreq=100.0, duration=10.0, channel_counts={"eeg": 20, "misc": 3},
                                  good_counts={"eeg": 18, "misc": 3}, ranks={"eeg": 17}, last_time=9.99)
    assert rec.ica_types == {"eeg": 18}
    problems = recording.header_problems(IcaParams(n_components=18, crop_tmin=9.99, filter_fmax=30.0), rec)
    assert [p.field for p in problems] == ["crop_tmin", "n_components"]
    assert "before the recording ends (9.990 s)" in str(problems[0])
    assert "at most the rank of the 18 good eeg channels (17)" in str(problems[1])
    with pytest.raises(ParameterError):
        raise recording.header_problems(IcaParams(channel_type="misc"), rec)[0]


@pytest.mark.slow
def test_topomaps_drawn_by_a_forkserver_worker_never_a_fork(demo_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """The run never forks its own (threaded) process: the topomaps come from a worker that reads the saved ICA."""
    def no_fork() -> int:
        raise AssertionError("os.fork called in the analysing process")

    monkeypatch.setattr(os, "fork", no_fork)
    worker = beside.Beside(beside.PROCESS)
    assert worker.ready() and worker.pool._mp_context.get_start_method() in ("forkserver", "spawn")
    worker.close()
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=12, crop_tmax=30.0)
    with caplog.at_level("INFO", logger="labkit"):
        ica.run(params, tmp_path / "out", verbose="error")
    assert (tmp_path / "out" / "topomaps.png").is_file()
    assert all((tmp_path / "out" / component_map(c)).is_file() for c in range(12)), "each component's own map too"
    assert "topomaps' worker" in caplog.text
    assert "drawing them here" not in caplog.text and "no topomap worker" not in caplog.text


def test_each_component_map_is_cut_from_its_grid(demo_dir: Path, tmp_path: Path) -> None:
    """Past MNE's 20 maps a figure there are two grids; every component still gets its own map, cut from them."""
    raw = mne.io.read_raw_fif(demo_dir / DEMO_FILENAME, preload=True, verbose="error").pick("eeg").crop(0, 20)
    fitted = mne.preprocessing.ICA(n_components=22, method="picard", max_iter=20, random_state=0)
    fitted.fit(raw.filter(1, 30, verbose="error"), verbose="error")
    figures.draw_topomaps(fitted, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("topomaps*.png")) == ["topomaps_01.png", "topomaps_02.png"]
    grid = plt.imread(tmp_path / "topomaps_01.png")
    maps = [plt.imread(tmp_path / component_map(c)) for c in range(22)]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [f"ICA{c:03d}.png" for c in range(22)]
    assert len({m.tobytes() for m in maps}) == 22, "each component its own map"
    assert all(m.shape == maps[0].shape for m in maps[:20])  # one grid's cells are alike
    height, width = maps[0].shape[:2]
    assert 4 * width < grid.shape[1] and height < grid.shape[0], "a cell, not the grid"
    assert any(np.array_equal(grid[top:top + height, left:left + width], maps[0])  # the grid's own pixels
               for top in range(12) for left in range(12))


def _blas_threads(info: list[dict]) -> set[int]:
    return {pool["num_threads"] for pool in info if pool["user_api"] == "blas"}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: BLAS has one thread anyway and there is no worker")
def test_workers_and_the_plots_beside_them_keep_one_blas_thread(demo_dir: Path, tmp_path: Path) -> None:
    """Idle BLAS threads spin: with three processes on the cores, one thread each (the drawing is no slower)."""
    from threadpoolctl import threadpool_info

    before = _blas_threads(threadpool_info())
    assert max(before) > 1, "this machine's BLAS has several threads; the test means nothing otherwise"
    with beside.Beside(beside.PROCESS, workers=1) as worker:
        assert _blas_threads(worker.submit(threadpool_info).result(timeout=120)) == {1}
    seen: dict[str, set[int]] = {}
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=8, crop_tmax=20.0)
    ica.run(params, tmp_path / "out", verbose="error", progress=lambda name: seen.update({name: _blas_threads(threadpool_info())}))
    assert seen["plot"] == {1}, seen
    assert _blas_threads(threadpool_info()) == before  # restored after the plots


def test_the_rank_check_reads_a_sample_of_a_long_recording_and_finds_the_same_rank():
    """A structural deficiency (here the average reference) is in every sample: the strided sample finds it."""
    rng = np.random.default_rng(0)
    info = mne.create_info([f"EEG{i:02d}" for i in range(20)], 250.0, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((20, 200_000)) * 1e-5, info, verbose="error")
    raw.set_eeg_reference("average", verbose="error")
    sample = ica._rank_sample(raw)
    assert sample.n_times <= ica.RANK_SAMPLES < raw.n_times
    assert mne.compute_rank(sample, rank=None, verbose="error") == \
        mne.compute_rank(raw, rank=None, verbose="error") == {"eeg": 19}
    short = raw.copy().crop(0, 10)
    assert ica._rank_sample(short) is short


def test_automatic_blas_threads_one_for_short_every_core_for_long_and_a_choice_is_kept():
    info = mne.create_info(8, 250.0, "eeg")
    short = mne.io.RawArray(np.zeros((8, 1000)), info, verbose="error")
    long = mne.io.RawArray(np.zeros((8, ica.LONG_RECORDING_BYTES // 64 + 1)), info, verbose="error")
    assert ica.blas_threads_for(short) == 1 and ica.blas_threads_for(long) == (os.cpu_count() or 1)
    assert ica.blas_threads_for(long, 1) == 1 and ica.blas_threads_for(short, 3) == 3


def test_a_long_recording_is_labelled_after_the_plots_in_the_runs_process(demo_dir, tmp_path, monkeypatch):
    """One labelling copy at a time: not in a worker beside the plots (LONG_RECORDING_BYTES lowered to play it)."""
    monkeypatch.setattr(ica, "LONG_RECORDING_BYTES", 0)
    steps: list[str] = []
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=10, crop_tmax=30.0)
    result = ica.run(params, tmp_path / "long", progress=steps.append)
    assert steps.index("plot") < steps.index("label") and "label_s" in result.metrics["steps_s"]
    assert "label_wait_s" not in result.metrics["steps_s"] and result.metrics["labels"]["network"] == "iclabel"
    assert result.metrics["blas_threads"] == (os.cpu_count() or 1)
    assert result.raw.n_times == result.metrics["n_samples"] and (tmp_path / "long" / "topomaps.png").exists()


@pytest.mark.parametrize("recording, channel_type, kind", [
    (DEMO_FILENAME, "eeg", "eeg"), ("neuromag_mag_grad_raw.fif", "meg", "mag")])
def test_explained_variance_of_a_long_recording_is_mnes_and_leaves_the_data_alone(
        demo_dir, real_dir, monkeypatch, recording, channel_type, kind):
    """Computed from the back-projection's affine map and the data's moments: MNE's own ratio, to rounding
    (MEG: mag and grad fitted together, the ratio of the magnetometers, with the recording's projectors)."""
    base = demo_dir if recording == DEMO_FILENAME else real_dir
    params = IcaParams(base_dir=str(base), raw_file_path=recording, n_components=8, crop_tmax=None,
                       channel_type=channel_type)
    raw = ica.preprocess(ica.load(params), params)
    fitted = ica.fit(raw, params)
    whole = float(fitted.get_explained_variance_ratio(raw, ch_type=kind)[kind])
    before = raw.get_data()
    monkeypatch.setattr(variance, "VARIANCE_CHUNK", 3001)  # "long", summed in pieces, the last one short
    assert variance.explained_variance(fitted, raw, params) == pytest.approx(whole, rel=1e-9, abs=1e-12)
    np.testing.assert_array_equal(raw.get_data(), before)


def test_a_run_makes_collections_rare_and_restores_the_thresholds(demo_dir, tmp_path):
    """Full collections walk the libraries' 200,000 objects (0.7 s of a long run): rare during a run, as before after."""
    import gc

    before, seen = gc.get_threshold(), []
    gc.set_threshold(700, 10, 10)  # Python's defaults, as in a script that calls ica.run
    try:
        params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=5, crop_tmax=10.0)
        ica.run(params, tmp_path / "out", progress=lambda step: seen.append(gc.get_threshold()))
        assert seen and all(t == (ica.YOUNG_COLLECTION_ALLOCATIONS, 10, 1000) for t in seen), seen
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)


def test_the_side_work_policy_is_an_explicit_choice() -> None:
    """``inline`` (a warm kernel's choice, or one core) starts no worker; a wrong policy names the allowed ones."""
    with pytest.raises(ValueError, match=r"got 'thread'; allowed: process, inline"):
        beside.Beside("thread")
    beside.set_default_policy("inline")
    try:
        assert beside.default_policy() == "inline"
        with beside.Beside() as side:
            assert side.policy == "inline" and side.submit(print, "never") is None and not side.ready()
    finally:
        beside.set_default_policy(None)
    assert beside.default_policy() == ("process" if (os.cpu_count() or 1) >= 2 else "inline")


def test_a_runs_verbose_is_mnes_level_for_every_step_and_is_restored(demo_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """MNE's own ``verbose`` (mne.utils.verbose): set once for the run, seen by each step, the old level after."""
    from mne.utils import logger as mne_logger

    monkeypatch.setenv("LABKIT_CACHE", "off")  # no cache writer: its quiet save beside the fit sets MNE's level too

    before = mne_logger.level
    seen: dict[str, int] = {}
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=8, crop_tmax=20.0)
    ica.run(params, tmp_path / "out", verbose="critical", beside="inline",
            progress=lambda name: seen.update({name: mne_logger.level}))
    assert set(seen) >= {"load", "filter", "fit", "score", "plot", "report"} and set(seen.values()) == {50}, seen
    assert mne_logger.level == before
