"""Sweeps: expansion and a real run of several sets (one failing); comparing them: tests/test_compare.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from labkit import IcaParams
from labkit.cli import main
from labkit.datasets import DEMO_FILENAME
from labkit.sweeps import expand, load_sets, runs_table


def test_expand_makes_every_combination():
    sets = expand(IcaParams(), method=["picard", "infomax"], random_state=range(3))
    assert len(sets) == 6 and len({p.digest for p in sets}) == 6
    assert [p.method for p in sets].count("picard") == 3


def test_load_sets_accepts_a_list_or_one_set():
    one = IcaParams(method="picard")
    assert load_sets(one.to_json()) == [one]
    assert load_sets(json.dumps([one.to_dict(), {"params": one.to_dict()}])) == [one, one]


@pytest.mark.slow
def test_sweep_cli_runs_every_set_and_keeps_going_after_a_failure(demo_dir, tmp_path):
    base = IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=8, crop_tmax=20.0)
    sets = [base.replace(method="picard"), base.replace(filter_fmax=200.0)]
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps([p.to_dict() for p in sets]))
    out = CliRunner().invoke(main, ["sweep", str(f), "--csv", str(tmp_path / "t.csv")])
    assert out.exit_code == 4, out.output
    frame = runs_table(demo_dir)
    assert sorted(frame["state"]) == ["failed", "succeeded"]
    assert frame.loc[frame.state == "failed", "error"].str.contains("filter_fmax").all()
    assert frame.loc[frame.state == "succeeded", "eog_best_score"].iloc[0] > 0.5
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2
