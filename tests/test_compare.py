"""Comparison statistics: each test against scipy, scikit-posthocs and textbook answers; test choice, Holm, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from labkit.study import compare as cmp
from labkit.study import figures


def _frame(groups: dict[str, list[float]], *, seeds: dict[str, list[int]] | None = None,
           recording: str = "labkit-demo/demo_raw.fif") -> pd.DataFrame:
    """One row per run, as labkit.results.table makes them: group g's i-th value ran seed seeds[g][i]."""
    rows = [{"method": g, "raw_file_path": recording, "random_state": (seeds or {}).get(g, range(len(v)))[i],
             "state": "succeeded", "fit_time_s": x} for g, v in groups.items() for i, x in enumerate(v)]
    return pd.DataFrame(rows)


def _words(result: cmp.Comparison) -> str:
    """The summary as printed (wrapped at 100 columns, continuation lines indented), unwrapped."""
    return result.summary().replace("\n  ", " ")


# Darwin's Zea mays data as differences (cross- minus self-fertilised height, eighths of an inch; Fisher 1935),
# the classic signed-rank example: W- = 24 (ranks 10 and 14), exact two-sided p = 0.04126.
DARWIN = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
# Pulse before / immediately after / 5 min after exercise in 7 people (scipy's friedmanchisquare example):
# rank sums 10, 21, 11 -> chi2 = 12 / (7 * 3 * 4) * (10^2 + 21^2 + 11^2) - 3 * 7 * 4 = 10.571
PULSE = {"before": [72, 96, 88, 92, 74, 76, 82], "after": [120, 120, 132, 120, 101, 96, 112],
         "five_min": [76, 95, 104, 96, 84, 72, 76]}


def test_wilcoxon_on_darwins_data_matches_the_textbook_and_scipy():
    result = cmp.compare(_frame({"cross": list(DARWIN), "self": [0.0] * len(DARWIN)}), "fit_time_s")
    row = result.tests.iloc[0]
    assert (row["design"], row["test"], row["n"]) == ("paired", "Wilcoxon signed-rank", 15)
    assert row["statistic"] == 24.0 and row["pvalue"] == pytest.approx(0.041259765625)
    assert row["pvalue"] == pytest.approx(stats.wilcoxon(DARWIN).pvalue)
    assert row["effect_size"] == pytest.approx((96 - 24) / 120)  # matched-pairs rank-biserial: R+ = 96, R- = 24
    assert row["magnitude"] == "large"
    pair = result.posthoc.iloc[0]  # two groups: the one pair, with the size of the difference in the metric's units
    assert (pair["group_a"], pair["group_b"], pair["pvalue"]) == ("cross", "self", row["pvalue"])
    assert pair["median_difference"] == 24.0 and pair["higher"] == "cross"
    assert "cross higher than self (median difference cross - self: 24)" in _words(result)
    assert "Wilcoxon signed-rank" in _words(result) and "raw_file_path, random_state" in _words(result)


def test_friedman_matches_the_hand_computed_chi_square_and_kendalls_w():
    result = cmp.compare(_frame(PULSE), "fit_time_s", by="method")
    row = result.tests.iloc[0]
    assert (row["test"], row["n"], row["n_groups"]) == ("Friedman", 7, 3)
    assert row["statistic"] == pytest.approx(12 / 84 * (10**2 + 21**2 + 11**2) - 84)
    assert row["pvalue"] == pytest.approx(stats.friedmanchisquare(*PULSE.values()).pvalue)
    assert row["effect_size"] == pytest.approx(row["statistic"] / (7 * 2))
    ranks = result.groups.set_index("group")["mean_rank"]
    assert ranks.to_dict() == pytest.approx({"before": 10 / 7, "after": 21 / 7, "five_min": 11 / 7})


def test_kendalls_w_is_one_when_every_block_ranks_the_groups_alike():
    # 4 blocks, a < b < c in each: rank sums 4, 8, 12 -> chi2 = 8, W = 8 / (4 * 2) = 1
    result = cmp.compare(_frame({"a": [1, 2, 3, 4], "b": [5, 6, 7, 8], "c": [9, 10, 11, 12]}), "fit_time_s")
    assert result.tests.iloc[0][["statistic", "effect_size"]].tolist() == pytest.approx([8.0, 1.0])


def test_nemenyi_matches_scikit_posthocs_and_demsars_formula():
    rng = np.random.default_rng(1)
    data = {"a": rng.normal(0, 1, 20), "b": rng.normal(0.8, 1, 20), "c": rng.normal(1.6, 1, 20),
            "d": rng.normal(0, 1, 20)}
    result = cmp.compare(_frame({k: list(v) for k, v in data.items()}), "fit_time_s")
    wide = np.column_stack(list(data.values()))
    expected = sp.posthoc_nemenyi_friedman(wide)
    post = result.posthoc.set_index(["group_a", "group_b"])["pvalue"]
    names = list(data)
    for (i, a), (j, b) in [((0, "a"), (1, "b")), ((0, "a"), (2, "c")), ((1, "b"), (3, "d"))]:
        assert post[(a, b)] == pytest.approx(expected.iloc[i, j])
    # Demšar (2006): the rank difference over sqrt(k (k + 1) / (6 N)) is a studentised range / sqrt(2)
    ranks = result.groups.set_index("group")["mean_rank"]
    k, n = 4, 20
    q = abs(ranks["a"] - ranks["c"]) / np.sqrt(k * (k + 1) / (6 * n)) * np.sqrt(2)
    assert post[("a", "c")] == pytest.approx(stats.studentized_range.sf(q, k, np.inf), abs=1e-6)
    assert set(post.index) == {(a, b) for i, a in enumerate(names) for b in names[i + 1:]}
    assert "Nemenyi" in _words(result) and "c higher than a" in _words(result)
    shown = result._repr_html_()  # what a notebook shows: the words, the tests and the pairs
    assert "c higher than a" in shown and shown.count("<table") == 2 and "Kendall&#x27;s W" in shown
    conover = cmp.compare(_frame({k: list(v) for k, v in data.items()}), "fit_time_s", posthoc="conover")
    expected = sp.posthoc_conover_friedman(wide, p_adjust="holm")
    assert conover.posthoc.set_index(["group_a", "group_b"])["pvalue"][("a", "c")] == pytest.approx(
        expected.iloc[0, 2])


def test_mann_whitney_on_the_textbook_example_when_seeds_are_not_shared():
    # males vs females (scipy's mannwhitneyu example): U = 17, exact two-sided p = 0.1111; r = 2 * 17 / 20 - 1
    males, females = [19, 22, 16, 29, 24], [20, 11, 17, 12]
    result = cmp.compare(_frame({"m": males, "f": females}, seeds={"m": [0, 1, 2, 3, 4], "f": [5, 6, 7, 8]}),
                         "fit_time_s")
    row = result.tests.iloc[0]
    assert result.design == "unpaired" and row["test"] == "Mann-Whitney U"
    assert "No block (raw_file_path, random_state) holds two groups" in _words(result)
    # groups are sorted, so f comes first: U_f = 20 - 17 = 3 and r_f = -0.7
    assert row["statistic"] == 3.0 and row["pvalue"] == pytest.approx(1 / 9)
    assert row["pvalue"] == pytest.approx(stats.mannwhitneyu(females, males).pvalue)
    assert row["effect_size"] == pytest.approx(-0.7)
    # Hodges-Lehmann shift f - m: the median of the 20 differences (by hand: -7)
    assert result.posthoc.iloc[0]["median_difference"] == -7.0


def test_kruskal_wallis_and_dunn_match_scipy_and_scikit_posthocs():
    # fully separated groups of 3: rank sums 6, 15, 24 -> H = 12 / 90 * 279 - 30 = 7.2; epsilon^2 = 7.2 / 8
    groups = {"a": [1.0, 2, 3], "b": [4.0, 5, 6], "c": [7.0, 8, 9]}
    result = cmp.compare(_frame(groups).drop(columns="random_state"), "fit_time_s")
    row = result.tests.iloc[0]
    assert (row["test"], row["design"]) == ("Kruskal-Wallis", "unpaired")
    assert row["statistic"] == pytest.approx(7.2) and row["effect_size"] == pytest.approx(0.9)
    assert row["pvalue"] == pytest.approx(stats.kruskal(*groups.values()).pvalue)
    frame = _frame(groups)
    expected = sp.posthoc_dunn(frame, val_col="fit_time_s", group_col="method", p_adjust="holm")
    post = result.posthoc.set_index(["group_a", "group_b"])
    assert post.loc[("a", "c"), "pvalue"] == pytest.approx(expected.loc["a", "c"])
    assert post.loc[("a", "c"), "test"] == "Dunn (Holm)" and post.loc[("a", "c"), "effect_size"] == -1.0


def test_holm_on_known_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert cmp.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = cmp.holm([0.01, np.nan, 0.04])  # an untested metric is not a test
    assert np.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.02, 0.04])


def test_holm_agrees_with_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.concatenate([np.random.default_rng(0).uniform(0, 0.2, 25), [0.01, 0.01, 0.5, 1.0, 0.0]])
    assert cmp.holm(p) == pytest.approx(multipletests(p, method="holm")[1])  # one call: it runs gc.collect()


def test_holm_is_applied_across_the_metrics_compared_together():
    rng = np.random.default_rng(0)
    frame = _frame({"a": list(rng.normal(0, 1, 15)), "b": list(rng.normal(1, 1, 15))})
    frame["n_iter"] = rng.normal(0, 1, len(frame))
    result = cmp.compare(frame, ["fit_time_s", "n_iter"])
    assert result.tests["pvalue_holm"].tolist() == pytest.approx(cmp.holm(result.tests["pvalue"]))
    assert "Holm-adjusted over 2 metrics" in _words(result)


def test_two_groups_paired_by_seed_use_wilcoxon_not_mann_whitney():
    rng = np.random.default_rng(0)
    base = rng.normal(5, 2, 12)  # large between-seed spread, small consistent method effect
    result = cmp.compare(_frame({"fastica": list(base + 0.3), "picard": list(base)}), "fit_time_s")
    assert result.tests.iloc[0]["test"] == "Wilcoxon signed-rank" and result.tests.iloc[0]["pvalue"] < 0.001
    unpaired = cmp.compare(_frame({"fastica": list(base + 0.3), "picard": list(base)}), "fit_time_s", blocks=None)
    assert unpaired.tests.iloc[0]["test"] == "Mann-Whitney U" and unpaired.tests.iloc[0]["pvalue"] > 0.3


def test_blocks_are_recording_then_seed_and_incomplete_blocks_are_dropped_and_reported():
    rng = np.random.default_rng(2)
    two = pd.concat([_frame({"a": list(rng.normal(0, 1, 6)), "b": list(rng.normal(0, 1, 6)),
                             "c": list(rng.normal(0, 1, 6))}, recording=r) for r in ("sub-01.fif", "sub-02.fif")])
    full = cmp.compare(two, "fit_time_s")
    assert full.tests.iloc[0]["n"] == 12 and full.blocks == ("raw_file_path", "random_state")
    two.loc[(two.raw_file_path == "sub-02.fif") & (two.random_state == 3) & (two.method == "b"), "state"] = "failed"
    two.loc[(two.raw_file_path == "sub-01.fif") & (two.random_state == 0) & (two.method == "c"), "fit_time_s"] = np.nan
    result = cmp.compare(two, "fit_time_s")
    assert result.tests.iloc[0]["n"] == 10
    gone = result.dropped[result.dropped.metric == "fit_time_s"]
    assert sorted(gone["block"]) == ["raw_file_path=sub-01.fif, random_state=0",
                                     "raw_file_path=sub-02.fif, random_state=3"]
    assert "failed" in result.dropped.loc[result.dropped.metric == "*", "reason"].iloc[0]
    assert "10 complete blocks (2 incomplete block(s) dropped)" in _words(result)


def test_only_blocks_that_exist_count_and_runs_without_a_seed_are_reported():
    rng = np.random.default_rng(4)
    a = _frame({"a": list(rng.normal(0, 1, 4)), "b": list(rng.normal(0, 1, 4))}, recording="sub-01.fif")
    b = _frame({"a": list(rng.normal(0, 1, 4)), "b": list(rng.normal(0, 1, 4))}, recording="sub-02.fif")
    b["random_state"] += 10  # other seeds on the second recording: (sub-01, 10) is no block at all
    frame = pd.concat([a, b])  # index 0..7 twice, as when two tables are stacked
    frame["random_state"] = frame["random_state"].where(np.arange(len(frame)) != 0)  # the first run has no seed
    result = cmp.compare(frame, "fit_time_s")
    assert result.tests.iloc[0]["n"] == 7
    assert result.dropped["reason"].tolist() == ["no block: a blocking value is missing",
                                                 "no value for this group in the block"]


def test_a_block_with_two_runs_of_one_group_is_refused_with_what_to_do():
    frame = _frame({"a": [1.0, 2.0], "b": [3.0, 4.0]}, seeds={"a": [0, 0], "b": [0, 1]})
    with pytest.raises(cmp.AmbiguousRuns, match=r"random_state=0 holds 2 runs of method='a' \(0, 1\): the same set "
                                                r"ran more than once.*pass duplicates='latest' or 'average'") as err:
        cmp.compare(frame, "fit_time_s")
    assert err.value.exit_code == 2
    told = str(err.value.told_as("labkit compare"))
    assert "Keep the newest run of each: labkit compare --latest; or average them: labkit compare " in told
    frame["n_components"] = [15, 20, 20, 20]  # the two runs are of different sets: say which parameter differs
    with pytest.raises(cmp.AmbiguousRuns, match=r"which differ in n_components \(15, 20\); filter the table to one"):
        cmp.compare(frame, "fit_time_s")
    with pytest.raises(ValueError, match="'duplicates' parameter: got 'first'"):
        cmp.compare(frame, "fit_time_s", duplicates="first")


def test_a_set_run_twice_is_compared_by_its_newest_run_or_its_mean():
    rng = np.random.default_rng(5)
    first = _frame({"a": list(rng.normal(0, 1, 8)), "b": list(rng.normal(1, 1, 8))}).assign(
        finished="2026-01-01T10:00:00+00:00")
    again = _frame({"a": list(rng.normal(0, 1, 8)), "b": list(rng.normal(1, 1, 8))}).assign(
        finished="2026-01-02T10:00:00+00:00")
    both = pd.concat([again.iloc[:8], first, again.iloc[8:]])  # the table's order says nothing of which is newer
    latest = cmp.compare(both, "fit_time_s", duplicates="latest")
    alone = cmp.compare(again, "fit_time_s")
    assert latest.tests.iloc[0]["pvalue"] == alone.tests.iloc[0]["pvalue"] and latest.tests.iloc[0]["n"] == 8
    assert (latest.dropped["reason"].str.contains("an older run of the same set")).sum() == 16
    assert "16 older run(s) of a repeated set left out in 16 block(s)" in _words(latest)
    assert len(latest.runs) == 16 and set(latest.runs["finished"]) == {"2026-01-02T10:00:00+00:00"}  # what is plotted
    mean = cmp.compare(both, "fit_time_s", duplicates="average")
    expected = (first.set_index(["method", "random_state"])["fit_time_s"]
                + again.set_index(["method", "random_state"])["fit_time_s"]) / 2
    medians = mean.groups.set_index("group")["median"]
    assert medians["a"] == pytest.approx(expected["a"].median()) and mean.tests.iloc[0]["n"] == 8
    with pytest.raises(cmp.ComparisonError, match="needs the table's 'finished' column"):
        cmp.compare(both.drop(columns="finished"), "fit_time_s", duplicates="latest")


def test_the_summary_wraps_to_its_width():
    rng = np.random.default_rng(6)
    result = cmp.compare(_frame({"a": list(rng.normal(0, 1, 9)), "b": list(rng.normal(1, 1, 9)),
                                 "c": list(rng.normal(2, 1, 9))}), "fit_time_s")
    for width in (60, 100):
        lines = result.summary(width).splitlines()
        assert max(map(len, lines)) <= width and len(lines) > 2
        assert " ".join(line.strip() for line in lines) == " ".join(result.summary(None).split())


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least two values of 'method'"):
        cmp.compare(_frame({"a": [1.0, 2.0]}), "fit_time_s")
    with pytest.raises(ValueError, match=r"'metrics' parameter: got 'nope'; allowed: a column of the table: method"):
        cmp.compare(_frame({"a": [1.0], "b": [2.0]}), "nope")
    with pytest.raises(ValueError, match="'posthoc' parameter: got 'tukey'; allowed: one of 'nemenyi', 'conover'"):
        cmp.compare(_frame({"a": [1.0], "b": [2.0]}), "fit_time_s", posthoc="tukey")
    with pytest.raises(ValueError, match="'alpha' parameter: got 5; allowed: a number between 0 and 1"):
        cmp.compare(_frame({"a": [1.0], "b": [2.0]}), "fit_time_s", alpha=5)
    with pytest.raises(ValueError, match="'by' parameter: got 'random_state'; allowed: a column other than the"):
        cmp.compare(_frame({"a": [1.0], "b": [2.0]}), "fit_time_s", by="random_state")
    with pytest.raises(ValueError, match="metric 'state' has no numeric values"):
        cmp.compare(_frame({"a": [1.0], "b": [2.0]}), "state")


def test_untestable_data_say_why_instead_of_a_p_value():
    one = cmp.compare(_frame({"a": [1.0], "b": [2.0]}), "fit_time_s")
    assert np.isnan(one.tests.iloc[0]["pvalue"]) and "1 complete block(s)" in _words(one)
    ties = cmp.compare(_frame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}), "fit_time_s")
    assert "no differences within any block" in _words(ties)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=2, max_size=12))
def test_any_paired_numbers_give_a_p_value_in_range_or_a_reason(rows):
    groups = {g: [r[i] for r in rows] for i, g in enumerate("abc")}
    row = cmp.compare(_frame(groups), "fit_time_s").tests.iloc[0]
    if np.isnan(row["pvalue"]):
        assert row["note"].startswith("not tested")
    else:
        assert 0 <= row["pvalue"] <= 1 and 0 <= row["effect_size"] <= 1


def test_effect_sizes_have_the_documented_direction():
    assert cmp.matched_pairs_rank_biserial([2, 3, 4], [1, 1, 1]) == 1.0
    assert cmp.rank_biserial([1, 2], [3, 4]) == -1.0 and cmp.rank_biserial([1, 2], [1, 2]) == 0.0
    assert cmp.magnitude("Kendall's W", 0.35) == "medium" and cmp.magnitude("epsilon squared", 0.005) == "negligible"


def test_plots_return_figures_with_the_expected_axes():
    rng = np.random.default_rng(0)
    frame = _frame({"picard": list(rng.normal(1, 0.1, 10)), "fastica": list(rng.normal(2, 0.1, 10)),
                    "infomax": list(rng.normal(2.5, 0.1, 10))})
    fig = figures.plot(frame, "fit_time_s")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("method", "fit_time_s")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fastica\n(n=10)", "infomax\n(n=10)", "picard\n(n=10)"]
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert [len(d.get_xdata()) for d in dots] == [10, 10, 10]  # every run, over the boxes
    joins = [line for line in ax.lines if line.get_color() == "0.6"]
    assert len(joins) == 10 and all(len(j.get_xdata()) == 3 for j in joins)  # one line per block through 3 methods
    unpaired = figures.plot(frame.drop(columns="random_state").assign(raw_file_path=range(30)), "fit_time_s").axes[0]
    assert not [line for line in unpaired.lines if line.get_color() == "0.6"]
    fig = figures.cd_diagram(cmp.compare(frame, "fit_time_s"))
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert any(lab.startswith("picard") for lab in labels) and "Nemenyi" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="critical-difference diagram needs"):
        figures.cd_diagram(cmp.compare(frame.drop(columns="random_state"), "fit_time_s"))


def test_statistics_figures_and_sweeps_import_without_each_other():
    """No circle: the statistics need neither sweeps nor figures; sweeps re-exports nothing of them."""
    import subprocess
    import sys

    code = ("import sys, labkit.study.compare, labkit.results.table; "
            "print(sorted(m for m in sys.modules if m.startswith(('labkit.study', 'labkit.runners'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['labkit.study', 'labkit.study.compare']"
    from labkit.study import sweeps

    assert not {"compare", "plot", "table", "runs_table"} & set(vars(sweeps))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.sampled_from(["r1.fif", "r2.fif"]),
                          st.one_of(st.none(), st.integers(0, 3)), st.sampled_from(["succeeded", "failed"]),
                          st.one_of(st.none(), st.floats(-10, 10), st.just("n/a"))), max_size=30))
def test_any_table_gives_results_or_a_labkit_error(rows):
    """Missing groups, seeds and values, failed runs, text in a metric: tidy results or an error that says why."""
    from labkit.errors import LabkitError

    frame = pd.DataFrame(rows, columns=["method", "raw_file_path", "random_state", "state", "fit_time_s"])
    try:
        result = cmp.compare(frame, "fit_time_s")
    except LabkitError as err:
        assert "fit_time_s" in str(err) or "method" in str(err) or "block" in str(err)
        return
    row = result.tests.iloc[0]
    assert np.isnan(row["pvalue"]) or 0 <= row["pvalue"] <= 1
    assert _words(result).count("fit_time_s:") == 1
    assert set(result.dropped["reason"]) <= {"no value", "no value for this group in the block",
                                             "no block: a blocking value is missing"} | {
        r for r in result.dropped["reason"] if r.startswith("run ")}
