"""What the JupyterLab extension shows of the user's runs, independent of the web server.

:class:`LabRuns` answers the handlers: the runs under the user's base directory (this machine) and,
when the environment has a hub service or cluster settings, the runs there, all through the runs
interface (:class:`~labkit.runners.backend.Backend`). Every path it serves is checked to stay inside
the base directory; every name it takes is checked before it reaches a file system call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from labkit.analysis import exclusions
from labkit.errors import LabkitError, ParameterError
from labkit.lab.kept import Kept
from labkit.lab.review import Figures, component_of
from labkit.params import IcaParams, check_run_id, whole_number
from labkit.results.layout import LOG_FILE, NOTEBOOK_FILE, REPORT_FILE
from labkit.results.reading import RunResult
from labkit.runners.backend import QUEUED, Backend, Run, check_state
from labkit.runners.listing import list_runs
from labkit.runners.machine import MachineBackend

#: list filters the runs list takes, besides paging
FILTERS = ("state", "method", "recording", "sweep", "q")
#: the largest page the list answers (a bigger ``per_page`` is refused by name)
MAX_PER_PAGE = 500
#: recording headers kept (the run dialog and its validation ask for the same few again and again)
KEPT_HEADERS = 64


class NotFound(LabkitError):
    """No such run (or file) for this user: answered 404."""


@dataclass
class Page:
    runs: list[Run]
    total: int
    page: int
    per_page: int

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.to_dict() for r in self.runs], "total": self.total, "page": self.page,
                "per_page": self.per_page, "pages": max(1, -(-self.total // self.per_page))}


class LabRuns:
    """The current user's runs: here under ``base_dir``, and on ``remote`` (hub or cluster) when there is one."""

    def __init__(self, base_dir: str | os.PathLike, remote: Backend | None = None, *, workers: int = 1) -> None:
        self.base_dir = os.path.realpath(base_dir)
        self.local = MachineBackend(self.base_dir, workers=workers)
        self.remote = remote
        #: why there is no remote backend when the environment asked for one (shown by the panel)
        self.remote_problem = ""
        self.figures = Figures()
        #: the parameter sets of sweeps started here, by run id (a waiting run has no folder to read them from)
        self._sets: dict[str, IcaParams] = {}
        self._headers: Kept[Any] = Kept(KEPT_HEADERS)

    # -- listing -----------------------------------------------------------------------------
    def list(self, query: dict[str, str]) -> Page:
        """One page of my runs, newest first, filtered by state, method, recording, sweep and a search text."""
        unknown = [k for k in query if k not in (*FILTERS, "page", "per_page")]
        if unknown:
            raise ParameterError(unknown[0], query[unknown[0]], "one of " + ", ".join((*FILTERS, "page", "per_page")))
        state = check_state(query.get("state") or None)
        page = whole_number("page", query.get("page", "1"), 1, 10**6)
        per_page = whole_number("per_page", query.get("per_page", "50"), 1, MAX_PER_PAGE)
        found = list_runs(self.local, self.remote, state=state, sweep=query.get("sweep") or None,
                          recording=query.get("recording") or None, method=query.get("method") or None,
                          text=query.get("q") or "")
        return Page(found[(page - 1) * per_page: page * per_page], len(found), page, per_page)

    def backend_of(self, run_id: str) -> Backend:
        """The backend that knows this run: here first, then the remote one."""
        check_run_id(run_id)
        try:
            self.local.status(run_id)
            return self.local
        except LabkitError:
            pass
        if self.remote is not None:
            try:
                self.remote.status(run_id)
                return self.remote
            except LabkitError:
                pass
        raise NotFound(f"No run {run_id!r} of yours under {self.base_dir}" + (" or on the cluster" if self.remote else ""))

    # -- one run -----------------------------------------------------------------------------
    def detail(self, run_id: str) -> dict[str, Any]:
        """Everything the run view shows: the run, its parameters, metrics, warnings, labels, figures and files.

        A run that ends while it is read has its folder renamed under the reader: it is read again, as it ended."""
        try:
            out = self._detail(run_id)
            if "folder" not in out or os.path.isdir(os.path.join(self.base_dir, out["folder"])):
                return out
        except FileNotFoundError:
            pass
        return self._detail(run_id)

    def _detail(self, run_id: str) -> dict[str, Any]:
        backend = self.backend_of(run_id)
        run = backend.status(run_id)
        out: dict[str, Any] = {"run": run.to_dict(), "params": None, "metrics": {}, "components": [],
                               "figures": [], "files": [], "report": None, "notebook": None}
        if backend is not self.local:
            return out
        try:
            result = self.local.result(run_id)
        except LabkitError:
            if run.state == QUEUED:  # a run starting here has no folder for a moment: nothing more to show yet
                return out
            raise
        out["params"] = result.params.to_dict() if result.params else None
        out["metrics"] = {k: v for k, v in result.metrics.items() if k != "labels"}
        out["labeller"] = {k: v for k, v in (result.metrics.get("labels") or {}).items() if k != "labels"}
        out["components"] = exclusions.components(result) if result.metrics else []
        out["scores"] = self.figures.scores(result) if result.metrics else {"columns": [], "rows": []}
        self.figures.prepare(result)  # the run view asks for the maps next
        out["figures"] = [p.name for p in sorted(result.path.glob("*.png"))]
        out["files"] = sorted(p.name for p in result.path.iterdir() if p.is_file() and not p.name.startswith("."))
        out["folder"] = os.path.relpath(result.path, self.base_dir)
        for key, name in (("report", REPORT_FILE), ("notebook", NOTEBOOK_FILE), ("log", LOG_FILE)):
            out[key] = f"{out['folder']}/{name}" if (result.path / name).is_file() else None
        return out

    def result(self, run_id: str) -> RunResult:
        """A run of mine here, as its result folder."""
        try:
            return self.local.result(check_run_id(run_id))
        except NotFound:
            raise
        except LabkitError as err:
            raise NotFound(str(err)) from None

    def file(self, run_id: str, name: str) -> Path:
        """One file of a run's folder, by its plain name (no folders, no dot files, nothing outside it)."""
        folder = self.result(run_id).path
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") \
                or "\x00" in name:
            raise ParameterError("file", name, "the plain name of a file in the run's folder")
        path = (folder / name).resolve()
        if path.parent != folder.resolve() or not path.is_file():
            raise NotFound(f"Run {run_id} has no file {name!r}")
        return path

    def component_figure(self, run_id: str, component: str, figure: str) -> bytes:
        """One component's ``topomap`` or ``properties`` figure as PNG (slow the first time: the handler runs
        it off the event loop)."""
        result = self.result(run_id)
        number = component_of(result, component)
        draw = self.figures.topomap if figure == "topomap" else self.figures.properties
        return draw(result, number)

    def log(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        return self.backend_of(run_id).log(run_id, follow=follow, tail=tail)

    # -- actions -----------------------------------------------------------------------------
    def values_of(self, body: Any) -> Any:
        """A body's parameter values (``{"params": {...}}`` or the fields themselves), set in my directory.

        A ``base_dir`` other than mine is refused by name: where a run goes is the server's to say."""
        values = body.get("params", body) if isinstance(body, dict) else body
        if not isinstance(values, dict):
            return values
        given = values.get("base_dir")
        if given not in (None, "") and (not isinstance(given, str) or os.path.realpath(given) != self.base_dir):
            raise ParameterError("base_dir", given, f"your base directory {self.base_dir!r}, or left out")
        return {**values, "base_dir": self.base_dir}

    def params_of(self, body: Any) -> IcaParams:
        """The parameter set of a request body, in my directory."""
        return IcaParams.from_dict(self.values_of(body), source="params")

    def start(self, body: Any) -> Run:
        where = body.get("backend", "machine") if isinstance(body, dict) else "machine"
        return self._target(where).submit(self.params_of(body))

    def start_sweep(self, body: Any) -> list[Run]:
        sets = body.get("sets") if isinstance(body, dict) else None
        if not isinstance(sets, list) or not sets:
            raise ParameterError("sets", sets, "a non-empty list of parameter sets")
        where = body.get("backend", "machine")
        sweep_id = body.get("sweep_id") or None
        if sweep_id is not None and (not isinstance(sweep_id, str) or "/" in sweep_id or len(sweep_id) > 100):
            raise ParameterError("sweep_id", sweep_id, "a name without '/' of at most 100 characters")
        return self.submit_sets(self._target(where), [self.params_of(s) for s in sets], sweep_id)

    def submit_sets(self, backend: Backend, sets: list[IcaParams], sweep_id: str | None) -> list[Run]:
        """Start a sweep of distinct sets (remembering each run's set for the sweep's matrix)."""
        chosen = list({p.digest: p for p in sets}.values())
        started = backend.submit_sweep(chosen, sweep_id=sweep_id)
        self._sets.update((r.run_id, p) for r, p in zip(started, chosen, strict=False))
        return started

    def sweep_runs(self, sweep_id: str) -> list[Run]:
        """Every run of one sweep of mine, here and on the remote backend."""
        found = self.local.runs(sweep=sweep_id)
        if self.remote is not None:
            known = {r.run_id for r in found}
            found += [r for r in self.remote.runs(sweep=sweep_id) if r.run_id not in known]
        return found

    def params_of_run(self, run_id: str) -> IcaParams | None:
        """A run's parameter set: as started here, else its folder's (None when neither is readable)."""
        if run_id in self._sets:
            return self._sets[run_id]
        try:
            return self.local.result(run_id).params
        except LabkitError:
            return None

    def _target(self, where: Any) -> Backend:
        if where == "machine":
            return self.local
        if where in ("cluster", "hub") and self.remote is not None and self.remote.name == where:
            return self.remote
        allowed = "machine" + (f" or {self.remote.name}" if self.remote is not None else "")
        raise ParameterError("backend", where, allowed)

    def cancel(self, run_id: str) -> Run:
        return self.backend_of(run_id).cancel(run_id)

    def rerun(self, run_id: str) -> Run:
        """The same parameter set again, as a new run (a finished result is never overwritten)."""
        result = self.result(run_id)
        if result.params is None:
            raise LabkitError(f"Run {run_id} has no readable params.json to rerun")
        return self.local.submit(result.params.replace(base_dir=self.base_dir))

    def save_components(self, run_id: str, body: Any) -> list[dict[str, Any]]:
        result = self.result(run_id)
        exclusions.save_exclusions(result, _exclude_of(body))
        return exclusions.components(result)

    def apply(self, run_id: str, body: Any) -> str:
        """Write the cleaned recording (slow: the handler runs it off the event loop)."""
        result = self.result(run_id)
        path = exclusions.apply_exclusions(result, _exclude_of(body))
        return os.path.relpath(path, self.base_dir)

    def recording_path(self, path: Any) -> Path:
        """A recording of mine by its path under the base directory (paths leaving it are refused by name)."""
        if not isinstance(path, str) or not path:
            raise ParameterError("path", path, "a recording's path inside your base directory")
        return IcaParams(base_dir=self.base_dir, raw_file_path=path).raw_path()

    def describe(self, path: Path) -> Any:
        """A recording's header (:func:`~labkit.analysis.recording.describe`), read once per version of the file
        (its path, size and modification time): the run dialog opens and validates on every keystroke."""
        from labkit.analysis.recording import describe

        try:
            stat = path.stat()
        except OSError:
            return describe(path)  # its own error names the file
        return self._headers.get_or_make((str(path), stat.st_mtime_ns, stat.st_size), lambda: describe(path))

    def busy(self) -> bool:
        """Whether a run this server started is still going (the hub must not cull the server meanwhile)."""
        return self.local.active()

    def close(self) -> None:
        self.local.close()


def _exclude_of(body: Any) -> Any:
    if not isinstance(body, dict) or "exclude" not in body:
        raise ParameterError("exclude", body, "a JSON object with 'exclude': a list of component numbers")
    return body["exclude"]
