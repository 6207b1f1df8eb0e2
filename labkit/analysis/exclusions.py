"""A finished run's components under review: which are suspect, which the user excludes, the cleaned recording.

One home for what every review face does (the notebook form, the JupyterLab run view): read each
component's automatic label and EOG/ECG suspicion, save the user's choice as ``components.tsv``
and write the recording with the excluded components removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from labkit.errors import LabkitError, ParameterError
from labkit.results.components import read_components_tsv, write_components_tsv
from labkit.results.layout import COMPONENTS_TSV
from labkit.results.reading import RunResult

#: the cleaned recording a run's folder receives when exclusions are applied
CLEANED_FILE = "cleaned_raw.fif"


def n_components(result: RunResult) -> int:
    """How many components the run found (its metrics, else its parameter set)."""
    return int(result.metrics.get("n_components") or (result.params.n_components if result.params else 0))


def suspect_reasons(metrics: dict[str, Any]) -> dict[int, str]:
    """Component -> ``EOG``, ``ECG`` or ``EOG+ECG``: what MNE's correlation found it resembles."""
    out: dict[int, str] = {}
    for i in metrics.get("ecg_suspects", []):
        out[int(i)] = "ECG"
    for i in metrics.get("eog_suspects", []):
        out[int(i)] = "EOG" if int(i) not in out else "EOG+ECG"
    return out


def excluded_components(result: RunResult) -> list[int]:
    """The user's saved choice (``components.tsv``), else what the run excluded itself."""
    saved = read_components_tsv(result.file(COMPONENTS_TSV))
    if saved is not None:
        return saved
    return sorted(int(i) for i in result.metrics.get("exclude", suspect_reasons(result.metrics)))


def components(result: RunResult) -> list[dict[str, Any]]:
    """One row per component: its label and probability, its suspicion, whether it is excluded."""
    labels = {r["component"]: r for r in (result.metrics.get("labels") or {}).get("labels", [])}
    suspects = suspect_reasons(result.metrics)
    excluded = set(excluded_components(result))
    return [{"component": i, "name": f"ICA{i:03d}", "label": labels.get(i, {}).get("label", ""),
             "probability": labels.get(i, {}).get("probability"), "suspect": suspects.get(i, ""),
             "excluded": i in excluded} for i in range(n_components(result))]


def check_exclusions(result: RunResult, excluded: Any) -> list[int]:
    """``excluded`` as a sorted list of valid component indices, or an error naming the bad value."""
    n = n_components(result)
    if not isinstance(excluded, (list, tuple)):
        raise ParameterError("exclude", excluded, "a list of component numbers")
    for i in excluded:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise ParameterError("exclude", i, f"a component number from 0 to {n - 1}")
    return sorted(set(excluded))


def save_exclusions(result: RunResult, excluded: Iterable[int]) -> Path:
    """Write ``components.tsv``: each excluded component with why (its suspicion, else "marked bad by hand")."""
    if result.state not in ("succeeded",):
        raise LabkitError(f"Run {result.run_id} is {result.state}: only a finished run's components can be reviewed")
    suspects = suspect_reasons(result.metrics)
    bad = {i: f"{suspects[i]} suspect" if i in suspects else "marked bad by hand"
           for i in check_exclusions(result, list(excluded))}
    return write_components_tsv(result.file(COMPONENTS_TSV), n_components(result), bad,
                                labels=result.metrics.get("labels"))


def apply_exclusions(result: RunResult, excluded: Iterable[int]) -> Path:
    """Save the exclusions, then write the whole recording with them removed (``cleaned_raw.fif``)."""
    from labkit.analysis import recording

    chosen = check_exclusions(result, list(excluded))
    save_exclusions(result, chosen)
    params = result.params
    if params is None:
        raise LabkitError(f"Run {result.run_id} has no readable params.json")
    ica = result.read_ica()
    ica.exclude = chosen
    raw = recording.read_raw(params.raw_path(), preload=True, verbose="error")
    ica.apply(raw, verbose="error")
    out = result.file(CLEANED_FILE)
    raw.save(out, overwrite=True, verbose="error")
    return out
