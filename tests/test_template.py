"""The template's blanks: where a plain papermill run looks for its data."""

from __future__ import annotations

import shutil

from labkit.analysis.datasets import DEMO_FILENAME
from labkit.params import SAMPLE_DATA_PATH
from labkit.runners.template import default_locations


def test_given_locations_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("BASE_DIR", "/elsewhere")
    assert default_locations(str(tmp_path), "rec_raw.fif") == (str(tmp_path), "rec_raw.fif")


def test_blank_base_dir_is_BASE_DIR_then_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("BASE_DIR", str(tmp_path))
    assert default_locations("", "x_raw.fif")[0] == str(tmp_path)
    monkeypatch.delenv("BASE_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_locations("", "x_raw.fif")[0] == str(tmp_path)


def test_blank_recording_prefers_mne_sample_data_at_the_prototype_path(demo_dir):
    sample = demo_dir / SAMPLE_DATA_PATH
    sample.parent.mkdir(parents=True)
    shutil.copy(demo_dir / DEMO_FILENAME, sample)
    assert default_locations(str(demo_dir), "") == (str(demo_dir), SAMPLE_DATA_PATH)


def test_blank_recording_without_sample_data_writes_the_demo(tmp_path):
    assert default_locations(str(tmp_path), "") == (str(tmp_path), DEMO_FILENAME)
    assert (tmp_path / DEMO_FILENAME).is_file()
