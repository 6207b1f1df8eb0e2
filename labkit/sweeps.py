"""Comparing runs: one pandas row per result folder, for tables, plots and statistics."""

from __future__ import annotations

import os

import pandas as pd

from .results import list_runs


def runs_table(base_dir: str | os.PathLike) -> pd.DataFrame:
    """Every run under ``base_dir``: its state, parameters and key metrics, indexed by run id."""
    rows = []
    for found in list_runs(base_dir):
        row = {"run_id": found.run_id, "state": found.state, "error": found.error}
        if found.params is not None:
            row.update({k: v for k, v in found.params.to_dict().items() if k != "base_dir"})
        row.update({k: v for k, v in found.summary().items() if k != "state"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("run_id") if rows else pd.DataFrame()
