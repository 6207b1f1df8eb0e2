"""Sweeps: expansion, a real run of several sets (one failing), and the statistics that compare them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from labkit import IcaParams
from labkit.cli import main
from labkit.datasets import DEMO_FILENAME
from labkit.sweeps import compare, expand, load_sets, plot, runs_table


def test_expand_makes_every_combination():
    sets = expand(IcaParams(), method=["picard", "infomax"], random_state=range(3))
    assert len(sets) == 6 and len({p.digest for p in sets}) == 6
    assert [p.method for p in sets].count("picard") == 3


def test_load_sets_accepts_a_list_or_one_set():
    one = IcaParams(method="picard")
    assert load_sets(one.to_json()) == [one]
    assert load_sets(json.dumps([one.to_dict(), {"params": one.to_dict()}])) == [one, one]


def _frame(groups: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"method": m, "random_state": i, "state": "succeeded", "fit_time_s": v}
            for m, values in groups.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_compare_picks_the_right_test_and_detects_a_difference():
    rng = np.random.default_rng(0)
    fast, slow = rng.normal(1, 0.1, 12), rng.normal(2, 0.1, 12)
    two = compare(_frame({"picard": list(fast), "fastica": list(slow)}), "fit_time_s")
    assert two["test"] == "Wilcoxon-Mann-Whitney" and two["pvalue"] < 0.001
    same = compare(_frame({"picard": list(fast), "fastica": list(fast + rng.normal(0, 0.001, 12))}), "fit_time_s")
    assert same["pvalue"] > 0.05
    three = compare(_frame({"a": list(fast), "b": list(slow), "c": list(slow + 1)}), "fit_time_s")
    assert three["test"] == "Friedman" and three["pvalue"] < 0.001
    unpaired = compare(_frame({"a": list(fast), "b": list(slow), "c": list(slow + 1)}).drop(columns="random_state"),
                       "fit_time_s")
    assert unpaired["test"] == "Kruskal-Wallis"
    assert list(three["summary"].index) == ["a", "b", "c"]
    assert plot(_frame({"a": list(fast), "b": list(slow)}), "fit_time_s").axes[0].get_ylabel() == "fit_time_s"


def test_compare_needs_two_groups():
    with pytest.raises(ValueError, match="at least two values of 'method'"):
        compare(_frame({"a": [1.0, 2.0]}), "fit_time_s")


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
