"""Runs seen together in JupyterLab: runs compared side by side, a sweep's matrix, a run back in the form.

The compare view matches each component of the first run to one component of every other run by the
correlation of their maps (one-to-one, the largest total |r|), over the channels both runs analysed;
the sweep view lays a sweep's runs out as recordings x methods x seeds, the newest run of each cell
shown (a rerun replaces the failed one it repeats).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.errors import LabkitError, ParameterError
from labkit.lab.runs import NotFound
from labkit.results.reading import RunResult

if TYPE_CHECKING:
    from labkit.lab.runs import LabRuns

#: the metrics the compare view aligns, in the run view's order
COMPARED_METRICS = ("method", "n_components", "converged", "n_iter", "fit_time_s", "explained_variance",
                    "n_channels", "duration_s", "sfreq")
MAX_COMPARED = 8


def map_correlations(a: RunResult, b: RunResult) -> np.ndarray:
    """|Pearson r| of every map of ``a`` (rows) with every map of ``b`` (columns), signed, over shared channels."""
    ica_a, ica_b = a.read_ica(), b.read_ica()
    shared = [c for c in ica_a.ch_names if c in ica_b.ch_names]
    if len(shared) < 3:
        raise LabkitError(f"Runs {a.run_id} and {b.run_id} share {len(shared)} analysed channels: their maps "
                          "cannot be matched")
    ma = ica_a.get_components()[[ica_a.ch_names.index(c) for c in shared]].T
    mb = ica_b.get_components()[[ica_b.ch_names.index(c) for c in shared]].T
    ma = ma - ma.mean(axis=1, keepdims=True)
    mb = mb - mb.mean(axis=1, keepdims=True)
    return (ma @ mb.T) / np.outer(np.linalg.norm(ma, axis=1), np.linalg.norm(mb, axis=1))


def match_maps(a: RunResult, b: RunResult) -> list[tuple[int, float] | None]:
    """For each component of ``a``, its partner in ``b`` and their r (None when ``b`` has fewer components)."""
    from scipy.optimize import linear_sum_assignment

    r = map_correlations(a, b)
    rows, cols = linear_sum_assignment(-np.abs(np.nan_to_num(r)))
    out: list[tuple[int, float] | None] = [None] * r.shape[0]
    for i, j in zip(rows, cols, strict=True):
        out[int(i)] = (int(j), float(r[i, j]))
    return out


def compare(runs: "LabRuns", query: dict[str, str]) -> dict[str, Any]:
    """Two or more succeeded runs of mine side by side: maps matched to the first run's, metrics aligned."""
    ids = [i for i in (query.get("runs") or "").split(",") if i]
    if not 2 <= len(ids) <= MAX_COMPARED or len(set(ids)) != len(ids):
        raise ParameterError("runs", query.get("runs", ""), f"2 to {MAX_COMPARED} different run ids, comma-separated")
    results = [runs.result(i) for i in ids]
    for found in results:
        if found.state != "succeeded":
            raise LabkitError(f"Run {found.run_id} is {found.state}: only succeeded runs have maps to compare")
    reference, others = results[0], results[1:]
    pairs = [match_maps(reference, other) for other in others]
    matches = [{"component": i, "matched": [None if p[i] is None else
                                            {"run_id": o.run_id, "component": p[i][0], "r": round(p[i][1], 4)}
                                            for o, p in zip(others, pairs, strict=True)]}
               for i in range(len(pairs[0]))]
    from labkit.runners.backend import run_of

    return {"runs": [run_of(r).to_dict() for r in results], "reference": reference.run_id, "matches": matches,
            "metrics": [{"key": k, "values": [r.metrics.get(k) for r in results]} for k in COMPARED_METRICS
                        if any(r.metrics.get(k) is not None for r in results)]}


def sweep_matrix(runs: "LabRuns", sweep_id: str) -> dict[str, Any]:
    """A sweep's runs as recordings x methods x seeds, each cell the newest run of that set."""
    found = runs.sweep_runs(sweep_id)
    if not found:
        raise NotFound(f"No sweep {sweep_id!r} of yours under {runs.base_dir}")
    cells: dict[tuple[str, str, Any], dict[str, Any]] = {}
    repeated = False
    for run in sorted(found, key=lambda r: (r.created or "9", r.run_id)):  # oldest first: the newest wins
        params = runs.params_of_run(run.run_id)
        seed = params.random_state if params is not None else None
        key = (run.recording, run.method, seed)
        repeated = repeated or key in cells
        cells[key] = {"recording": run.recording, "method": run.method, "seed": seed, "run": run.to_dict()}
    shown = list(cells.values())
    counts: dict[str, int] = {}
    for cell in shown:
        counts[cell["run"]["state"]] = counts.get(cell["run"]["state"], 0) + 1
    complete = all(c["run"]["done"] for c in shown)
    ok = sum(c["run"]["state"].startswith("succeeded") for c in shown)
    return {"sweep_id": sweep_id, "recordings": sorted({k[0] for k in cells}),
            "methods": sorted({k[1] for k in cells}),
            "seeds": sorted({k[2] for k in cells}, key=lambda s: (s is None, s if s is not None else 0)),
            "cells": shown, "counts": counts, "complete": complete,
            "compare_command": f"labkit compare --base-dir {_quote(runs.base_dir)} --sweep {_quote(sweep_id)}"
                               + (" --latest" if repeated else "") if complete and ok >= 2 else None}


def rerun_failed(runs: "LabRuns", sweep_id: str) -> list[Any]:
    """The failed and cancelled cells of a sweep started again, in the same sweep (they replace their cells)."""
    matrix = sweep_matrix(runs, sweep_id)
    again = [runs.params_of_run(c["run"]["run_id"]) for c in matrix["cells"]
             if c["run"]["state"] in ("failed", "cancelled")]
    sets = [p.replace(base_dir=runs.base_dir) for p in again if p is not None]
    if not sets:
        raise LabkitError(f"Sweep {sweep_id} has no failed or cancelled run with a readable parameter set to rerun")
    return runs.submit_sets(runs.local, sets, sweep_id)


def form_cell(runs: "LabRuns", run_id: str) -> dict[str, str]:
    """A notebook beside the run's folder whose one cell opens the notebook form on the run's recording."""
    result = runs.result(run_id)
    if result.params is None:
        raise LabkitError(f"Run {run_id} has no readable params.json to open in the form")
    folder = os.path.relpath(result.path.parent, runs.base_dir)
    path = f"ica-form-{run_id}.ipynb" if folder == "." else f"{folder}/ica-form-{run_id}.ipynb"
    source = ("from labkit.widgets import IcaForm\n\n"
              f"IcaForm({str(result.path.parent)!r}, raw_file_path={result.params.raw_file_path!r})")
    return {"path": path, "source": source}


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
