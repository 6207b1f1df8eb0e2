"""The demo recording: deterministic, well-formed, round-trips through disk, and ICA recovers its artifacts."""

from __future__ import annotations

import warnings

import mne
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from labkit.analysis import datasets
from labkit.analysis.datasets import (
    DEMO_FILENAME,
    EEG_CH_NAMES,
    TRUTH_SUFFIX,
    demo_path,
    load_truth,
    make_demo_raw,
    sample_data_path,
    write_demo,
)

REQUIRED_KEYS = {"mixing", "sources", "source_names", "ch_names", "sfreq"}


@pytest.fixture(scope="module")
def demo():
    """The default recording, made once for the module (about a second)."""
    return make_demo_raw()


def _assert_truth_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


def test_same_seed_gives_bit_identical_data():
    raw1, truth1 = make_demo_raw(duration=10.0, random_state=3)
    raw2, truth2 = make_demo_raw(duration=10.0, random_state=3)
    assert np.array_equal(raw1.get_data(), raw2.get_data())
    _assert_truth_equal(truth1, truth2)
    raw3, _ = make_demo_raw(duration=10.0, random_state=4)
    assert not np.allclose(raw1.get_data(), raw3.get_data())


def test_channels_montage_and_amplitudes(demo):
    raw, truth = demo
    assert raw.info["sfreq"] == 250.0
    assert raw.n_times == 30000
    assert raw.ch_names == list(EEG_CH_NAMES) + ["EOG1", "EOG2", "ECG"]
    assert len(EEG_CH_NAMES) == 60
    assert raw.get_channel_types() == ["eeg"] * 60 + ["eog", "eog", "ecg"]
    assert raw.info["line_freq"] == 50.0
    pos = raw.get_montage().get_positions()["ch_pos"]
    assert set(pos) == set(EEG_CH_NAMES)
    xyz = np.array([pos[ch] for ch in EEG_CH_NAMES])
    assert np.all(np.isfinite(xyz)) and np.all(np.linalg.norm(xyz, axis=1) > 0.05)

    # volts, with realistic sizes: background tens of uV, blinks ~100 uV at Fp1/Fp2, ECG ~1 mV
    data = raw.get_data()
    eeg_std = np.delete(data[:60], EEG_CH_NAMES.index(datasets.DRIFT_CHANNEL), axis=0).std(axis=1)
    assert np.all((eeg_std > 5e-6) & (eeg_std < 60e-6))
    names = list(truth["source_names"])
    blink = truth["mixing"][:, names.index("blink")][:, None] * truth["sources"][names.index("blink")]
    fp1 = EEG_CH_NAMES.index("Fp1")
    assert 70e-6 < np.median(blink[fp1, np.rint(truth["blink_peaks"] * 250).astype(int)]) < 130e-6
    assert np.abs(blink[EEG_CH_NAMES.index("Oz")]).max() < 0.1 * np.abs(blink[fp1]).max()
    saccade = truth["mixing"][:, names.index("saccade")]
    assert np.sign(saccade[EEG_CH_NAMES.index("F7")]) == -np.sign(saccade[EEG_CH_NAMES.index("F8")])
    assert 0.5e-3 < np.percentile(data[62], 99.9) < 1.5e-3


def test_truth_describes_the_eeg(demo):
    raw, truth = demo
    assert REQUIRED_KEYS <= truth.keys()
    names = list(truth["source_names"])
    for name in ("blink", "saccade", "heartbeat", "line", "drift", "alpha_left"):
        assert name in names
    n_sources = len(names)
    assert truth["mixing"].shape == (60, n_sources)
    assert truth["sources"].shape == (n_sources, raw.n_times)
    assert list(truth["ch_names"]) == list(EEG_CH_NAMES)
    assert truth["sfreq"] == raw.info["sfreq"]
    np.testing.assert_allclose(truth["sources"].std(axis=1), 1.0, rtol=1e-9)
    # what mixing @ sources leaves is the independent sensor noise (~1 uV): it keeps the data full rank
    residual = raw.get_data(picks="eeg") - truth["mixing"] @ truth["sources"]
    assert 0.8e-6 < residual.std() < 1.2e-6
    assert np.linalg.matrix_rank(raw.get_data()[:, :2000]) == 63


def test_write_demo_round_trips_and_is_idempotent(tmp_path, monkeypatch):
    path = write_demo(tmp_path, duration=10.0)
    assert path == demo_path(tmp_path) == tmp_path / DEMO_FILENAME
    assert path.with_name("demo_raw" + TRUTH_SUFFIX).is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo_raw.fif", "demo_raw_truth.npz"]

    raw, truth = make_demo_raw(duration=10.0)
    loaded = mne.io.read_raw_fif(path, preload=True, verbose="error")
    assert loaded.ch_names == raw.ch_names
    assert loaded.get_channel_types() == raw.get_channel_types()
    np.testing.assert_allclose(loaded.get_data(), raw.get_data(), rtol=1e-6, atol=1e-12)  # saved as float32
    assert loaded.get_montage() is not None
    _assert_truth_equal(load_truth(path), truth)

    # fast path: an existing demo is returned untouched, nothing is regenerated
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(datasets, "make_demo_raw", _must_not_run)
    assert write_demo(tmp_path, duration=10.0) == path
    assert path.stat().st_mtime_ns == stamp
    monkeypatch.undo()
    # overwrite regenerates (same data, fresh file)
    assert write_demo(tmp_path, duration=10.0, overwrite=True) == path
    assert mne.io.read_raw_fif(path, verbose="error").n_times == raw.n_times


def _must_not_run(*args, **kwargs):
    raise AssertionError("write_demo regenerated an existing demo")


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    class Broken:
        def save(self, fname, **kwargs):
            with open(fname, "wb") as fh:
                fh.write(b"half a file")
            raise OSError("disk full")

    monkeypatch.setattr(datasets, "make_demo_raw", lambda **kw: (Broken(), {"sfreq": 250.0}))
    with pytest.raises(OSError, match="disk full"):
        write_demo(tmp_path)
    assert list((tmp_path / "labkit-demo").iterdir()) == []


def test_load_truth_needs_the_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="demo_raw_truth.npz"):
        load_truth(tmp_path / "demo_raw.fif")


def test_sample_data_path(tmp_path):
    assert sample_data_path(tmp_path) is None
    fif = tmp_path / "MNE-sample-data/MEG/sample/sample_audvis_filt-0-40_raw.fif"
    fif.parent.mkdir(parents=True)
    fif.write_bytes(b"")
    assert sample_data_path(tmp_path) == fif


@pytest.mark.parametrize("kwargs", [{"duration": 0}, {"sfreq": 80.0}, {"random_state": -1}, {"duration": 1.0}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_demo_raw(**kwargs)


def _best_match(ica_sources: np.ndarray, true_source: np.ndarray) -> tuple[int, float]:
    r = np.array([np.corrcoef(component, true_source)[0, 1] for component in ica_sources])
    best = int(np.argmax(np.abs(r)))
    return best, float(abs(r[best]))


@pytest.mark.slow
def test_ica_recovers_blink_and_heartbeat(demo):
    raw, truth = demo
    raw_f = raw.copy().crop(0, 60).filter(1, 30, verbose="error")
    ica = mne.preprocessing.ICA(n_components=20, method="picard", random_state=97, verbose="error")
    # one BLAS thread: ~1 s; on a busy machine threaded BLAS took 6-11 s for the same fit
    with threadpool_limits(limits=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ica.fit(raw_f, picks="eeg", verbose="error")
    assert not [w for w in caught if "converge" in str(w.message)]  # the demo should be easy to unmix
    estimated = ica.get_sources(raw_f).get_data()
    names = list(truth["source_names"])
    true = mne.filter.filter_data(truth["sources"][:, : raw_f.n_times], truth["sfreq"], 1, 30, verbose="error")

    blink_ic, blink_r = _best_match(estimated, true[names.index("blink")])
    heart_ic, heart_r = _best_match(estimated, true[names.index("heartbeat")])
    # measured on this machine (mne 1.13, random_state 42/97): blink 0.998, heartbeat 0.941
    assert blink_r > 0.8
    assert heart_r > 0.6
    # and MNE's own detectors, driven by the EOG/ECG channels, point at the same components
    eog_idx, _ = ica.find_bads_eog(raw_f, verbose="error")
    ecg_idx, _ = ica.find_bads_ecg(raw_f, method="correlation", threshold="auto", verbose="error")
    assert blink_ic in eog_idx
    assert heart_ic in ecg_idx
