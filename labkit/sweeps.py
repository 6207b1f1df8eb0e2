"""Sweeps: many parameter sets run one after another, then tabulated.

Stochastic methods should be run with many seeds (about 30); the statistics and
figures that compare the runs live in :mod:`labkit.compare` (``compare`` and
``plot`` are re-exported here).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .compare import compare, plot  # noqa: F401 - re-exported: their home is labkit.compare
from .errors import RunFailed
from .params import IcaParams, sets_from_text
from .results import RunResult, list_runs

logger = logging.getLogger(__name__)


def expand(base: IcaParams, **grid: Sequence[Any]) -> list[IcaParams]:
    """Every combination of the given field values over ``base`` (e.g. ``method=[...], random_state=range(30)``)."""
    sets = [base]
    for name, values in grid.items():
        sets = [p.replace(**{name: v}) for p in sets for v in values]
    return sets


def load_sets(text: str | bytes) -> list[IcaParams]:
    """A JSON list of parameter sets (what the notebook form exports as a sweep); see :func:`params.sets_from_text`."""
    return sets_from_text(text)


def run_sweep(sets: Iterable[IcaParams], runner: Any = None, *, progress: bool = True) -> pd.DataFrame:
    """Run each set (a failure is recorded and the sweep goes on); return one row per run."""
    from .runners import LocalRunner

    runner = runner or LocalRunner()
    sets = list(sets)
    found: list[RunResult] = []
    for params in tqdm(sets, desc="ICA sweep", unit="run", disable=not progress):
        try:
            found.append(runner.run(params))
        except RunFailed as err:
            logger.warning("sweep: %s", err)
            from .results import load_run

            if err.folder is not None:
                found.append(load_run(err.folder))
    return table(found)


def row(found: RunResult) -> dict[str, Any]:
    """One run as a flat row: parameters, state and the metrics worth comparing."""
    out: dict[str, Any] = {"run_id": found.run_id, "state": found.state, "error": found.error}
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


def table(found: Iterable[RunResult]) -> pd.DataFrame:
    rows = [row(f) for f in found]
    return pd.DataFrame(rows).set_index("run_id") if rows else pd.DataFrame()


def runs_table(base_dir: str | os.PathLike) -> pd.DataFrame:
    """Every run under ``base_dir``, indexed by run id."""
    return table(list_runs(base_dir))
