"""Comparing runs statistically: rank tests chosen by the design, effect sizes, Holm, in words.

The design decides the test, not the data's look:

* **paired** when the groups share blocks. A block is one recording and one seed,
  ``(raw_file_path, random_state)``: runs in a block saw the same data and started
  from the same random state, so differences within a block are the methods' own.
  Blocks missing a group (a failed run, a missing metric) are dropped and reported.
  A block holding one group twice (a set run again: ``labkit sweep --force``) is refused
  unless ``duplicates`` is ``"latest"`` (the newest run) or ``"average"`` (their mean).
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

The table compared is :func:`labkit.study.quality.comparison_table` (every run, its
provenance and ground-truth quality); the figures are in :mod:`labkit.study.figures`.
"""

from __future__ import annotations

import shlex
import textwrap
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from labkit.errors import ExitCode, LabkitError, ParameterError
from labkit.results.table import varying

#: the blocking factor: recording first, then seed
BLOCKS: tuple[str, ...] = ("raw_file_path", "random_state")
#: what ``labkit compare`` tests when no metric is named (those with values)
DEFAULT_METRICS = ("fit_time_s", "blink_match_r", "heartbeat_match_r", "amari_index")
POSTHOC = ("nemenyi", "conover")
#: what to do with a block holding two runs of one group: refuse, keep the newest, average them
DUPLICATES = ("refuse", "latest", "average")
#: how wide :meth:`Comparison.summary` wraps its text: a 100-column terminal
SUMMARY_WIDTH = 100


class ComparisonError(LabkitError, ValueError):
    """The runs cannot be compared as asked (too few groups, no values, an ambiguous block); says what to do."""


class AmbiguousRuns(ComparisonError):
    """Runs that must not be compared together as they are; ``ways`` out: (what it does, its ``labkit compare``
    arguments), told as commands by :meth:`told_as`; ``str()`` words it for Python."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problem: str, python: str, ways: Sequence[tuple[str, Sequence[str]]]) -> None:
        self.problem, self.python, self.ways = problem, python, [(w, list(a)) for w, a in ways]
        super().__init__(f"{problem}; {python}")

    def told_as(self, command: str) -> "AmbiguousRuns":
        """The message with each way out as the full command to run (``command``: what the user typed)."""
        ways = "; or ".join(f"{why}: {command} {shlex.join(args)}" for why, args in self.ways)
        self.args = (f"{self.problem}. {ways[:1].upper()}{ways[1:]}",)
        return self


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
    runs: pd.DataFrame | None = None  # the succeeded runs compared: one per block and group (see ``duplicates``)
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)

    def summary(self, width: int | None = SUMMARY_WIDTH) -> str:
        """What was tested, why that test, what came out, in words, wrapped to fit ``width`` columns (None: a
        line per paragraph)."""
        lines = [f"Groups by {self.by!r}. " + _design_words(self), *self.notes,
                 *(_metric_words(self, rec) for rec in self.tests.to_dict("records"))]
        return "\n".join(lines if width is None else (
            textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False) for line in lines))

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        cols = ["metric", "test", "n", "statistic", "pvalue", "pvalue_holm", "effect_size", "effect_measure",
                "magnitude"]
        fmt = {"index": False, "float_format": lambda v: f"{v:.3g}"}
        pairs = self.posthoc.to_html(**fmt) if len(self.posthoc) else ""
        return (f"<pre style='white-space:pre-wrap'>{html.escape(self.summary(None))}</pre>"
                + self.tests[[c for c in cols if c in self.tests]].to_html(**fmt) + pairs)


def compare(frame: pd.DataFrame, metrics: str | Sequence[str], by: str = "method", *,
            blocks: Sequence[str] | None = BLOCKS, posthoc: str = "nemenyi", alpha: float = 0.05,
            duplicates: str = "refuse") -> Comparison:
    """Test whether each metric differs between the groups of ``by``, with the test the design calls for.

    Only succeeded runs count (when the table has a ``state`` column). ``blocks=None``
    declares the runs unpaired. Raises ValueError naming the problem for fewer than
    two groups or an unknown column, and :class:`AmbiguousRuns` for a block holding two
    runs of one group unless ``duplicates`` is ``"latest"`` (the newest by the
    ``finished`` column) or ``"average"`` (their mean, for each metric).
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
    if duplicates not in DUPLICATES:
        raise ParameterError("duplicates", duplicates, DUPLICATES)
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
    design, notes, ok, gone = _design(ok, by, blocks, duplicates, metrics)
    dropped += gone
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
    return Comparison(by=by, blocks=block_cols, design=design, tests=tests_df, runs=ok, alpha=alpha, notes=notes,
                      posthoc=pd.DataFrame(post, columns=_POSTHOC_COLUMNS), groups=pd.DataFrame(groups),
                      dropped=pd.DataFrame(dropped, columns=["metric", "block", "group", "reason"]))


_POSTHOC_COLUMNS = ["metric", "group_a", "group_b", "test", "pvalue", "effect_size", "effect_measure",
                    "median_difference", "higher"]


def holm(pvalues: Sequence[float] | pd.Series) -> np.ndarray:
    """Holm's (1979) step-down adjustment; NaN p-values stay NaN and do not count as tests.

    Our own four lines rather than statsmodels' ``multipletests``, which gives the same numbers
    (tests/test_compare.py checks) but runs a full ``gc.collect()`` per call (0.3 s here, more beside MNE data).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


def _design(ok: pd.DataFrame, by: str, blocks: Sequence[str] | None, duplicates: str, metrics: Sequence[str]
            ) -> tuple[str, list[str], pd.DataFrame, list[dict[str, Any]]]:
    """Paired when the groups share blocks; unpaired when there are none to share. A block holds one run per
    group: a set run twice is refused, or resolved as ``duplicates`` says (the runs left out, and why)."""
    if not blocks:
        return "unpaired", ["Unpaired by request (blocks=None)."], ok, []
    missing = [b for b in blocks if b not in ok.columns]
    if missing:
        return ("unpaired", [f"No {', '.join(missing)} column: the runs cannot be paired, so unpaired tests are used."],
                ok, [])
    key = [*blocks, by]
    keyed = ok[ok[list(blocks)].notna().all(axis=1).to_numpy()]
    repeated = keyed[keyed.duplicated(key, keep=False).to_numpy()]
    notes, gone = [], []
    if len(repeated):
        if duplicates == "refuse":
            raise _duplicates_error(repeated, by, tuple(blocks))
        ok, notes, gone = _one_run_per_block(ok, key, duplicates, metrics, repeated)
        keyed = ok[ok[list(blocks)].notna().all(axis=1).to_numpy()]
    shared = keyed.groupby(list(blocks))[by].nunique()
    if not (shared >= 2).any():
        return "unpaired", [*notes, f"No block ({', '.join(blocks)}) holds two groups: the runs are unpaired."], ok, gone
    return "paired", notes, ok, gone


def _duplicates_error(repeated: pd.DataFrame, by: str, blocks: tuple[str, ...]) -> AmbiguousRuns:
    """What a block holding one group twice means (which runs, which parameter differs) and the ways out."""
    from labkit.params import ANALYSIS_FIELDS

    key = [*blocks, by]
    first = repeated[(repeated[key] == repeated[key].iloc[0]).all(axis=1).to_numpy()]
    n_blocks = len(repeated.drop_duplicates(key))
    runs = ", ".join(map(str, first.index[:3])) + (", ..." if len(first) > 3 else "")
    problem = (f"{n_blocks} block(s) hold more than one succeeded run of one {by}: {_block_label(first.iloc[0], blocks)}"
               f" holds {len(first)} runs of {by}={first[by].iloc[0]!r} ({runs})")
    differ = varying(first, [c for c in ANALYSIS_FIELDS if c not in key])
    if differ:
        col = differ[0]
        values = ", ".join(sorted(map(str, first[col].unique())))
        return AmbiguousRuns(
            f"{problem}, which differ in {col} ({values})" + "".join(f" and {c}" for c in differ[1:]),
            f"filter the table to one {col}, or add {col} to blocks=",
            [(f"compare one {col} at a time", ["--where", f"{col}={first[col].iloc[-1]}"]),
             (f"pair runs across {col}", ["--blocks", ",".join([*blocks, col])])])
    ways = []
    if "sweep_id" in first and first["sweep_id"].nunique() > 1:
        newest = first.sort_values("finished") if "finished" in first else first
        ways.append(("keep one sweep's runs", ["--sweep", str(newest["sweep_id"].iloc[-1])]))
    ways += [("keep the newest run of each", ["--latest"]), ("average them", ["--average-duplicates"])]
    return AmbiguousRuns(f"{problem}: the same set ran more than once (a block holds one run per group)",
                         "pass duplicates='latest' or 'average', or filter the table (its sweep_id column)", ways)


def _one_run_per_block(ok: pd.DataFrame, key: list[str], duplicates: str, metrics: Sequence[str],
                       repeated: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[dict[str, Any]]]:
    """The newest run of each repeated (block, group), or one row holding the mean of their metrics."""
    row = np.arange(len(ok))
    keyed = ok[list(key)].notna().all(axis=1).to_numpy()
    n_blocks = len(repeated.drop_duplicates(key))
    if duplicates == "latest":
        if "finished" not in ok:
            raise ComparisonError("duplicates='latest' needs the table's 'finished' column (when each run ended)")
        finished = pd.to_datetime(ok["finished"], errors="coerce", utc=True).dt.tz_localize(None)
        order = np.lexsort((row, finished.to_numpy("datetime64[ns]").view("int64")))  # oldest first; no time: oldest
        older = ok.iloc[order][keyed[order]].duplicated(key, keep="last").to_numpy()
        drop = order[keyed[order]][older]
        out, reason = ok, "an older run of the same set (the newest is compared)"
        note = f"{len(drop)} older run(s) of a repeated set left out in {n_blocks} block(s) (duplicates='latest')."
    else:
        out, rows = ok.copy(), np.flatnonzero(keyed)
        means = (out.iloc[rows].assign(**{m: pd.to_numeric(out.iloc[rows][m], errors="coerce") for m in metrics})
                 .groupby(key, sort=False)[list(metrics)].transform("mean"))
        out.iloc[rows, [out.columns.get_loc(m) for m in metrics]] = means.to_numpy()
        drop = rows[out.iloc[rows].duplicated(key, keep="first").to_numpy()]
        note = (f"{len(repeated)} runs of a repeated set in {n_blocks} block(s) averaged into one value each "
                "(duplicates='average').")
        reason = "averaged into the first run of the same set"
    gone = [{"metric": "*", "block": _block_label(r, key[:-1]), "group": r[key[-1]], "reason": f"run {i}: {reason}"}
            for i, r in ok.iloc[drop].iterrows()]
    return out.iloc[np.setdiff1d(row, drop)], [note], gone


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


__all__ = ["BLOCKS", "DEFAULT_METRICS", "DUPLICATES", "POSTHOC", "AmbiguousRuns", "Comparison", "ComparisonError",
           "compare", "holm", "matched_pairs_rank_biserial", "rank_biserial", "kendalls_w", "epsilon_squared", "magnitude"]
