"""Every validation rule, and exact round trips through env vars, papermill, JSON and CLI flags."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from labkit import IcaParams, ParameterError
from labkit.analysis.recording import RecordingInfo
from labkit.analysis.recording import header_problems as recording_problems
from labkit.cli.options import param_options, params_from_cli
from labkit.params import FIELDS

CUSTOM = dict(base_dir="/data/alice", raw_file_path="sub-01/eeg/rec_raw.fif", method="picard", n_components=15,
              crop_tmin=2.5, crop_tmax=42.125, channel_type="eeg", filter_fmin=0.5, filter_fmax=40.0,
              random_state=7, max_iter=321, extended=True, ortho=False)


def test_defaults_are_the_prototypes():
    p = IcaParams.from_env({})
    assert p.base_dir == "/userdata"
    assert p.raw_file_path == "./MNE-sample-data/MEG/sample/sample_audvis_filt-0-40_raw.fif"
    assert (p.n_components, p.crop_tmin, p.crop_tmax, p.channel_type) == (30, 0.0, 60.0, "eeg")
    assert (p.filter_fmin, p.filter_fmax, p.method) == (1.0, 30.0, "fastica")


def test_env_contract_names_and_round_trip():
    env = {"BASE_DIR": "/userdata", "RAW_FILE_PATH": "x_raw.fif", "ICA_METHOD": "infomax",
           "ICA_COMPONENTS_COUNT": "20", "CROP_TMIN": "0", "CROP_TMAX": "60", "USING_CHANNEL": "eeg",
           "FILTER_FMIN": "1", "FILTER_FMAX": "30"}
    p = IcaParams.from_env(env)
    assert (p.method, p.n_components, p.raw_file_path) == ("infomax", 20, "x_raw.fif")
    custom = IcaParams(**CUSTOM)
    assert IcaParams.from_env(custom.to_env()) == custom
    assert {f.env for f in FIELDS} == set(custom.to_env())


@pytest.mark.parametrize("values", [CUSTOM, {}, dict(crop_tmax=None, random_state=None, method="infomax")])
def test_round_trips(values):
    p = IcaParams(**values)
    assert IcaParams.from_json(p.to_json()) == p
    assert IcaParams.from_papermill({**p.to_papermill(), "run_dir": None, "np": object()}) == p
    assert IcaParams.from_env(p.to_env()) == p

    @click.command()
    @param_options
    def cmd(params_file, **kw):
        click.echo(params_from_cli(params_file, kw).to_json())

    out = CliRunner().invoke(cmd, p.to_cli_args())
    assert out.exit_code == 0, out.output
    assert IcaParams.from_json(out.output) == p


def test_cli_flags_override_params_file(tmp_path):
    @click.command()
    @param_options
    def cmd(params_file, **kw):
        click.echo(params_from_cli(params_file, kw).to_json())

    f = tmp_path / "p.json"
    f.write_text(IcaParams(**CUSTOM).to_json())
    out = CliRunner().invoke(cmd, ["--params", str(f), "--method", "fastica", "--ortho", "", "--extended", ""])
    assert IcaParams.from_json(out.output) == IcaParams(**{**CUSTOM, "method": "fastica", "ortho": None, "extended": None})


def test_digest_is_stable_and_ignores_base_dir():
    a = IcaParams(**CUSTOM)
    assert a.digest == IcaParams(**CUSTOM).digest
    assert a.digest == a.replace(base_dir="/elsewhere").digest
    assert len(a.digest) == 10 and int(a.digest, 16) >= 0
    digests = {a.replace(**{k: v}).digest for k, v in
               [("ortho", True), ("n_components", 16), ("crop_tmin", 3), ("filter_fmax", 41), ("random_state", 8)]}
    assert len(digests) == 5 and a.digest not in digests


@pytest.mark.parametrize("field,value,match", [
    ("method", "pca", r"'method' parameter: got 'pca'; allowed: one of 'fastica', 'picard', 'infomax'"),
    ("channel_type", "eegg", r"'channel_type' parameter: got 'eegg'; allowed: one of 'eeg'"),
    ("n_components", 1, r"'n_components' parameter: got 1; allowed: a whole number of at least 2"),
    ("n_components", "twenty", r"'n_components' parameter: got 'twenty'; allowed: a whole number"),
    ("n_components", 2.5, r"'n_components'.*a whole number"),
    ("crop_tmin", -1, r"'crop_tmin' parameter: got -1.0; allowed: 0 s or later"),
    ("crop_tmax", 0.0, r"'crop_tmax' parameter: got 0.0; allowed: greater than crop_tmin \(0.0 s\)"),
    ("filter_fmin", 0, r"'filter_fmin'.*above 0 Hz"),
    ("filter_fmax", 1.0, r"'filter_fmax' parameter: got 1.0; allowed: greater than filter_fmin \(1.0 Hz\)"),
    ("filter_fmax", "nan", r"'filter_fmax'.*a finite number"),
    ("max_iter", 0, r"'max_iter'.*'auto' or a positive whole number"),
    ("random_state", -3, r"'random_state'.*seed"),
    ("ortho", True, r"'ortho'.*unless method is 'picard'"),
    ("extended", "maybe", r"'extended'.*true, false or empty"),
    ("raw_file_path", "../bob/rec_raw.fif", r"'raw_file_path'.*inside base_dir '/userdata' \(no '..'\)"),
    ("raw_file_path", "a/../../x_raw.fif", r"'raw_file_path'.*no '..'"),
    ("raw_file_path", "/etc/passwd", r"'raw_file_path'.*a path inside base_dir '/userdata'"),
    ("raw_file_path", "", r"'raw_file_path'.*non-empty path"),
])
def test_each_rule_names_field_value_and_allowed(field, value, match):
    with pytest.raises(ParameterError, match=match) as info:
        IcaParams(**{"base_dir": "/userdata", field: value})
    assert info.value.field == field


def test_absolute_path_inside_base_dir_is_allowed():
    params = IcaParams(base_dir="/userdata", raw_file_path="/userdata/sub/x_raw.fif")
    assert params.raw_file_path == "/userdata/sub/x_raw.fif"


def test_unknown_field_in_json_is_refused():
    with pytest.raises(ParameterError, match=r"'n_component'.*did you mean 'n_components'.*one of base_dir"):
        IcaParams.from_dict({"n_component": 3})


def test_file_rules(tmp_path: Path):
    outside = tmp_path / "outside_raw.fif"
    outside.write_bytes(b"x")
    base = tmp_path / "user"
    base.mkdir()
    (base / "link_raw.fif").symlink_to(outside)
    with pytest.raises(ParameterError, match=r"'raw_file_path'.*inside base_dir.*resolves to"):
        IcaParams(base_dir=str(base), raw_file_path="link_raw.fif").raw_path()
    with pytest.raises(ParameterError, match=r"'raw_file_path'.*an existing file"):
        IcaParams(base_dir=str(base), raw_file_path="missing_raw.fif").raw_path()
    (base / "ok_raw.fif").write_bytes(b"x")
    assert IcaParams(base_dir=str(base), raw_file_path="ok_raw.fif").raw_path() == (base / "ok_raw.fif").resolve()


def test_recording_rules():
    rec = RecordingInfo(path="r", sfreq=100.0, duration=30.0, channel_counts={"eeg": 19, "eog": 1})
    ok = IcaParams(n_components=19, filter_fmax=49.9, crop_tmin=29.0)
    assert recording_problems(ok, rec) == []
    cases = {
        "crop_tmin": (dict(crop_tmin=30.0), r"got 30.0; allowed: a start before the recording ends \(30.000 s\)"),
        "filter_fmax": (dict(filter_fmax=50.0), r"got 50.0; allowed: below the Nyquist frequency \(50 Hz\)"),
        "n_components": (dict(n_components=20), r"got 20; allowed: at most the 19 picked eeg channels"),
        "channel_type": (dict(channel_type="meg"), r"got 'meg'; allowed: a type present in the recording that ICA can fit with at least 2 good channels: eeg \(19\)"),
    }
    for field, (change, match) in cases.items():
        problems = recording_problems(ok.replace(**change), rec)
        assert [p.field for p in problems] == [field]
        assert re.search(match, str(problems[0])), str(problems[0])


@pytest.mark.parametrize("run_id", ["20260101-120000-000-abc123", "r1", "a", "my-run_7.b", "x" * 63,
                                    "20260101-120000-000-abc123-12"])
def test_run_id_check_accepts_plain_names(run_id):
    from labkit.params import check_run_id

    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", ".hidden", "x.", "-x", "x" * 64, "x" * 300, "a b",
                                    "x\n", "x\x00", "é", None, 12, "ok\nok"])
def test_run_id_check_refuses_paths_long_and_odd_names(run_id):
    from labkit.params import check_run_id

    with pytest.raises(ParameterError, match=r"'run_id' parameter: got .*; allowed: 1 to 63 letters") as info:
        check_run_id(run_id)
    assert info.value.field == "run_id" and len(str(info.value)) < 300


def test_base_dir_defaults_to_env_then_current_directory(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("BASE_DIR", raising=False)
    assert IcaParams().base_dir == "."
    assert IcaParams.from_env({}).base_dir == "/userdata"  # the image's contract
    monkeypatch.setenv("BASE_DIR", "/data/me")
    assert IcaParams().base_dir == "/data/me"


def test_unknown_key_suggests_the_field():
    with pytest.raises(ParameterError, match=r"did you mean 'method'\?"):
        IcaParams.from_json('{"methd": "picard"}')


def test_crop_start_past_default_end_blames_the_start():
    with pytest.raises(ParameterError, match=r"crop_tmin.*60 s, its default") as info:
        IcaParams(crop_tmin=100)
    assert info.value.field == "crop_tmin"
    with pytest.raises(ParameterError) as info:
        IcaParams(crop_tmin=10, crop_tmax=5)
    assert info.value.field == "crop_tmax"
