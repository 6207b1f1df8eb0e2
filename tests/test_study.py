"""Studies: recordings (list, glob, BIDS) x grid x seeds, from Python, YAML/JSON and the CLI; bad sets recorded."""

from __future__ import annotations

import math
import shutil

import mne
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.errors import ParameterError
from labkit.study.sweeps import Study, expand, find_recordings, load_sets, run_sweep


@pytest.fixture
def two_recordings(demo_dir):
    (demo_dir / "rec").mkdir()
    for name in ("sub-01_raw.fif", "sub-02_raw.fif"):
        shutil.copy(demo_dir / DEMO_FILENAME, demo_dir / "rec" / name)
    return demo_dir


def test_expand_crosses_recordings_grid_and_seeds(two_recordings):
    base = IcaParams(base_dir=str(two_recordings), n_components=10)
    sets = expand(base, recordings="rec/*.fif", method=["fastica", "picard", "infomax"], seeds=4)
    assert len(sets) == 2 * 3 * 4 and len({p.digest for p in sets}) == 24
    assert {p.raw_file_path for p in sets} == {"rec/sub-01_raw.fif", "rec/sub-02_raw.fif"}
    assert {p.random_state for p in sets} == {0, 1, 2, 3} and {p.n_components for p in sets} == {10}
    listed = expand(base, recordings=["rec/sub-01_raw.fif", DEMO_FILENAME], seeds=[5, 6])
    assert [(p.raw_file_path, p.random_state) for p in listed] == [
        ("rec/sub-01_raw.fif", 5), ("rec/sub-01_raw.fif", 6), (DEMO_FILENAME, 5), (DEMO_FILENAME, 6)]


def test_study_file_yaml_and_json_give_the_same_sets(two_recordings, tmp_path):
    yaml_text = """
recordings: rec/*.fif
params: {n_components: 8, crop_tmax: 30}
grid: {method: [fastica, picard]}
seeds: [1, 2]
"""
    json_text = ('{"recordings": ["rec/*.fif"], "params": {"n_components": 8, "crop_tmax": 30},'
                 ' "grid": {"method": ["fastica", "picard"]}, "seeds": [1, 2]}')
    a, b = load_sets(yaml_text, base_dir=str(two_recordings)), load_sets(json_text, base_dir=str(two_recordings))
    assert a == b and len(a) == 8 and {p.crop_tmax for p in a} == {30.0}


@pytest.mark.parametrize(("study", "field"), [
    ({"grid": {"methd": ["picard"]}}, "methd"),
    ({"grid": {"method": "picard"}}, "grid"),
    ({"recordings": "nothing/*.fif"}, "recordings"),
    ({"params": {"n_components": "many"}}, "n_components"),
    ({"seedz": 3}, "seedz"),
])
def test_bad_study_names_the_field(study, field, demo_dir):
    with pytest.raises(ParameterError) as err:
        Study.from_dict(study, base_dir=str(demo_dir)).sets()
    assert err.value.field == field


@settings(max_examples=30, deadline=None)
@given(methods=st.lists(st.sampled_from(["fastica", "picard", "infomax"]), min_size=1, max_size=3, unique=True),
       components=st.lists(st.integers(2, 40), min_size=1, max_size=4, unique=True),
       seeds=st.integers(1, 6))
def test_expansion_is_the_product_of_the_axes(methods, components, seeds):
    sets = expand(IcaParams(), method=methods, n_components=components, seeds=seeds)
    assert len(sets) == len({p.digest for p in sets}) == math.prod([len(methods), len(components), seeds])


def test_bids_dataset_recordings_are_found_with_mne_bids(demo_dir):
    import mne_bids

    raw = mne.io.read_raw_fif(demo_dir / DEMO_FILENAME, preload=True, verbose="error").crop(0, 20)
    raw.info["line_freq"] = 50
    for sub in ("01", "02"):
        path = mne_bids.BIDSPath(subject=sub, task="rest", datatype="eeg", root=demo_dir / "bids")
        mne_bids.write_raw_bids(raw, path, format="BrainVision", allow_preload=True, verbose=False)
    found = find_recordings(demo_dir, {"bids": "bids"})
    assert found == ["bids/sub-01/eeg/sub-01_task-rest_eeg.vhdr", "bids/sub-02/eeg/sub-02_task-rest_eeg.vhdr"]
    assert find_recordings(demo_dir, {"bids": "bids", "subjects": "02"}) == found[1:]
    study = Study.from_dict({"recordings": {"bids": "bids"}, "grid": {"method": ["picard"]}, "seeds": 2,
                             "params": {"n_components": 5}}, base_dir=str(demo_dir))
    sets = study.sets()
    assert len(sets) == 4 and all(p.raw_path().is_file() for p in sets)
    with pytest.raises(ParameterError, match="recordings.subject"):
        find_recordings(demo_dir, {"bids": "bids", "subject": "02"})


@pytest.mark.slow
def test_a_bad_recording_in_a_study_is_a_failed_row_and_the_others_run(demo_dir):
    (demo_dir / "broken_raw.fif").write_bytes(b"not a FIF file at all")
    base = IcaParams(base_dir=str(demo_dir), n_components=5, crop_tmax=10.0)
    frame = run_sweep(expand(base, recordings=[DEMO_FILENAME, "broken_raw.fif"]), workers=2, progress=False)
    by_file = frame.set_index("raw_file_path")
    assert by_file.loc[DEMO_FILENAME, "state"] == "succeeded"
    assert by_file.loc["broken_raw.fif", "state"] == "failed"
    assert "broken_raw.fif" in by_file.loc["broken_raw.fif", "error"] or "FIF" in by_file.loc["broken_raw.fif", "error"]
