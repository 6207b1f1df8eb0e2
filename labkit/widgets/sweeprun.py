"""A sweep's progress in the form, here or on the cluster: one row per set with its state word, step and a link
to its result once done; at the end a results table of the metrics that differ between the sets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import ipywidgets as W

from labkit.errors import LabkitError
from labkit.params import IcaParams
from labkit.results.layout import PARAMS_FILE, REPORT_FILE
from labkit.results.reading import RunResult, load_run
from labkit.runners.backend import QUEUED, Run, run_of

from .common import esc, link, state_html

#: columns of a sweep's table that tell nothing about how its sets differ in outcome
_NOT_SHOWN = {"path", "reason", "action", "base_dir", "error", "created", "sweep_id", "digest"}


@dataclasses.dataclass
class SetRow:
    """One set of a running sweep and what is known of its run."""

    label: str
    params: IcaParams
    #: the run's id or backend name, once known
    handle: str = ""
    run: Run | None = None
    result: RunResult | None = None
    note: str = ""


def differing(frame: Any) -> Any:
    """The sweep table's columns whose values differ between rows (the state always), for a results table."""
    if frame is None or not len(frame):
        return frame
    from labkit.results.table import varying

    shown = set(varying(frame, [c for c in frame.columns if c not in _NOT_SHOWN]))
    return frame[[c for c in frame.columns if c == "state" or c in shown]]


def _digest_of(run: Run) -> str:
    """The parameter digest a run's folder records (its ``params.json``), or "" when it cannot be read."""
    try:
        return str(json.loads((Path(run.where) / PARAMS_FILE).read_text()).get("digest") or "")
    except (OSError, ValueError, TypeError):
        return ""


class SweepProgress(W.VBox):
    """The live table of one sweep; :meth:`poll` reads its runs through the runs interface and redraws it."""

    def __init__(self, **kwargs: Any) -> None:
        self.rows: list[SetRow] = []
        self.backend: Any = None
        self.sweep_id = ""
        self._digests: dict[str, str] = {}
        #: the results table (pandas) of the columns that differ, once the sweep has ended
        self.frame: Any = None
        self.table = W.HTML()
        self.results = W.HTML()
        super().__init__([self.table, self.results], **kwargs)

    def start(self, backend: Any, sweep_id: str, sets: Sequence[IcaParams], labels: Sequence[str],
              runs: Sequence[Run] | None = None) -> None:
        """Follow ``sets`` of sweep ``sweep_id`` on ``backend``; ``runs`` (one per set) when the submission told them."""
        self.backend, self.sweep_id, self._digests = backend, sweep_id, {}
        self.rows = [SetRow(label, p) for label, p in zip(labels, sets, strict=True)]
        for row, run in zip(self.rows, runs or [], strict=False):
            row.handle, row.run = run.name or run.run_id, run
        self.results.value, self.frame = "", None
        self.render()

    def reuse(self, index: int, result: RunResult) -> None:
        """Set ``index`` is not run: an earlier result of the same set answers for it."""
        row = self.rows[index]
        row.handle, row.result, row.note = result.run_id, result, "reused"
        row.run = run_of(result, backend=getattr(self.backend, "name", "machine"))

    @property
    def done(self) -> bool:
        return bool(self.rows) and all(r.run is not None and r.run.done for r in self.rows)

    def poll(self) -> list[RunResult]:
        """Read every unfinished set's run once; returns the results that finished since the last poll."""
        if not self.rows:
            return []
        if any(not r.handle for r in self.rows):  # runs of a sweep here get their ids as they start
            by_digest = {}
            for run in self.backend.runs(sweep=self.sweep_id):
                digest = self._digests.get(run.run_id) or self._digests.setdefault(run.run_id, _digest_of(run))
                by_digest.setdefault(digest, run)
            for row in self.rows:
                if not row.handle and row.params.digest in by_digest:
                    row.run = by_digest[row.params.digest]
                    row.handle = row.run.run_id
        finished = []
        for row in self.rows:
            if not row.handle or (row.run is not None and row.run.done):
                continue
            try:
                row.run = self.backend.status(row.handle)
            except LabkitError as err:
                row.note = str(err)
                continue
            if row.run.done:
                row.result = self._result(row)
                if row.result is not None:
                    finished.append(row.result)
        self.render()
        return finished

    def _result(self, row: SetRow) -> RunResult | None:
        try:
            return self.backend.result(row.handle)
        except (LabkitError, OSError) as err:
            row.note = f"result not readable here: {err}"
            return None

    def finish(self, frame: Any = None) -> None:
        """The sweep has ended: every row's final state, and the results table (``frame``: run_sweep's table,
        else one built from the results read)."""
        if frame is not None and len(frame) and "path" in frame.columns:
            by_digest = {r.params.digest: r for r in self.rows}
            for path in frame["path"]:
                try:
                    result = load_run(path) if isinstance(path, str) else None
                except LabkitError:
                    continue
                row = by_digest.get(result.params.digest) if result is not None and result.params else None
                if row is not None and row.result is None:
                    row.result, row.handle = result, row.handle or result.run_id
                    row.run = run_of(result, backend=getattr(self.backend, "name", "machine"))
        for row in self.rows:
            if row.result is None and row.run is not None and row.run.done and row.handle:
                row.result = self._result(row)
        if frame is None:
            import pandas as pd

            from labkit.results.table import row as table_row

            found = [table_row(r.result) for r in self.rows if r.result is not None]
            frame = pd.DataFrame(found).set_index("run_id") if found else None
        self.frame = differing(frame)
        self.render()
        if self.frame is not None and len(self.frame):
            self.results.value = ("<b>Results</b> (the columns that differ between the sets)"
                                  + self.frame.to_html(classes="lk-sweep-results", border=0, na_rep="",
                                                       float_format=lambda v: f"{v:.4g}"))

    def render(self) -> None:
        body = []
        for row in self.rows:
            run = row.run
            state = run.state if run is not None else QUEUED
            step = run.step if run is not None and not run.done else ""
            report = row.result.file(REPORT_FILE) if row.result is not None else None
            where = (link(report, "HTML report", command="labkit:open-report", run_id=row.result.run_id)
                     if report is not None and report.exists() else "")
            why = run.reason if run is not None and run.reason else row.note
            body.append(f"<tr><td>{esc(row.label)}</td><td>{state_html(state)}</td><td>{esc(step)}</td>"
                        f"<td>{where}</td><td>{esc(why)}</td></tr>")
        self.table.value = ("<table class='lk-sweep'><tr><th>set</th><th>state</th><th>step</th><th>result</th>"
                            "<th>note</th></tr>" + "".join(body) + "</table>") if body else ""
