"""``components.tsv``: which ICA components are bad and why, in the MNE-BIDS-Pipeline layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.results.layout import write_text


def write_components_tsv(path: Path, n_components: int, bad: dict[int, str],
                         labels: dict[str, Any] | None = None) -> Path:
    """``components.tsv`` in the MNE-BIDS-Pipeline layout; ``bad`` maps component -> why it is bad.

    With automatic ``labels`` (:mod:`labkit.analysis.labels`), two more columns give each component's
    label and its probability (mne-icalabel's ``ic_type`` in BIDS words).
    """
    by_component = {r["component"]: r for r in (labels or {}).get("labels", [])}
    extra = ["ic_type", "ic_type_probability"] if by_component else []
    rows = ["\t".join(["component", "type", "description", "status", "status_description", *extra])]
    for i in range(n_components):
        status, why = ("bad", bad[i] or "n/a") if i in bad else ("good", "n/a")
        row = [str(i), "ica", "Independent Component", status, why]
        if extra:
            found = by_component.get(i)
            row += [found["label"], f"{found['probability']:.4f}"] if found else ["n/a", "n/a"]
        rows.append("\t".join(row))
    write_text(path, "\n".join(rows) + "\n")  # a cut write never reads back as "no component is bad"
    return path


def read_components_tsv(path: Path) -> list[int] | None:
    """The components marked bad in a ``components.tsv``, or None if there is none."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    header = lines[0].split("\t")
    col, status = header.index("component"), header.index("status")
    return [int(r.split("\t")[col]) for r in lines[1:] if r.strip() and r.split("\t")[status] == "bad"]
