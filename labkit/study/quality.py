"""Separation quality against a recording's ground truth (the demo data written by :mod:`labkit.analysis.datasets`).

Two measures, both computed from the result folder after the fact (old runs too):

* **best-match correlation** of a named true source (``blink``, ``heartbeat``): the
  largest |Pearson r| between any ICA source and the true source over the analysed
  span. The true source is band-passed with the run's own filter first: filtering
  is linear, so the filtered source is exactly what a perfect unmixing of the
  filtered data would give back.
* **Amari index** of the global system ``G = W A`` (Amari, Cichocki & Yang 1996,
  "A new learning algorithm for blind signal separation", NIPS 8: the
  permutation- and scale-invariant distance of ``G`` from a scaled permutation;
  Moreau & Macchi's performance index is the same construction on ``|g_ij|^2``).
  ``W`` is MNE's whole unmixing from channels to components (pre-whitening,
  PCA reduction, ICA unmixing) and ``A`` the true mixing restricted to the analysed
  channels, so PCA reduction and channel subsets are handled by construction:
  ``G`` is ``n_components x n_sources``. 0 means every component is one source and
  every source one component (``G`` a scaled permutation); 1 is the worst. With
  fewer components than true sources (the demo has 35) the index cannot reach 0,
  so compare it between runs with the same recording and ``n_components``.

A run whose recording has no ground truth gets NaN and the reason in ``quality_note``.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import mne
import numpy as np
import pandas as pd

from labkit.analysis.datasets import load_truth
from labkit.errors import LabkitError
from labkit.results import table as runs_table
from labkit.results.reading import RunResult, list_runs, load_run
from labkit.study.compare import ComparisonError

#: the true sources whose best match is reported, as ``<name>_match_r`` / ``<name>_component``
MATCHED_SOURCES = ("blink", "heartbeat")
COLUMNS = tuple(f"{s}_{k}" for s in MATCHED_SOURCES for k in ("match_r", "component")) + (
    "amari_index", "quality_note")


def amari_index(g: np.ndarray) -> float:
    """Amari et al.'s (1996) index of a global system ``G = W A``, normalised to [0, 1].

    For an ``m x n`` matrix each term is normalised by its own size,
    ``sum_i (sum_j |g_ij| / max_j |g_ij| - 1) / (2 m (n - 1)) + sum_j (sum_i |g_ij| /
    max_i |g_ij| - 1) / (2 n (m - 1))``, which for a square ``G`` is the usual
    ``1 / (2 n (n - 1))`` form. Rows are first scaled to unit norm, since a
    component's scale is arbitrary in ICA (the column term would otherwise depend on it).
    """
    g = np.abs(np.asarray(g, dtype=float))
    if g.ndim != 2 or min(g.shape) < 2:
        raise ValueError(f"the global system must be a matrix of at least 2 x 2, got shape {g.shape}")
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    m, n = g.shape
    rows = (g.sum(axis=1) / g.max(axis=1) - 1).sum() / (2 * m * (n - 1))
    cols = (g.sum(axis=0) / g.max(axis=0) - 1).sum() / (2 * n * (m - 1))
    return float(rows + cols)


def unmixing(ica: mne.preprocessing.ICA) -> np.ndarray:
    """MNE's whole unmixing ``W`` (components x channels): pre-whitening, PCA reduction and ICA in one matrix.

    ``ica.get_sources(raw)`` equals ``W @ data`` up to the PCA mean.
    """
    n = ica.n_components_
    return ica.unmixing_matrix_ @ ica.pca_components_[:n] / ica.pre_whitener_.ravel()[None, :]


def best_match(estimated: np.ndarray, true: np.ndarray) -> tuple[float, int]:
    """The largest |Pearson r| between any row of ``estimated`` and the 1-D ``true``, and that row's index."""
    est = estimated - estimated.mean(axis=1, keepdims=True)
    tru = true - true.mean()
    r = est @ tru / (np.linalg.norm(est, axis=1) * np.linalg.norm(tru))
    best = int(np.nanargmax(np.abs(r)))
    return float(abs(r[best])), best


def run_quality(found: RunResult, *, _data: dict[Any, Any] | None = None) -> dict[str, Any]:
    """Quality columns for one run: best-match correlations and the Amari index, or NaN with the reason.

    ``_data`` memoises the recording's filtered span across runs that share it.
    """
    empty: dict[str, Any] = {c: np.nan for c in COLUMNS}
    if found.state != "succeeded" or found.params is None:
        return {**empty, "quality_note": f"run {found.state}: no fitted ICA"}
    params = found.params.replace(base_dir=str(found.path.parent))  # where the recording is now
    try:
        truth = load_truth(params.raw_path())
    except (FileNotFoundError, LabkitError) as err:  # no truth file, or the recording is gone
        return {**empty, "quality_note": str(err)}
    ica = found.read_ica()
    truth_names = list(truth["ch_names"])
    missing = [c for c in ica.ch_names if c not in truth_names]
    if missing:
        return {**empty, "quality_note": f"analysed channels without ground truth: {', '.join(missing[:5])}"}
    rows = [truth_names.index(c) for c in ica.ch_names]
    out: dict[str, Any] = {"amari_index": amari_index(unmixing(ica) @ truth["mixing"][rows]), "quality_note": ""}
    key = (str(params.raw_path()), params.crop_tmin, params.crop_tmax, params.filter_fmin, params.filter_fmax,
           tuple(ica.ch_names))
    memo = _data if _data is not None else {}
    if key not in memo:
        memo[key] = _analysed_span(params, ica, truth)
    data, sources = memo[key]
    estimated = unmixing(ica) @ data
    names = list(truth["source_names"])
    for name in MATCHED_SOURCES:
        r, comp = best_match(estimated, sources[names.index(name)])
        out[f"{name}_match_r"], out[f"{name}_component"] = r, comp
    return out


def _analysed_span(params: Any, ica: mne.preprocessing.ICA, truth: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The run's filtered channels and the equally filtered true sources, over the analysed span."""
    from labkit.analysis import ica as analysis
    from labkit.analysis.recording import read_raw

    first = read_raw(params.raw_path(), verbose="error").first_samp
    raw = analysis.load(params, verbose="error")
    analysis.preprocess(raw, params, verbose="error")
    start = raw.first_samp - first
    span = truth["sources"][:, start:start + raw.n_times]
    sources = mne.filter.filter_data(span, raw.info["sfreq"], params.filter_fmin, params.filter_fmax, n_jobs=1,
                                     verbose="error")
    return raw.get_data(picks=ica.ch_names), sources


def comparison_table(runs: pd.DataFrame | str | os.PathLike | Iterable[RunResult], *,
                     quality: bool = True) -> pd.DataFrame:
    """Every run's parameters, metrics and provenance, plus ground-truth quality where the recording has it.

    ``runs`` is a base directory, RunResults, or a table with a ``path`` column (what
    ``sweeps.run_sweep`` returns, or its CSV read back): such a table keeps its rows
    and columns (a set that never ran has no path and gets no extra values).
    Provenance: see :func:`labkit.results.table.provenance_row`.
    """
    if isinstance(runs, pd.DataFrame):
        if "path" not in runs:
            raise ComparisonError("a table of runs needs its 'path' column to find the result folders")
        frame = runs
        keys = list(frame["path"].dropna().unique())
        found = [load_run(p) for p in keys]
    else:
        found = list_runs(runs) if isinstance(runs, (str, os.PathLike)) else list(runs)
        frame = runs_table.table(found)
        keys = [str(f.path) for f in found]
    if frame.empty:
        return frame
    extra = pd.DataFrame([runs_table.provenance_row(f) for f in found], index=keys)
    if quality:
        extra = extra.join(quality_table(found).set_axis(keys))
    out = frame.join(extra[[c for c in extra.columns if c not in frame.columns]], on="path")
    if quality and "quality_note" in out:
        out.loc[out["path"].isna(), "quality_note"] = "no result folder: the set did not run"
    return out


def quality_table(found: Iterable[RunResult]) -> pd.DataFrame:
    """:func:`run_quality` for every run, indexed by run id (recordings read and filtered once each)."""
    memo: dict[Any, Any] = {}
    rows = {f.run_id: run_quality(f, _data=memo) for f in found}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS)).rename_axis("run_id")


__all__ = ["comparison_table", "amari_index", "best_match", "unmixing", "run_quality", "quality_table",
           "MATCHED_SOURCES", "COLUMNS"]
