"""Cluster runs behind the runs interface.

Kubernetes directly (:class:`~labkit.runners.cluster.jobs.ClusterJobs`, your kubeconfig) and
the hub service (:class:`~labkit.runners.hub.HubJobs`, which submits for you) do the same
operations in different ways; :class:`JobsBackend` tells either's Jobs as :class:`Run` s in
the one state vocabulary. :func:`ClusterBackend` is the direct one.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Callable, Iterator, Sequence

from labkit.errors import LabkitError
from labkit.params import IcaParams
from labkit.results.reading import RunResult
from labkit.runners.backend import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    WITH_WARNINGS,
    Run,
    check_state,
    run_of,
)
from labkit.runners.cluster.errors import ClusterNotFound
from labkit.runners.cluster.status import JobStatus

_PHASE = {"pending": QUEUED, "running": RUNNING, "succeeded": SUCCEEDED, "failed": FAILED}


def run_of_job(st: JobStatus, backend: str, result: RunResult | None = None) -> Run:
    """A Job's status told as a :class:`Run` (``result``: its folder, when it is visible here)."""
    state = _PHASE.get(st.phase, st.phase)
    if state == FAILED and st.reason.startswith("cancelled"):
        state = CANCELLED
    warnings: tuple[str, ...] = ()
    if result is not None and st.phase in ("succeeded", "failed"):
        told = run_of(result, backend=backend, sweep_id=st.sweep_id)
        if told.state in (WITH_WARNINGS, CANCELLED):
            state = told.state
        warnings = told.warnings
    details = {"pod": st.pod, "node": st.node, "kind": st.kind, "infrastructure": st.infrastructure,
               "events": list(st.events), "cell_error": st.cell_error}
    where = "/".join(x for x in (st.namespace, st.node) if x)
    return Run(run_id=st.run_id, state=state, reason=st.reason if state != SUCCEEDED else "", backend=backend,
               name=st.name, recording=st.recording, method=st.method, sweep_id=st.sweep_id, created=st.created,
               warnings=warnings, where=where, details=details)


class JobsBackend:
    """A cluster's runs through ``jobs`` (a ClusterJobs or a HubJobs) in the runs vocabulary."""

    def __init__(self, jobs: Any, name: str) -> None:
        self.jobs = jobs
        self.name = name
        #: Jobs this backend cancelled: once deleted, their status is still told (as cancelled)
        self._cancelled: dict[str, Run] = {}
        self._lock = threading.Lock()

    def _told(self, st: JobStatus) -> Run:
        result = None
        if st.phase in ("succeeded", "failed") and st.run_id:
            try:
                result = self.jobs.result(st)
            except LabkitError:
                result = None
        return run_of_job(st, self.name, result)

    def submit(self, params: IcaParams, *, run_id: str | None = None, force: bool = False,
               sweep_id: str | None = None) -> Run:
        """Submit ``params``; ``details`` say whether it ``already_ran`` (then ``where`` is its folder), was
        ``attached`` to an identical Job still on the cluster, its ``namespace`` and the submission's
        ``submit_warnings`` (a profile's limits, ...)."""
        sub = self.jobs.submit(params, force=force, run_id=run_id, sweep_id=sweep_id)
        said = {"submit_warnings": list(sub.warnings)}
        if sub.existing is not None:
            done = run_of(sub.existing, backend=self.name)
            return dataclasses.replace(done, details={**done.details, **said, "already_ran": True})
        told = self.status(sub.name)
        return dataclasses.replace(told, details={**told.details, **said, "attached": sub.attached,
                                                  "namespace": sub.namespace})

    def submit_sweep(self, sets: Sequence[IcaParams], *, sweep_id: str | None = None,
                     force: bool = False) -> list[Run]:
        sub = self.jobs.submit_sweep(list(sets), sweep_id=sweep_id, force=force)
        out = []
        for run in sub.runs:
            if run.existing is not None:
                out.append(run_of(run.existing, backend=self.name, sweep_id=sub.sweep_id))
            else:
                out.append(Run(run.run_id, QUEUED, "submitted", self.name, run.name, sweep_id=sub.sweep_id))
        return out

    def runs(self, *, state: str | None = None, sweep: str | None = None,
             recording: str | None = None) -> list[Run]:
        check_state(state)
        told: list[Run] = []
        for st in self.jobs.list(sweep):
            if st.kind == "volcano":  # one row per Volcano sweep: its runs, one by one
                told += [run_of_job(r, self.name) for r in self.jobs.sweep_status(st.sweep_id).runs]
            else:
                told.append(run_of_job(st, self.name))
        with self._lock:
            gone = [r for n, r in self._cancelled.items() if n not in {t.name for t in told}]
        told += [r for r in gone if sweep is None or r.sweep_id == sweep]
        return [r for r in told if (state is None or r.state == state)
                and (recording is None or r.recording == recording or r.recording.rsplit("/", 1)[-1] == recording)]

    def _name(self, run: str) -> str:
        """The Job name of ``run`` (a Job name already, a run id, or the run id of one run of a Volcano sweep)."""
        if run.startswith("labkit-"):
            return run
        for st in self.jobs.list(volcano=False):
            if st.run_id == run:
                return st.name
        from labkit.runners.cluster.status import task_run_ids

        for vjob in self.jobs.volcano_jobs():
            for task, run_id in zip(vjob["spec"]["tasks"], task_run_ids(vjob), strict=True):
                if run_id == run:
                    return f"{vjob['metadata']['name']}-{task['name']}"
        return run

    def status(self, run: str) -> Run:
        name = self._name(run)
        try:
            return self._told(self.jobs.run_status(name))
        except ClusterNotFound:
            with self._lock:
                cancelled = self._cancelled.get(name)
            if cancelled is not None:
                return cancelled
            raise

    def watch(self, run: str, on_change: Callable[[Run], None] | None = None) -> Run:
        """Follow ``run`` (a watch on the cluster, not polling) until it ends; ``on_change`` sees each new state."""
        name = self._name(run)
        final = self.jobs.watch(name, on_change=None if on_change is None else
                                lambda st: on_change(run_of_job(st, self.name)))
        return self._told(final)

    def log(self, run: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        lines = self.jobs.logs(self._name(run), follow=follow)
        if follow or tail is None:
            return iter(lines)
        kept = list(lines)
        return iter(kept[len(kept) - tail:] if tail else [])

    def cancel(self, run: str, *, propagation: str = "Background") -> Run:
        """Delete the run's Job (``propagation`` Foreground: once its pods are gone); refused once it ended."""
        name = self._name(run)
        before = self.status(name)
        if before.done:
            raise LabkitError(f"Run {before.run_id or name} is already {before.state}: nothing to cancel")
        self.jobs.cancel(name, propagation)
        told = Run(before.run_id, CANCELLED, "cancelled by you (the Job was deleted)", self.name, name,
                   recording=before.recording, method=before.method, sweep_id=before.sweep_id,
                   created=before.created, where=before.where)
        with self._lock:
            self._cancelled[name] = told
        return told

    def result(self, run: str) -> RunResult:
        return self.jobs.result(self._name(run))

    def store(self) -> Any:
        """My part of the artifact store as this backend reaches it: through the hub service (which holds the
        credentials) or directly with the cluster settings' store and this machine's credentials (None: none)."""
        if self.name == "hub":
            from labkit.runners.cluster.stored import ServiceStore

            return ServiceStore(self.jobs)
        from labkit.runners.cluster.submission import configured_store

        return configured_store(self.jobs.user)

    def stored(self, *, exclude: Sequence[str] = ()) -> list[Run]:
        """My runs in the artifact store (``exclude``: run ids already shown), as :meth:`store` reads them."""
        store = self.store()
        if store is None:
            return []
        if self.name == "hub":
            skip = set(exclude)
            return [r for r in store.runs() if r.run_id not in skip]
        from labkit.runners.cluster.submission import stored_runs

        return stored_runs(store, exclude=exclude)

    def fetch(self, run: str, base_dir: str | os.PathLike) -> RunResult:
        """Bring the stored ``run`` home into ``base_dir``: every file verified against its SHA-256, the folder moved
        into place at once, in a local run's layout; a folder of it already there is left as it is."""
        from labkit.params import check_run_id
        from labkit.results.reading import load_run
        from labkit.results.store import AlreadyHere, fetch_run

        check_run_id(run)
        store = self.store()
        if store is None:
            raise LabkitError("No artifact store configured: set store in the cluster settings (LABKIT_CLUSTER_CONFIG)")
        try:
            return load_run(fetch_run(store, run, base_dir))
        except AlreadyHere as here:
            return load_run(here.path)


def ClusterBackend(settings: Any = None, user: str | None = None, api_client: Any = None,  # noqa: N802 - a factory
                   **kwargs: Any) -> JobsBackend:
    """Kubernetes directly (kubeconfig or in-cluster config; ``api_client`` for an emulator)."""
    from labkit.runners.cluster.jobs import ClusterJobs

    return JobsBackend(ClusterJobs(settings, user, api_client, **kwargs), "cluster")
