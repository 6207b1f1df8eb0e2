"""The template's blanks: where a plain papermill run looks for its data and keeps its results."""

from __future__ import annotations

import shutil

import pytest

from labkit.analysis.datasets import DEMO_FILENAME
from labkit.errors import ParameterError
from labkit.params import SAMPLE_DATA_PATH
from labkit.runners.template import default_locations, start


def test_given_locations_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("BASE_DIR", "/elsewhere")
    assert default_locations(str(tmp_path), "rec_raw.fif") == (str(tmp_path), "rec_raw.fif")


def test_blank_base_dir_is_BASE_DIR_then_home_labkit(tmp_path, monkeypatch):
    monkeypatch.setenv("BASE_DIR", str(tmp_path))
    assert default_locations("", "x_raw.fif")[0] == str(tmp_path)
    monkeypatch.delenv("BASE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert default_locations("", "x_raw.fif")[0] == str(tmp_path / "home" / "labkit")
    assert (tmp_path / "home" / "labkit").is_dir(), "made if missing"
    assert [p.name for p in tmp_path.iterdir()] == ["home"], "nothing in the working directory"


def test_blank_recording_prefers_mne_sample_data_at_the_prototype_path(demo_dir):
    sample = demo_dir / SAMPLE_DATA_PATH
    sample.parent.mkdir(parents=True)
    shutil.copy(demo_dir / DEMO_FILENAME, sample)
    assert default_locations(str(demo_dir), "") == (str(demo_dir), SAMPLE_DATA_PATH)


def test_blank_recording_without_sample_data_writes_the_demo(tmp_path):
    assert default_locations(str(tmp_path), "") == (str(tmp_path), DEMO_FILENAME)
    assert (tmp_path / DEMO_FILENAME).is_file()


def test_a_refused_set_makes_no_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("BASE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ParameterError, match="'method' parameter: got 'pca'") as caught:
        start({"base_dir": "", "raw_file_path": "", "method": "pca"})
    assert caught.value._render_traceback_() == [f"ParameterError: {caught.value}"], "IPython shows one line"
    assert list(tmp_path.iterdir()) == []


def test_a_home_where_labkit_cannot_be_made_names_base_dir(tmp_path, monkeypatch):
    (tmp_path / "labkit").write_text("a file where the folder would go")
    monkeypatch.delenv("BASE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ParameterError, match=r"'base_dir' parameter: got ''; allowed: a directory; the default .*"
                                             r"labkit, cannot be made .*give base_dir or set BASE_DIR"):
        default_locations("", "x_raw.fif")
