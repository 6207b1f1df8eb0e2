"""Runs on this machine behind the runs interface (:class:`MachineBackend`).

Each run is a ``labkit run`` child process (:class:`~labkit.runners.local.LocalProcess`), so a
notebook or a server stays responsive and a cancel is a SIGTERM the run records as
``cancelled``. A sweep starts its sets ``workers`` at a time from one background thread. The
result folders under ``base_dir`` are the truth: a run started by another process (a
terminal's ``labkit run``) is listed, followed and cancelled the same way.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from labkit.errors import LabkitError
from labkit.params import IcaParams, check_run_id
from labkit.results.folder import RunFolder
from labkit.results.layout import FOLDER_PREFIX, LOG_FILE, PARTIAL, new_run_id, run_id_of
from labkit.results.reading import RunResult, find_run, load_run
from labkit.runners.backend import CANCELLED, FAILED, QUEUED, RUNNING, Run, check_state, run_of
from labkit.runners.local import LocalProcess


class MachineBackend:
    """This machine's runs under ``base_dir`` (the user's directory)."""

    name = "machine"

    def __init__(self, base_dir: str | os.PathLike, *, workers: int = 1) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.workers = max(1, int(workers))
        self._procs: dict[str, LocalProcess] = {}
        #: sets of a sweep not started yet: run id -> (params, sweep id)
        self._waiting: dict[str, tuple[IcaParams, str]] = {}
        self._sweep_of: dict[str, str] = {}
        #: runs cancelled through this backend (one stopped before its folder existed is cancelled, not failed)
        self._cancelled: set[str] = set()
        #: finished folders as read once (folder name -> run): a complete or failed folder never changes
        self._finished: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _here(self, params: IcaParams) -> IcaParams:
        return params.replace(base_dir=self.base_dir)

    # -- submit ------------------------------------------------------------------------------
    def submit(self, params: IcaParams, *, run_id: str | None = None, force: bool = False) -> Run:
        params = self._here(params)
        from labkit.analysis.recording import preflight

        preflight(params)  # a mistake is told now, as an error naming the field, not as a failed run later
        if run_id is not None:
            check_run_id(run_id)
            if RunFolder(self.base_dir, run_id).path.exists():
                raise LabkitError(f"Run id {run_id!r} already names a run under {self.base_dir}; a run id names one run")
        proc = LocalProcess(params, run_id)
        with self._lock:
            self._procs[proc.run_id] = proc
        return self.status(proc.run_id)

    def submit_sweep(self, sets: Sequence[IcaParams], *, sweep_id: str | None = None,
                     force: bool = False) -> list[Run]:
        distinct = list({p.digest: self._here(p) for p in sets}.values())
        if not distinct:
            from labkit.errors import ParameterError

            raise ParameterError("sets", [], "at least one parameter set")
        from labkit.analysis.recording import preflight

        for p in distinct:
            preflight(p)
        sweep = sweep_id or f"sweep-{new_run_id(distinct[0])}"
        ids = [f"{new_run_id(p)}-{i}" for i, p in enumerate(distinct)]
        with self._lock:
            for run_id, p in zip(ids, distinct, strict=True):
                self._waiting[run_id] = (p, sweep)
                self._sweep_of[run_id] = sweep
        threading.Thread(target=self._drain, args=(ids,), name=f"labkit-sweep-{sweep}", daemon=True).start()
        return [self.status(r) for r in ids]

    def _drain(self, ids: list[str]) -> None:
        """Start the sweep's runs ``workers`` at a time; a cancelled waiting run is never started."""
        for run_id in ids:
            while sum(not p.done() for p in list(self._procs.values())) >= self.workers:
                time.sleep(0.2)
            with self._lock:
                waiting = self._waiting.pop(run_id, None)
                if waiting is None:
                    continue
                self._procs[run_id] = LocalProcess(waiting[0], run_id)

    # -- read --------------------------------------------------------------------------------
    def status(self, run: str) -> Run:
        with self._lock:
            waiting = self._waiting.get(run)
            proc = self._procs.get(run)
        if waiting is not None:
            params, sweep = waiting
            return Run(run, QUEUED, "waiting for an earlier run of the sweep", self.name, run,
                       recording=params.raw_file_path, method=params.method, sweep_id=sweep)
        folder = RunFolder(self.base_dir, run)
        if not folder.path.exists():
            if proc is not None and not proc.done():
                return Run(run, QUEUED, "starting", self.name, run, recording=proc.params.raw_file_path,
                           method=proc.params.method, sweep_id=self._sweep_of.get(run, ""))
            if proc is not None and run in self._cancelled:
                return Run(run, CANCELLED, "cancelled before it started", self.name, run,
                           recording=proc.params.raw_file_path, method=proc.params.method,
                           sweep_id=self._sweep_of.get(run, ""))
            if proc is not None:
                return Run(run, FAILED, "the run stopped before its folder existed: "
                           + (proc.output_tail(5) or "no output"), self.name, run)
            raise LabkitError(f"No run {run!r} under {self.base_dir} (see: labkit runs)")
        if proc is not None and not proc.done():  # its process is the judge of its state until it exits
            status = folder.status
            state = status.get("state") if status.get("state") in (QUEUED, RUNNING) else RUNNING
            return Run(run, state, "", self.name, run, step=str(status.get("step") or ""),
                       recording=proc.params.raw_file_path, method=proc.params.method,
                       sweep_id=self._sweep_of.get(run, ""), created=str(status.get("created") or ""),
                       where=str(folder.path))
        return run_of(load_run(folder.path), sweep_id=self._sweep_of.get(run, ""))

    def runs(self, *, state: str | None = None, sweep: str | None = None,
             recording: str | None = None) -> list[Run]:
        check_state(state)
        found = self._folder_runs()
        with self._lock:
            extra = [r for r in list(self._waiting) + list(self._procs) if r not in found]
        for run_id in extra:
            try:
                found[run_id] = self.status(run_id)
            except LabkitError:
                continue
        out = [r for r in found.values()
               if (state is None or r.state == state) and (sweep is None or r.sweep_id == sweep)
               and (recording is None or r.recording == recording or Path(r.recording).name == recording)]
        return sorted(out, key=lambda r: (r.created, r.run_id), reverse=True)

    def _folder_runs(self) -> dict[str, Run]:
        """Every result folder's run; a finished folder (final name) never changes, so it is read once."""
        found: dict[str, Run] = {}
        for path in sorted(Path(self.base_dir).glob(FOLDER_PREFIX + "*"), key=lambda p: p.name.endswith(PARTIAL)):
            run_id = run_id_of(path.name)
            if run_id in found:  # renamed while listed: its final name was read first
                continue
            run = self._finished.get(path.name)
            if run is None:
                try:
                    run = run_of(load_run(path))
                except LabkitError:  # gone between the listing and the read
                    continue
                if run.done and not path.name.endswith(PARTIAL):
                    self._finished[path.name] = run
            sweep = self._sweep_of.get(run_id)
            found[run_id] = dataclasses.replace(run, sweep_id=sweep) if sweep and sweep != run.sweep_id else run
        return found

    def log(self, run: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        self.status(run)  # an unknown run is an error, not an empty log
        folder = RunFolder(self.base_dir, run)
        text = _read(folder)
        done_part, _, pending = text.rpartition("\n") if follow else (text, "", "")
        lines = done_part.splitlines()
        yield from (lines if tail is None else lines[len(lines) - tail:] if tail else [])
        offset = len(text) - len(pending)
        while follow:
            ended = self.status(run).done  # read before the file: nothing written before the end is missed
            text = _read(folder)
            fresh, _, pending = text[offset:].rpartition("\n")
            if fresh or (ended and text[offset:]):
                chunk = text[offset:] if ended else fresh
                yield from chunk.splitlines()
                offset += len(chunk) + (0 if ended else 1)
            if ended or self._closed.wait(0.2):  # a server shutting down stops following (its thread must end)
                return

    def cancel(self, run: str) -> Run:
        current = self.status(run)
        if current.done:
            raise LabkitError(f"Run {run} is already {current.state}: nothing to cancel")
        with self._lock:
            if self._waiting.pop(run, None) is not None:
                return Run(run, CANCELLED, "cancelled before it started", self.name, run,
                           sweep_id=self._sweep_of.get(run, ""))
            proc = self._procs.get(run)
            self._cancelled.add(run)
        if proc is not None:
            proc.cancel()
        else:  # started by another process on this machine: its pid is in status.json
            status = RunFolder(self.base_dir, run).status
            if status.get("host") != socket.gethostname() or not status.get("pid"):
                raise LabkitError(f"Run {run} runs on {status.get('host') or 'another host'}: cancel it there")
            try:
                os.kill(int(status["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = self.status(run)
            if current.done:
                return current
            time.sleep(0.1)
        return current

    def result(self, run: str) -> RunResult:
        return find_run(self.base_dir, run)

    def fetch(self, run: str, store: Any = None) -> RunResult:
        """Bring ``run`` home from the artifact store (``store``, default the cluster settings') into
        ``base_dir``: verified, atomic, in a local run's layout; a folder of it already here is left as it is."""
        from labkit.results.store import AlreadyHere, fetch_run
        from labkit.runners.cluster.submission import configured_store

        check_run_id(run)
        store = configured_store() if store is None else store
        if store is None:
            raise LabkitError("No artifact store configured: set store in the cluster settings (LABKIT_CLUSTER_CONFIG)")
        try:
            return load_run(fetch_run(store, run, self.base_dir))
        except AlreadyHere as here:
            return load_run(here.path)

    def active(self) -> bool:
        """Whether a run this backend started (or a sweep's set waiting to start) is still going."""
        with self._lock:
            return bool(self._waiting) or any(not p.done() for p in self._procs.values())

    def close(self) -> None:
        """Cancel what this backend started and is still running, and stop following logs (a server shutting down)."""
        self._closed.set()
        with self._lock:
            self._waiting.clear()
            procs = list(self._procs.values())
        for proc in procs:
            proc.cancel()


def _read(folder: RunFolder) -> str:
    try:
        return folder.file(LOG_FILE).read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return ""
