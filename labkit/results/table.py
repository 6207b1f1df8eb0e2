"""The runs table: result folders as one pandas DataFrame, one row per run, indexed by run id.

What a sweep returns, ``labkit list`` and the comparisons start from: parameters, the
state (one of :data:`~labkit.results.states.STATES`, or ``damaged``) and its reason, the
sweep it ran in, the metrics worth comparing, and where the folder is.
:func:`provenance_row` adds where a result came from.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import pandas as pd

from labkit.results.provenance import recorded
from labkit.results.reading import RunResult, list_runs


def row(found: RunResult) -> dict[str, Any]:
    """One run as a flat row: parameters, state and why (failed, cancelled, damaged), and the metrics worth comparing."""
    out: dict[str, Any] = {"run_id": found.run_id, "state": found.state, "error": found.error,
                           "sweep_id": sweep_of(found)}
    if found.params is not None:
        out.update({k: v for k, v in found.params.to_dict().items() if k != "base_dir"})
    m = found.metrics
    for key in ("fit_time_s", "n_iter", "converged", "explained_variance", "n_channels", "n_samples"):
        out[key] = m.get(key)
    for kind in ("eog", "ecg"):
        scores = m.get(f"{kind}_scores")
        out[f"{kind}_best_score"] = float(np.nanmax(np.abs(scores))) if scores else None
        out[f"{kind}_suspects"] = len(m.get(f"{kind}_suspects", [])) if scores else None
    out["path"] = str(found.path)
    return out


def sweep_of(found: RunResult) -> str | None:
    """The sweep a run ran in, so runs of one sweep can be compared apart from a rerun's (``labkit compare
    --sweep``): the ``sweep_id`` its status records, else, for a run of a ``labkit sweep`` on this or another
    machine, its sweep process (``runner_pid`` and ``host`` in its status) as ``local-<host>-<pid>``;
    None for a run made on its own (``labkit run``)."""
    status = found.status
    if status.get("sweep_id"):
        return str(status["sweep_id"])
    pid, host = status.get("runner_pid"), status.get("host")
    return f"local-{host}-{pid}" if isinstance(pid, int) and host else None


def table(found: Iterable[RunResult]) -> pd.DataFrame:
    """These runs as a table (:func:`row` each), indexed by run id; empty for none."""
    rows = [row(f) for f in found]
    return pd.DataFrame(rows).set_index("run_id") if rows else pd.DataFrame()


def varying(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """Those of ``columns`` the frame has whose values differ between its rows (compared as text, so that lists
    and missing values compare too): what a sweep's tables show of how its sets differ."""
    return [c for c in columns if c in frame.columns and frame[c].astype(str).nunique() > 1]


def runs_table(base_dir: str | os.PathLike) -> pd.DataFrame:
    """Every run under ``base_dir``, indexed by run id."""
    return table(list_runs(base_dir))


def provenance_row(found: RunResult) -> dict[str, Any]:
    """Where a result came from: the set's digest, the recording's content fingerprint, software versions,
    image, whether its filtered data came from the cache, host, and when it finished
    (:mod:`labkit.results.provenance` records them; older runs have the metrics' copy)."""
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
