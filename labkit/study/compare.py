"""Comparing runs: one table of every run, rank tests chosen by the design, effect sizes, Holm, and figures.

The design decides the test, not the data's look:

* **paired** when the groups share blocks. A block is one recording and one seed,
  ``(raw_file_path, random_state)``: runs in a block saw the same data and started
  from the same random state, so differences within a block are the methods' own.
  Blocks missing a group (a failed run, a missing metric) are dropped and reported.
  Two groups: Wilcoxon signed-rank, effect size the matched-pairs rank-biserial
  correlation (Kerby 2014). More: Friedman, effect size Kendall's W, then Nemenyi
  (default, Demšar 2006) or Conover post-hoc tests (scikit-posthocs).
* **unpaired** only when there are no shared blocks (no seed column, no common
  seeds): Mann-Whitney U with the rank-biserial correlation (Wendt 1972), or
  Kruskal-Wallis with epsilon squared (Tomczak & Tomczak 2014), then Dunn's test
  (Holm-adjusted within the metric).

Omnibus p-values are Holm-corrected across the metrics compared together
(:func:`holm`). Post-hoc p-values control the error within a metric.
Results are tidy DataFrames with a plain-words :meth:`Comparison.summary`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from labkit.errors import LabkitError, ParameterError
from labkit.results.folder import RunResult, list_runs, load_run

#: the blocking factor: recording first, then seed
BLOCKS: tuple[str, ...] = ("raw_file_path", "random_state")
#: what ``labkit compare`` tests when no metric is named (those with values)
DEFAULT_METRICS = ("fit_time_s", "blink_match_r", "heartbeat_match_r", "amari_index")
POSTHOC = ("nemenyi", "conover")


class ComparisonError(LabkitError, ValueError):
    """The runs cannot be compared as asked (too few groups, no values, an ambiguous block); says what to do."""


# --------------------------------------------------------------------------- the table


def table(runs: pd.DataFrame | str | os.PathLike | Iterable[RunResult], *, quality: bool = True) -> pd.DataFrame:
    """Every run's parameters, metrics and provenance, plus ground-truth quality where the recording has it.

    ``runs`` is a base directory, RunResults, or a table with a ``path`` column (what
    ``sweeps.run_sweep`` returns, or its CSV read back): such a table keeps its rows
    and columns (a set that never ran has no path and gets no extra values).
    Provenance: see :func:`provenance_row`.
    """
    from labkit.study.sweeps import table as runs_frame

    if isinstance(runs, pd.DataFrame):
        if "path" not in runs:
            raise ComparisonError("a table of runs needs its 'path' column to find the result folders")
        frame = runs
        keys = list(frame["path"].dropna().unique())
        found = [load_run(p) for p in keys]
    else:
        found = list_runs(runs) if isinstance(runs, (str, os.PathLike)) else list(runs)
        frame = runs_frame(found)
        keys = [str(f.path) for f in found]
    if frame.empty:
        return frame
    extra = pd.DataFrame([provenance_row(f) for f in found], index=keys)
    if quality:
        from labkit.study.quality import quality_table

        extra = extra.join(quality_table(found).set_axis(keys))
    out = frame.join(extra[[c for c in extra.columns if c not in frame.columns]], on="path")
    if quality and "quality_note" in out:
        out.loc[out["path"].isna(), "quality_note"] = "no result folder: the set did not run"
    return out


def provenance_row(found: RunResult) -> dict[str, Any]:
    """Where a result came from: the set's digest, the recording's content fingerprint, software versions,
    image, whether its filtered data came from the cache, host, and when it finished (:mod:`labkit.results.provenance` records them; older runs have the metrics' copy)."""
    from labkit.results.provenance import recorded

    prov = recorded(found.path) or {}
    versions = {**(found.metrics.get("versions") or {}), **(prov.get("versions") or {})}
    return {
        "digest": found.params.digest if found.params is not None else None,
        "recording_sha256": prov.get("recording_sha256"),
        "labkit_version": versions.get("labkit"),
        "mne_version": versions.get("mne"),
        "picard_version": versions.get("python-picard"),
        "python_version": versions.get("python"),
        "image": prov.get("image"),
        "preprocessing": found.metrics.get("preprocessing"),  # hit / stored / computed (labkit.analysis.cache)
        "host": found.metrics.get("host") or found.status.get("host"),
        "finished": found.status.get("finished"),
    }


# --------------------------------------------------------------------------- statistics


@dataclass
class Comparison:
    """The outcome of :func:`compare`: tidy tables and a plain-words summary."""

    by: str
    blocks: tuple[str, ...] | None
    design: str  # "paired" or "unpaired"
    tests: pd.DataFrame  # one row per metric: omnibus test, p, Holm-adjusted p, effect size
    posthoc: pd.DataFrame  # one row per metric and pair of groups
    groups: pd.DataFrame  # one row per metric and group: n, median, quartiles, mean rank
    dropped: pd.DataFrame  # blocks or runs left out, per metric, and why
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What was tested, why that test, what came out, in words."""
        lines = [f"Groups by {self.by!r}. " + _design_words(self)] + self.notes
        for rec in self.tests.to_dict("records"):
            lines.append(_metric_words(self, rec))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        cols = ["metric", "test", "n", "statistic", "pvalue", "pvalue_holm", "effect_size", "effect_measure",
                "magnitude"]
        fmt = {"index": False, "float_format": lambda v: f"{v:.3g}"}
        pairs = self.posthoc.to_html(**fmt) if len(self.posthoc) else ""
        return (f"<pre style='white-space:pre-wrap'>{html.escape(self.summary())}</pre>"
                + self.tests[[c for c in cols if c in self.tests]].to_html(**fmt) + pairs)


def compare(frame: pd.DataFrame, metrics: str | Sequence[str], by: str = "method", *,
            blocks: Sequence[str] | None = BLOCKS, posthoc: str = "nemenyi", alpha: float = 0.05) -> Comparison:
    """Test whether each metric differs between the groups of ``by``, with the test the design calls for.

    Only succeeded runs count (when the table has a ``state`` column). ``blocks=None``
    declares the runs unpaired. Raises ValueError naming the problem for fewer than
    two groups, an unknown column, or a block holding two runs of one group.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    columns = "a column of the table: " + ", ".join(map(str, frame.columns))
    for arg, name in [("by", by), *(("metrics", m) for m in metrics)]:
        if name not in frame.columns:
            raise ParameterError(arg, name, columns)
    if posthoc not in POSTHOC:
        raise ParameterError("posthoc", posthoc, POSTHOC)
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ParameterError("alpha", alpha, "a number between 0 and 1")
    if blocks and by in blocks:
        raise ParameterError("by", by, f"a column other than the blocking columns {tuple(blocks)}")
    dropped: list[dict[str, Any]] = []
    ok = frame
    if "state" in frame.columns:
        ok = frame[frame["state"] == "succeeded"]
        for idx, r in frame[frame["state"] != "succeeded"].iterrows():
            dropped.append({"metric": "*", "block": _block_label(r, blocks), "group": r[by],
                            "reason": f"run {idx} {r['state']}"})
    for idx, r in ok[ok[by].isna()].iterrows():
        dropped.append({"metric": "*", "block": _block_label(r, blocks), "group": None,
                        "reason": f"run {idx}: no {by}"})
    ok = ok.dropna(subset=[by])
    names = sorted(ok[by].unique(), key=str)
    if len(names) < 2:
        raise ComparisonError(f"compare needs at least two values of {by!r} among succeeded runs; found {names}")
    design, notes = _design(ok, by, blocks)
    block_cols = tuple(blocks) if design == "paired" and blocks else None
    tests, post, groups = [], [], []
    for metric in metrics:
        values = pd.to_numeric(ok[metric], errors="coerce")
        if values.notna().sum() == 0:
            raise ComparisonError(f"metric {metric!r} has no numeric values among succeeded runs")
        data = ok.assign(**{metric: values})
        if block_cols:
            rec, pairs, grp, gone = _paired(data, metric, by, block_cols, names, posthoc)
        else:
            rec, pairs, grp, gone = _unpaired(data, metric, by, names)
        tests.append({"metric": metric, **rec})
        post += [{"metric": metric, **p} for p in pairs]
        groups += [{"metric": metric, **g} for g in grp]
        dropped += [{"metric": metric, **d} for d in gone]
    tests_df = pd.DataFrame(tests)
    tests_df.insert(tests_df.columns.get_loc("pvalue") + 1, "pvalue_holm", holm(tests_df["pvalue"]))
    tests_df["significant"] = tests_df["pvalue_holm"] < alpha
    return Comparison(by=by, blocks=block_cols, design=design, tests=tests_df,
                      posthoc=pd.DataFrame(post, columns=_POSTHOC_COLUMNS),
                      groups=pd.DataFrame(groups), alpha=alpha, notes=notes,
                      dropped=pd.DataFrame(dropped, columns=["metric", "block", "group", "reason"]))


_POSTHOC_COLUMNS = ["metric", "group_a", "group_b", "test", "pvalue", "effect_size", "effect_measure",
                    "median_difference", "higher"]


def holm(pvalues: Sequence[float] | pd.Series) -> np.ndarray:
    """Holm's (1979) step-down adjustment; NaN p-values stay NaN and do not count as tests.

    Our own four lines rather than statsmodels' ``multipletests``, which gives the same
    numbers (tests/test_compare.py checks) but runs a full ``gc.collect()`` on every
    Holm call (0.3 s each here, more in a notebook holding MNE data).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


def _design(ok: pd.DataFrame, by: str, blocks: Sequence[str] | None) -> tuple[str, list[str]]:
    """Paired when the groups share blocks; unpaired when there are none to share."""
    if not blocks:
        return "unpaired", ["Unpaired by request (blocks=None)."]
    missing = [b for b in blocks if b not in ok.columns]
    if missing:
        return "unpaired", [f"No {', '.join(missing)} column: the runs cannot be paired, so unpaired tests are used."]
    keyed = ok.dropna(subset=list(blocks))
    counts = keyed.groupby([*blocks, by], dropna=False).size()
    if (counts > 1).any():
        (*block, group), n = next((k, v) for k, v in counts.items() if v > 1)
        raise ComparisonError(
            f"block {dict(zip(blocks, block, strict=True))} holds {n} succeeded runs of {by}={group!r}; a block must "
            f"hold one run per group: filter the table, or add the parameter that differs to blocks=")
    shared = keyed.groupby(list(blocks))[by].nunique()
    if not (shared >= 2).any():
        return "unpaired", [f"No block ({', '.join(blocks)}) holds two groups: the runs are unpaired."]
    return "paired", []


def _paired(data: pd.DataFrame, metric: str, by: str, blocks: tuple[str, ...], names: list[Any],
            posthoc: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    import scikit_posthocs as sp
    from scipy import stats

    keyed = data[list(blocks)].notna().all(axis=1).to_numpy()
    gone = [{"block": _block_label(r, blocks), "group": r[by], "reason": "no block: a blocking value is missing"}
            for _, r in data[~keyed].iterrows()]
    # only blocks that exist (a pivot_table would make every recording x seed combination)
    wide = data[keyed].set_index([*blocks, by])[metric].unstack(by).reindex(columns=names)
    complete = wide.dropna()
    gone += [{"block": _label(b, blocks), "group": ", ".join(map(str, row.index[row.isna()])),
              "reason": "no value for this group in the block"} for b, row in wide[wide.isna().any(axis=1)].iterrows()]
    n, k = len(complete), len(names)
    ranks = complete.rank(axis=1)
    grp = [_describe(complete[g], g, ranks[g].mean()) for g in names]
    rec: dict[str, Any] = {"design": "paired", "blocking": ", ".join(blocks), "n_groups": k, "n": n}
    if n < 2:
        return {**rec, **_untestable("paired", k, f"{n} complete block(s); at least 2 are needed")}, [], grp, gone
    if k == 2:
        a, b = (complete[g].to_numpy(float) for g in names)
        d = a - b
        if not np.any(d):
            return {**rec, **_untestable("paired", k, "no differences within any block")}, [], grp, gone
        res = stats.wilcoxon(a, b)
        pairs = [_pair(names[0], names[1], "Wilcoxon signed-rank", res.pvalue, a, b, True, ranks.mean())]
        rec.update(test="Wilcoxon signed-rank", statistic=float(res.statistic), pvalue=float(res.pvalue),
                   effect_size=pairs[0]["effect_size"], effect_measure=pairs[0]["effect_measure"])
    else:
        if np.all(complete.to_numpy(float) == complete.to_numpy(float)[:, :1]):
            return {**rec, **_untestable("paired", k, "every group ties in every block")}, [], grp, gone
        res = stats.friedmanchisquare(*(complete[g].to_numpy(float) for g in names))
        rec.update(test="Friedman", statistic=float(res.statistic), pvalue=float(res.pvalue),
                   effect_size=kendalls_w(float(res.statistic), n, k), effect_measure="Kendall's W")
        matrix = (sp.posthoc_nemenyi_friedman(complete.to_numpy(float)) if posthoc == "nemenyi"
                  else sp.posthoc_conover_friedman(complete.to_numpy(float)))
        label = "Nemenyi" if posthoc == "nemenyi" else "Conover (Holm)"
        pairs = [_pair(ga, names[j], label, matrix.iloc[i, j], complete[ga], complete[names[j]], True, ranks.mean())
                 for i, ga in enumerate(names) for j in range(i + 1, k)]
        if posthoc == "conover":
            _holm_pairs(pairs)
    rec["magnitude"] = magnitude(rec["effect_measure"], rec["effect_size"])
    return rec, pairs, grp, gone


def _unpaired(data: pd.DataFrame, metric: str, by: str, names: list[Any]
              ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    import scikit_posthocs as sp
    from scipy import stats

    valid = data.dropna(subset=[metric])
    gone = [{"block": str(i), "group": r[by], "reason": "no value"} for i, r in data[data[metric].isna()].iterrows()]
    mean_ranks = valid[metric].rank().groupby(valid[by]).mean()
    samples = {g: valid.loc[valid[by] == g, metric].to_numpy(float) for g in names}
    grp = [_describe(pd.Series(samples[g]), g, mean_ranks.get(g, np.nan)) for g in names]
    k, n = len(names), len(valid)
    rec: dict[str, Any] = {"design": "unpaired", "blocking": "", "n_groups": k, "n": n}
    small = [g for g in names if len(samples[g]) < 1]
    if small or n < 3:
        return {**rec, **_untestable("unpaired", k, f"groups without values: {small}" if small else "fewer than "
                                     "3 runs")}, [], grp, gone
    if np.all(valid[metric].to_numpy(float) == valid[metric].iloc[0]):
        return {**rec, **_untestable("unpaired", k, "every run has the same value")}, [], grp, gone
    if k == 2:
        a, b = samples[names[0]], samples[names[1]]
        res = stats.mannwhitneyu(a, b, alternative="two-sided")
        pairs = [_pair(names[0], names[1], "Mann-Whitney U", res.pvalue, a, b, False, mean_ranks)]
        rec.update(test="Mann-Whitney U", statistic=float(res.statistic), pvalue=float(res.pvalue),
                   effect_size=pairs[0]["effect_size"], effect_measure=pairs[0]["effect_measure"])
    else:
        res = stats.kruskal(*samples.values())
        rec.update(test="Kruskal-Wallis", statistic=float(res.statistic), pvalue=float(res.pvalue),
                   effect_size=epsilon_squared(float(res.statistic), n), effect_measure="epsilon squared")
        matrix = sp.posthoc_dunn(valid, val_col=metric, group_col=by, sort=False)
        pairs = [_pair(ga, gb, "Dunn (Holm)", matrix.loc[ga, gb], samples[ga], samples[gb], False, mean_ranks)
                 for i, ga in enumerate(names) for gb in names[i + 1:]]
        _holm_pairs(pairs)
    rec["magnitude"] = magnitude(rec["effect_measure"], rec["effect_size"])
    return rec, pairs, grp, gone


def _pair(ga: Any, gb: Any, test: str, pvalue: float, a: Any, b: Any, paired: bool,
          mean_ranks: pd.Series) -> dict[str, Any]:
    """One row of the pairwise table: p, a rank effect size and the size of the difference in the metric's units.

    ``median_difference`` is a - b: the median within-block difference (paired) or the
    Hodges-Lehmann shift, the median of all differences between the groups (unpaired).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        effect, measure, diff = matched_pairs_rank_biserial(a, b), "matched-pairs rank-biserial r", np.median(a - b)
    else:
        effect, measure, diff = rank_biserial(a, b), "rank-biserial r", np.median(a[:, None] - b[None, :])
    ra, rb = mean_ranks[ga], mean_ranks[gb]
    return {"group_a": ga, "group_b": gb, "test": test, "pvalue": float(pvalue), "effect_size": effect,
            "effect_measure": measure, "median_difference": float(diff),
            "higher": ga if ra > rb else gb if rb > ra else None}


def _holm_pairs(pairs: list[dict[str, Any]]) -> None:
    """Holm across one metric's pairwise p-values (what scikit-posthocs' ``p_adjust="holm"`` does)."""
    for pair, p in zip(pairs, holm([q["pvalue"] for q in pairs]), strict=True):
        pair["pvalue"] = float(p)


def _untestable(design: str, k: int, why: str) -> dict[str, Any]:
    test = {("paired", 2): "Wilcoxon signed-rank", ("unpaired", 2): "Mann-Whitney U"}.get(
        (design, k), "Friedman" if design == "paired" else "Kruskal-Wallis")
    return {"test": test, "statistic": np.nan, "pvalue": np.nan, "effect_size": np.nan, "effect_measure": "",
            "magnitude": "", "note": f"not tested: {why}"}


def _describe(values: pd.Series, group: Any, mean_rank: float) -> dict[str, Any]:
    v = values.astype(float)
    return {"group": group, "n": int(v.notna().sum()), "median": v.median(), "q1": v.quantile(0.25),
            "q3": v.quantile(0.75), "mean": v.mean(), "mean_rank": float(mean_rank)}


def _label(block: Any, blocks: Sequence[str]) -> str:
    block = block if isinstance(block, tuple) else (block,)
    return ", ".join(f"{k}={v}" for k, v in zip(blocks, block, strict=True))


def _block_label(row: pd.Series, blocks: Sequence[str] | None) -> str:
    return ", ".join(f"{b}={row[b]}" for b in (blocks or ()) if b in row.index)


# --------------------------------------------------------------------------- effect sizes


def matched_pairs_rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """Kerby's (2014) matched-pairs rank-biserial r of ``a - b``: (R+ - R-) / (R+ + R-), zero differences dropped.

    +1: ``a`` is larger in every pair; -1: smaller in every pair.
    """
    from scipy.stats import rankdata

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return float("nan")
    r = rankdata(np.abs(d))
    return float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """Wendt's (1972) rank-biserial r = 2 U_a / (n_a n_b) - 1: +1 when every ``a`` exceeds every ``b``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    u = (a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum()
    return float(2 * u / (a.size * b.size) - 1)


def kendalls_w(chi2: float, n_blocks: int, k: int) -> float:
    """Kendall's W from Friedman's chi-square: chi2 / (n (k - 1)); 1 when every block ranks the groups alike."""
    return float(chi2 / (n_blocks * (k - 1)))


def epsilon_squared(h: float, n: int) -> float:
    """Epsilon squared for Kruskal-Wallis: H / ((n^2 - 1) / (n + 1)) = H / (n - 1) (Tomczak & Tomczak 2014)."""
    return float(h / (n - 1))


#: conventional thresholds (small, medium, large): Cohen 1988 for r and W, Tomczak & Tomczak 2014 for epsilon^2
_MAGNITUDES = {"Kendall's W": (0.1, 0.3, 0.5), "matched-pairs rank-biserial r": (0.1, 0.3, 0.5),
               "rank-biserial r": (0.1, 0.3, 0.5), "epsilon squared": (0.01, 0.08, 0.26)}


def magnitude(measure: str, value: float) -> str:
    """'negligible', 'small', 'medium' or 'large' by the measure's conventional thresholds."""
    if measure not in _MAGNITUDES or not np.isfinite(value):
        return ""
    small, medium, large = _MAGNITUDES[measure]
    v = abs(value)
    return "large" if v >= large else "medium" if v >= medium else "small" if v >= small else "negligible"


# --------------------------------------------------------------------------- words


def _design_words(c: Comparison) -> str:
    if c.design == "paired":
        return (f"Paired design: a block is one ({', '.join(c.blocks or ())}), so groups are compared within "
                "blocks (Wilcoxon signed-rank for two groups, Friedman with post-hoc tests for more).")
    return "Unpaired design: Mann-Whitney U for two groups, Kruskal-Wallis with Dunn's post-hoc tests for more."


def _metric_words(c: Comparison, rec: dict[str, Any]) -> str:
    m = rec["metric"]
    unit = "complete blocks" if rec["design"] == "paired" else "runs"
    gone = c.dropped[c.dropped["metric"] == m]
    dropped = f" ({len(gone)} incomplete block(s) dropped)" if rec["design"] == "paired" and len(gone) else ""
    head = f"{m}: {rec['n']} {unit}{dropped}, {rec['n_groups']} groups. "
    if not np.isfinite(rec.get("pvalue", np.nan)):
        return head + f"{rec['test']}: {rec.get('note', 'not tested')}."
    n_tests = int(np.isfinite(c.tests["pvalue"]).sum())
    holm_words = f", Holm-adjusted over {n_tests} metrics p = {rec['pvalue_holm']:.3g}" if n_tests > 1 else ""
    verdict = "differs between groups" if rec["pvalue_holm"] < c.alpha else "no significant difference"
    text = (f"{head}{rec['test']}: statistic = {rec['statistic']:.4g}, p = {rec['pvalue']:.3g}{holm_words} "
            f"-> {verdict} (alpha = {c.alpha}); {rec['effect_measure']} = {rec['effect_size']:.2f} "
            f"({rec['magnitude']}).")
    pairs = c.posthoc[c.posthoc["metric"] == m].to_dict("records")
    if rec["n_groups"] == 2:
        grp = c.groups[c.groups["metric"] == m].set_index("group")
        a, b = grp.index
        text += (f" Medians: {a} {grp.loc[a, 'median']:.4g}, {b} {grp.loc[b, 'median']:.4g}; "
                 f"{_difference_words(pairs[0])}.")
    elif rec["pvalue_holm"] < c.alpha:
        sig = [f"{_difference_words(p)}, p = {p['pvalue']:.3g}" for p in pairs if p["pvalue"] < c.alpha]
        same = [f"{p['group_a']} vs {p['group_b']}" for p in pairs if p["pvalue"] >= c.alpha]
        text += f" {pairs[0]['test']}: " + "; ".join(sig or ["no pair differs significantly"])
        text += (f"; no significant difference: {', '.join(same)}." if same else ".")
    return text


def _difference_words(pair: dict[str, Any]) -> str:
    """'b higher than a (median difference b - a: 0.0004)', from the side of the higher-ranked group."""
    a, b, diff = pair["group_a"], pair["group_b"], pair["median_difference"]
    if pair["higher"] is None:
        return f"{a} and {b} rank alike (median difference {a} - {b}: {diff:.3g})"
    high, low, signed = (a, b, diff) if pair["higher"] == a else (b, a, -diff)
    return f"{high} higher than {low} (median difference {high} - {low}: {signed:.3g})"


# --------------------------------------------------------------------------- figures


def plot(frame: pd.DataFrame, metric: str, by: str = "method", *, blocks: Sequence[str] | None = BLOCKS):
    """Box plot per group with every run as a dot; a block's runs are joined by a faint line. Returns the figure.

    The lines show what the paired tests compare: each block's change from group to group.
    """
    import matplotlib.pyplot as plt

    ok = frame[frame["state"] == "succeeded"] if "state" in frame.columns else frame
    ok = ok.assign(**{metric: pd.to_numeric(ok[metric], errors="coerce")}).dropna(subset=[metric, by])
    names = sorted(ok[by].unique(), key=str)
    position = {n: i for i, n in enumerate(names, start=1)}
    keys = [b for b in (blocks or ()) if b in ok.columns]
    block_id = ok.groupby(keys, dropna=False).ngroup() if keys else pd.Series(range(len(ok)), index=ok.index)
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, int(block_id.max()) + 1 if len(ok) else 0)
    x = ok[by].map(position) + jitter[block_id.to_numpy()]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.5))
    ax.boxplot([ok.loc[ok[by] == n, metric].to_numpy() for n in names], showfliers=False, widths=0.5,
               medianprops={"color": "black"})
    if keys:
        for _, runs in ok.assign(_x=x).groupby(block_id):
            if len(runs) > 1:
                runs = runs.sort_values("_x")
                ax.plot(runs["_x"], runs[metric], "-", color="0.6", lw=0.6, alpha=0.5)
    for n in names:
        mine = ok[by] == n
        ax.plot(x[mine], ok.loc[mine, metric], "o", ms=4, alpha=0.7, color=f"C{position[n] - 1}")
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={(ok[by] == n).sum()})" for n in names])
    ax.set_xlabel(by)
    ax.set_ylabel(metric)
    fig.tight_layout()
    return fig


def cd_diagram(result: Comparison, metric: str | None = None):
    """Critical-difference diagram (Demšar 2006) from a paired comparison: mean ranks, non-different groups joined.

    Rank 1 is the smallest value of the metric. Uses scikit-posthocs' drawing.
    """
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    metric = metric or result.tests["metric"].iloc[0]
    rec = result.tests.set_index("metric").loc[metric]
    if result.design != "paired" or rec["n_groups"] < 3 or not np.isfinite(rec["pvalue"]):
        raise ComparisonError(f"a critical-difference diagram needs a tested paired comparison of 3 or more groups; "
                         f"{metric!r} was {rec['test']} ({result.design}, {rec['n_groups']} groups)")
    ranks = result.groups[result.groups["metric"] == metric].set_index("group")["mean_rank"]
    pairs = result.posthoc[result.posthoc["metric"] == metric]
    sig = pd.DataFrame(1.0, index=ranks.index, columns=ranks.index)
    for p in pairs.to_dict("records"):
        sig.loc[p["group_a"], p["group_b"]] = sig.loc[p["group_b"], p["group_a"]] = p["pvalue"]
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(ranks) + 1.2))
    sp.critical_difference_diagram(ranks, sig, alpha=result.alpha, ax=ax)
    ax.set_title(f"{metric}: mean rank (1 = smallest), {pairs['test'].iloc[0]} at alpha = {result.alpha}")
    fig.tight_layout()
    return fig


def topomap_grid(runs: pd.DataFrame | Iterable[RunResult], by: str = "method", sources: Sequence[str] | None = None):
    """The blink and heartbeat component of each run side by side (first row: the ground truth, if any).

    ``runs`` is a table (the first succeeded run of each ``by`` group is shown, lowest
    seed first) or RunResults. Components are matched to the true sources when the
    recording has ground truth, else to the EOG/ECG channels by MNE's scores; signs are
    flipped to agree with the first row, and each map is scaled to its own maximum.
    """
    import matplotlib.pyplot as plt
    import mne

    from labkit.study import quality

    sources = list(sources or quality.MATCHED_SOURCES)
    unknown = [s for s in sources if s not in quality.MATCHED_SOURCES]
    if unknown:
        raise ParameterError("sources", unknown, quality.MATCHED_SOURCES)
    found = _one_run_per_group(runs, by) if isinstance(runs, pd.DataFrame) else [(r.run_id, r) for r in runs]
    if not found:
        raise ComparisonError("no succeeded runs to draw")
    rows: list[tuple[str, Any, list[tuple[np.ndarray | None, str]]]] = []
    reference: list[np.ndarray | None] = [None] * len(sources)
    memo: dict[Any, Any] = {}  # recordings read and filtered once for every run
    truth_row = _truth_row(found[0][1], sources)
    if truth_row is not None:
        info, maps = truth_row
        rows.append(("ground truth", info, [(m, "") for m in maps]))
        reference = list(maps)
    for label, run in found:
        ica = run.read_ica()
        comps = ica.get_components()
        matched = _matched_components(run, sources, memo)
        cells = []
        for i, (idx, note) in enumerate(matched):
            if idx is None:
                cells.append((None, note))
                continue
            m = comps[:, idx]
            if reference[i] is not None and len(reference[i]) == len(m) and np.dot(m, reference[i]) < 0:
                m = -m
            reference[i] = m if reference[i] is None else reference[i]
            cells.append((m, f"IC{idx:03d} {note}"))
        rows.append((str(label), ica.info, cells))
    fig, axes = plt.subplots(len(rows), len(sources), figsize=(2.2 * len(sources) + 0.8, 2.2 * len(rows)),
                             squeeze=False)
    for r, (label, info, cells) in enumerate(rows):
        for c, (values, note) in enumerate(cells):
            ax = axes[r, c]
            if values is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=7, wrap=True, transform=ax.transAxes)
            else:
                mne.viz.plot_topomap(values / np.abs(values).max(), info, axes=ax, show=False, vlim=(-1, 1),
                                     cmap="RdBu_r")
                ax.set_xlabel(note, fontsize=7)
            if r == 0:
                ax.set_title(sources[c])
            if c == 0:
                ax.text(-0.15, 0.5, label, rotation=90, ha="right", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def save_figures(frame: pd.DataFrame, result: Comparison, out_dir: str | os.PathLike) -> list[Path]:
    """Every figure for a comparison as PNG in ``out_dir``: a box plot per metric, a critical-difference
    diagram per metric that has one, and the topomap grid; returns the paths written."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {f"box_{m}.png": lambda m=m: plot(frame, m, result.by) for m in result.tests["metric"]}
    for rec in result.tests.to_dict("records"):
        if result.design == "paired" and rec["n_groups"] >= 3 and np.isfinite(rec["pvalue"]):
            figures[f"cd_{rec['metric']}.png"] = lambda m=rec["metric"]: cd_diagram(result, m)
    if "path" in frame.columns:
        figures["topomaps.png"] = lambda: topomap_grid(frame, result.by)
    written = []
    for name, draw in figures.items():
        fig = draw()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)
    return written


def _one_run_per_group(frame: pd.DataFrame, by: str) -> list[tuple[Any, RunResult]]:
    ok = frame[frame["state"] == "succeeded"] if "state" in frame.columns else frame
    order = [c for c in BLOCKS if c in ok.columns]
    ok = ok.sort_values(order) if order else ok
    return [(name, load_run(group["path"].iloc[0])) for name, group in ok.groupby(by, sort=True)]


def _truth_row(run: RunResult, sources: list[str]) -> tuple[Any, list[np.ndarray]] | None:
    """The true topographies of ``sources`` over the first run's channels, if its recording has ground truth."""
    from labkit.analysis.datasets import load_truth
    from labkit.errors import LabkitError

    if run.params is None:
        return None
    try:
        truth = load_truth(run.params.replace(base_dir=str(run.path.parent)).raw_path())
    except (FileNotFoundError, LabkitError):
        return None
    ica = run.read_ica()
    names, rows = list(truth["source_names"]), [list(truth["ch_names"]).index(c) for c in ica.ch_names
                                                if c in truth["ch_names"]]
    if len(rows) != len(ica.ch_names):
        return None
    return ica.info, [truth["mixing"][rows, names.index(s)] for s in sources]


def _matched_components(run: RunResult, sources: list[str], memo: dict[Any, Any]) -> list[tuple[int | None, str]]:
    """Each source's component: by ground truth when there is one, else by MNE's EOG (blink) / ECG (heartbeat) score."""
    from labkit.study import quality

    q = quality.run_quality(run, _data=memo)
    if not q.get("quality_note"):
        return [(int(q[f"{s}_component"]), f"r={q[f'{s}_match_r']:.2f}") for s in sources]
    channel = {"blink": "eog", "heartbeat": "ecg"}
    out: list[tuple[int | None, str]] = []
    for s in sources:
        scores = run.metrics.get(f"{channel.get(s, '')}_scores")
        if not scores:
            out.append((None, f"no {s} match: {q['quality_note']}"))
            continue
        best = np.nanmax(np.abs(np.atleast_2d(np.asarray(scores, dtype=float))), axis=0)
        idx = int(np.nanargmax(best))
        out.append((idx, f"{channel[s].upper()} score {best[idx]:.2f}"))
    return out


__all__ = ["BLOCKS", "DEFAULT_METRICS", "Comparison", "ComparisonError", "table", "provenance_row", "compare", "holm",
           "matched_pairs_rank_biserial", "rank_biserial", "kendalls_w", "epsilon_squared", "magnitude", "plot",
           "cd_diagram", "topomap_grid", "save_figures"]
