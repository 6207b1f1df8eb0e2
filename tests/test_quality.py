"""Separation quality against the demo's ground truth: the Amari index, best-match correlation, on real fits."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from labkit.analysis.datasets import DEMO_FILENAME, load_truth
from labkit.results.reading import list_runs
from labkit.results.table import runs_table
from labkit.study import figures
from labkit.study.quality import amari_index, best_match, comparison_table, quality_table, run_quality, unmixing


def _perfect(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """W = P D A^-1: any permutation and any (signed) scaling of the true inverse."""
    n = a.shape[0]
    p = np.eye(n)[rng.permutation(n)]
    d = np.diag(rng.uniform(0.1, 10, n) * rng.choice([-1, 1], n))
    return p @ d @ np.linalg.inv(a)


def test_amari_index_is_zero_for_a_perfect_unmixing_and_positive_otherwise():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    w = _perfect(a, rng)
    assert amari_index(w @ a) == pytest.approx(0.0, abs=1e-12)
    worse = [amari_index((w + eps * rng.normal(size=w.shape)) @ a) for eps in (0.01, 0.1, 1.0)]
    assert 0 < worse[0] < worse[1] < worse[2] <= 1
    assert amari_index(np.ones((4, 4))) == pytest.approx(1.0)  # every component is every source: the worst


def test_amari_index_of_a_rectangular_system():
    # 2 components of 3 sources, each component exactly one source, the third source lost (a trace t in both):
    # the rows cost ~t, the lost source's column 1 / (2 n (m - 1)) = 1/6
    t = 1e-9
    g = np.array([[5.0, 0.0, 5 * t], [0.0, -2.0, 2 * t]])
    assert amari_index(g) == pytest.approx(1 / 6, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        amari_index(np.ones((1, 3)))


def test_best_match_finds_the_source_whatever_its_sign_and_scale():
    rng = np.random.default_rng(0)
    true = rng.normal(size=500)
    estimated = rng.normal(size=(4, 500))
    estimated[2] = -3 * true + 0.1 * rng.normal(size=500)
    r, idx = best_match(estimated, true)
    assert idx == 2 and r > 0.99


def test_unmixing_reproduces_mne_sources_on_a_real_fit(fitted_runs):
    run = next(r for r in list_runs(fitted_runs) if r.state == "succeeded")
    ica = run.read_ica()
    raw = mne.io.read_raw_fif(fitted_runs / DEMO_FILENAME, preload=True, verbose="error").crop(0, 5)
    sources = ica.get_sources(raw).get_data()
    mine = unmixing(ica) @ raw.get_data(picks=ica.ch_names)
    centred = mine - mine.mean(axis=1, keepdims=True)
    expected = sources - sources.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(centred, expected, atol=1e-8 * np.abs(sources).max())


def test_real_fits_recover_blink_and_heartbeat(fitted_runs):
    """Measured on the demo, 20 components over 20 s: blink r ~0.99, heartbeat ~0.94, Amari ~0.11 for all three."""
    q = quality_table([r for r in list_runs(fitted_runs) if r.params.raw_file_path == DEMO_FILENAME])
    succeeded = q.dropna(subset=["amari_index"])
    assert len(succeeded) == 6 and (succeeded["quality_note"] == "").all()
    assert (succeeded["blink_match_r"] > 0.95).all()
    assert (succeeded["heartbeat_match_r"] > 0.85).all()
    assert (succeeded["amari_index"] < 0.2).all()
    # the same measure on a random unmixing of the same data scores far worse
    run = next(r for r in list_runs(fitted_runs) if r.run_id == succeeded.index[0])
    truth = load_truth(fitted_runs / DEMO_FILENAME)
    rows = [list(truth["ch_names"]).index(c) for c in run.read_ica().ch_names]
    random_w = np.random.default_rng(0).normal(size=unmixing(run.read_ica()).shape)
    assert amari_index(random_w @ truth["mixing"][rows]) > 2 * succeeded["amari_index"].max()


def test_runs_without_ground_truth_or_without_a_fit_get_nan_and_the_reason(fitted_runs):
    by_path = {r.params.raw_file_path + ":" + r.state: r for r in list_runs(fitted_runs)}
    no_truth = run_quality(by_path["no_truth_raw.fif:succeeded"])
    assert np.isnan(no_truth["amari_index"]) and np.isnan(no_truth["blink_match_r"])
    assert "no ground truth" in no_truth["quality_note"] and "no_truth_raw_truth.npz" in no_truth["quality_note"]
    failed = run_quality(by_path[DEMO_FILENAME + ":failed"])
    assert np.isnan(failed["heartbeat_match_r"]) and failed["quality_note"] == "run failed: no fitted ICA"


def test_table_has_parameters_metrics_provenance_and_quality(fitted_runs):
    frame = comparison_table(fitted_runs)
    assert len(frame) == 8
    for column in ("method", "random_state", "raw_file_path", "state", "n_iter", "eog_best_score", "digest",
                   "recording_sha256", "image", "preprocessing", "mne_version", "labkit_version", "picard_version", "host",
                   "finished", "blink_match_r", "heartbeat_match_r", "amari_index", "quality_note"):
        assert column in frame.columns, column
    ok = frame[(frame.state == "succeeded") & (frame.raw_file_path == DEMO_FILENAME)]
    assert (ok["mne_version"] == mne.__version__).all() and ok["digest"].str.len().min() >= 10
    from labkit.results.provenance import fingerprint

    assert set(ok["recording_sha256"]) == {fingerprint(fitted_runs / DEMO_FILENAME)}
    assert set(ok["preprocessing"]) == {"computed"}  # the fixture's runs filter without the cache
    assert frame.loc[frame.state == "failed", "recording_sha256"].isna().all()  # never ran: nothing recorded
    assert frame.loc[frame.state == "failed", "quality_note"].str.contains("failed").all()
    # a sweep's table (with its path column) keeps its rows and columns and is enriched the same way,
    # also read back from CSV, and with a set that never ran (no folder)
    sweep = frame[["method", "random_state", "path"]].assign(action="ran")
    sweep.loc["not-run-x"] = {"method": "picard", "random_state": 9, "path": None, "action": "run"}
    again = comparison_table(sweep)
    assert again.index.tolist() == sweep.index.tolist() and "action" in again
    pd.testing.assert_series_equal(again["amari_index"].iloc[:-1], frame["amari_index"])
    assert again.loc["not-run-x", "quality_note"].startswith("no result folder")
    csv = fitted_runs.parent / "sweep.csv"
    runs_table(fitted_runs).to_csv(csv)  # what `labkit sweep --csv` writes: no provenance or quality columns
    from_csv = comparison_table(pd.read_csv(csv))
    assert from_csv["recording_sha256"].tolist() == frame["recording_sha256"].tolist()
    assert from_csv["blink_match_r"].tolist() == pytest.approx(frame["blink_match_r"].tolist(), nan_ok=True)
    assert comparison_table(fitted_runs, quality=False).columns.intersection(["amari_index"]).empty


def test_topomap_grid_matches_components_across_methods(fitted_runs):
    frame = comparison_table(fitted_runs, quality=False)
    demo = frame[frame.raw_file_path == DEMO_FILENAME]
    fig = figures.topomap_grid(demo, by="method")
    fig.savefig(fitted_runs / "grid.png")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled[:2] == ["blink", "heartbeat"]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert {"ground truth", "fastica", "infomax", "picard"} <= set(texts)
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel().startswith("IC")]
    assert len(labels) == 6 and all(float(lab.split("r=")[1]) > 0.9 for lab in labels)  # 3 methods x 2 sources
    # without ground truth: matched by MNE's EOG/ECG scores, no truth row
    fig = figures.topomap_grid(frame[frame.raw_file_path == "no_truth_raw.fif"])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "ground truth" not in texts
    assert any("EOG score" in ax.get_xlabel() for ax in fig.axes)
    fig.savefig(fitted_runs / "grid_no_truth.png")


def test_readme_comparison_snippet_runs(fitted_runs):
    """The README's "Comparing runs" block, on real fits, with the base directory swapped in."""
    import re
    from pathlib import Path

    import matplotlib.pyplot as plt

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "quality.comparison_table(" in b)
    scope: dict = {}
    exec(block.replace('"/userdata"', repr(str(fitted_runs))), scope)  # noqa: S102 - our own README
    result = scope["result"]
    assert result.design == "paired" and result.blocks == ("raw_file_path", "random_state")
    assert result.tests["test"].eq("Friedman").all() and len(result.tests) == 4
    assert result.tests["n"].eq(2).all()  # two complete demo blocks; the no-truth and failed runs' blocks dropped
    assert {"run", "no value"} & set(" ".join(result.dropped["reason"]).split())
    assert len(plt.get_fignums()) >= 3
    plt.close("all")


def test_labkit_compare_command(fitted_runs, tmp_path):
    from click.testing import CliRunner

    from labkit.cli.main import main

    out = CliRunner().invoke(main, ["compare", "--base-dir", str(fitted_runs), "--figures", str(tmp_path / "figs"),
                                    "--csv", str(tmp_path / "t.csv")], env={"COLUMNS": "100"})
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    text = [line for line in lines if not line.startswith("wrote ")]  # a path is as long as it is
    assert max(map(len, text)) <= 100, max(text, key=len)  # the summary wraps, the tables are narrow
    words = out.output.replace("\n  ", " ")
    assert "Paired design: a block is one (raw_file_path, random_state)" in words
    assert words.count("Friedman") >= 4 and "Kendall's W" in words
    assert sum(line.startswith(("fit_time_s ", "blink_match_r ", "heartbeat_match_r ", "amari_index "))
               for line in lines) == 4 + 4 * 3  # a test per metric, and 3 pairs of methods per metric
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == sorted(["box_fit_time_s.png", "box_blink_match_r.png", "box_heartbeat_match_r.png",
                              "box_amari_index.png", "cd_fit_time_s.png", "cd_blink_match_r.png",
                              "cd_heartbeat_match_r.png", "cd_amari_index.png", "topomaps.png"])
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 9  # header + 8 runs
    bad = CliRunner().invoke(main, ["compare", "--base-dir", str(fitted_runs), "--metric", "nope"])
    assert bad.exit_code == 2 and "Invalid value for the 'metrics' parameter: got 'nope'" in bad.output
    empty = CliRunner().invoke(main, ["compare", "--base-dir", str(tmp_path)])
    assert empty.exit_code == 1 and "no result folders under" in empty.output


def test_quality_of_an_ica_fit_on_a_channel_subset(demo_dir):
    """W A is taken over the analysed channels only: an ICA fit on 40 of the 60 EEG channels is still scored."""
    import json

    from labkit import IcaParams
    from labkit.analysis import ica as analysis
    from labkit.results.folder import RunFolder
    from labkit.results.layout import ICA_FILE, METRICS_FILE
    from labkit.results.reading import load_run

    params = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=15, crop_tmax=20.0,
                       method="picard", random_state=0)
    raw = analysis.load(params, verbose="error")
    analysis.preprocess(raw, params, verbose="error")
    subset = raw.copy().pick(raw.ch_names[:40])  # frontal and central channels: the blink is there
    ica = mne.preprocessing.ICA(n_components=15, method="picard", random_state=0, verbose="error")
    ica.fit(subset, verbose="error")
    folder = RunFolder.create(params)
    ica.save(folder.file(ICA_FILE), verbose="error")
    folder.file(METRICS_FILE).write_text(json.dumps({"method": "picard"}))
    folder.succeed()
    q = run_quality(load_run(folder.path))
    assert q["quality_note"] == "" and len(ica.ch_names) == 40
    assert q["blink_match_r"] > 0.95 and 0 < q["amari_index"] < 1
