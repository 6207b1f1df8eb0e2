"""Figures of a comparison: box plots with every run, critical-difference diagrams, topomap grids.

They draw what :mod:`labkit.study.compare` tests, from the table
:func:`labkit.study.quality.comparison_table` makes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from labkit.errors import ParameterError
from labkit.results.reading import RunResult, load_run
from labkit.study.compare import BLOCKS, Comparison, ComparisonError


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
    compared = frame if result.runs is None else result.runs  # a set run twice: the run (or mean) compared
    figures = {f"box_{m}.png": lambda m=m: plot(compared, m, result.by, blocks=result.blocks)
               for m in result.tests["metric"]}
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


__all__ = ["plot", "cd_diagram", "topomap_grid", "save_figures"]
