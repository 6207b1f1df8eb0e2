"""The run's HTML report: MNE's own ``Report.add_ica`` (fit summary, EOG/ECG scores, suspects' maps) plus
labkit's outcome, warnings, labels, parameters, metrics and versions, and the figures already drawn.

Every piece of text that comes from a recording, a path or a parameter is HTML-escaped:
channel names and file names are data, not markup.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import mne
import numpy as np

from labkit.analysis.mnelog import quietly
from labkit.params import IcaParams
from labkit.results.layout import REPORT_FILE


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
                   for k, v in rows.items())
    return f"<table class='table table-sm'>{body}</table>"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def outcome_html(metrics: dict[str, Any]) -> str:
    """The outcome in words: succeeded, or succeeded with warnings and each warning."""
    warnings = metrics.get("warnings") or []
    if not warnings:
        return "<p class='labkit-outcome' style='color:#1b5e20'><b>Outcome: succeeded</b></p>"
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return (f"<p class='labkit-outcome' style='color:#8a4b00'><b>Outcome: succeeded with warnings</b> "
            f"({len(warnings)})</p><ul class='labkit-warnings'>{items}</ul>")


def labels_html(labels: dict[str, Any] | None, exclude: list[int]) -> str:
    if not labels:
        return "<p><i>No automatic labels for this channel type.</i></p>"
    bold = " style='font-weight:bold'"
    rows = "".join(
        f"<tr{bold if r['component'] in exclude else ''}><td>ICA{r['component']:03d}</td>"
        f"<td>{html.escape(str(r['label']))}</td><td>{r['probability']:.2f}</td></tr>"
        for r in labels["labels"])
    by = labels.get("labeller") or {}
    made_by = f" (by {html.escape(str(by.get('package')))} {html.escape(str(by.get('version')))})" if by else ""
    return (f"<p>{html.escape(str(labels['network']))} on a copy of the data "
            f"({html.escape(str(labels['preprocessing']))}), for labelling only{made_by}; labels exclude nothing unless "
            f"label_threshold is set. Excluded components are in bold.</p>"
            f"<table class='table table-sm'><tr><th>component</th><th>label</th><th>probability</th></tr>{rows}</table>")


def _add_ica(report: mne.Report, ica: mne.preprocessing.ICA, facts: dict[str, Any]) -> None:
    """MNE's own ICA section: fit summary, EOG/ECG score bars and the suspects' maps.

    It needs sensor positions and at least one suspect to map; otherwise MNE's summary
    of the fit is shown alone (the topomaps PNG, if any, follows with the other figures).
    ``facts`` holds ``exclude``, ``topomaps_skipped`` and the ``eog_scores``/``ecg_scores``.
    """
    suspects = [int(i) for i in facts.get("exclude") or []]
    if facts.get("topomaps_skipped") or not suspects:
        report.add_html(ica._repr_html_(), title="ICA")
        return
    scores = {f"{kind}_scores": np.asarray(facts[f"{kind}_scores"], dtype=float)
              for kind in ("eog", "ecg") if facts.get(f"{kind}_scores")}
    if "eog_scores" in scores and scores["eog_scores"].shape[0] == 1:
        scores["eog_scores"] = scores["eog_scores"][0]
    report.add_ica(ica, title="ICA", inst=None, picks=suspects, n_jobs=1, **scores)


def title(params: IcaParams) -> str:
    return f"labkit ICA {params.method}, {params.n_components} components"


@quietly
def ica_section(ica: mne.preprocessing.ICA, report_title: str, facts: dict[str, Any]) -> mne.Report:
    """A report holding MNE's ICA section alone, for :func:`build` to finish (drawn by a worker beside the plots)."""
    report = mne.Report(title=report_title)
    _add_ica(report, ica, facts)
    return report


@quietly
def build(params: IcaParams, metrics: dict[str, Any], out_dir: Path, figures: list[str],
          ica: mne.preprocessing.ICA | None = None, *, ica_section: mne.Report | None = None) -> Path:
    """Write ``report.html`` into ``out_dir`` from the metrics and the PNGs already drawn (no second rendering).

    ``ica_section``: a report already holding MNE's ICA section (:func:`ica_section`, drawn by a worker
    beside the plots); without it the section is drawn here from ``ica``.
    """
    report = ica_section if ica_section is not None else mne.Report(title=title(params))
    if ica_section is None and ica is not None:
        _add_ica(report, ica, metrics)
    before = len(report)
    report.add_html(outcome_html(metrics), title="Outcome")
    report.add_html(labels_html(metrics.get("labels"), list(metrics.get("exclude") or [])), title="Component labels")
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
    report.add_html(_table(shown), title="Metrics")
    report.add_html(_table(params.to_dict()), title="Parameters")
    report.add_html(_table(metrics.get("versions") or {}), title="Versions")
    for name in figures:
        report.add_image(out_dir / name, title=html.escape(name.rsplit(".", 1)[0].replace("_", " ")))
    report.reorder([before, *range(before), *range(before + 1, len(report))])  # the outcome first
    path = out_dir / REPORT_FILE
    report.save(path, open_browser=False, overwrite=True)
    return path
