"""The user's directory as seen from here: where a cluster run's result folder comes home.

Both cluster backends (Kubernetes directly and the hub service) read results the same way:
the NFS directory the pods write to is mounted here at ``storage.local_base_dir`` (else
``$BASE_DIR``, else home). :class:`ResultsHere` is that one place; the Job objects never are.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Protocol, Sequence

from labkit.errors import LabkitError, RunFailed
from labkit.params import IcaParams
from labkit.results.reading import RunResult, find_run, list_runs
from labkit.runners.cluster.errors import ClusterError, SettingsError
from labkit.runners.cluster.manifests import cluster_params
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.cluster.status import JobStatus, SweepStatus

logger = logging.getLogger(__name__)


class ResultsHere:
    """Result folders of cluster runs in the user's directory, when it is mounted here."""

    def __init__(self, settings: ClusterSettings, visible: bool = True) -> None:
        self.settings = settings
        #: False in the hub service: the user's directory is not mounted there
        self.visible = visible

    def status(self, run_id: str) -> dict[str, Any] | None:
        """The result folder's status.json, if the user's directory is visible here."""
        base = self.settings.storage.local_dir()
        if not run_id or not self.visible or not base.is_dir():
            return None
        try:
            return find_run(base, run_id).status
        except LabkitError:
            return None

    def completed(self, sets: Sequence[IcaParams]) -> dict[str, RunResult | None]:
        """Per set digest, the newest succeeded folder of that very set (reading the directory once).

        A set matches by digest as submitted and as the pod saw it (``base_dir`` is not part of
        the digest; an absolute recording path becomes relative).
        """
        base = self.settings.storage.local_dir()
        newest: dict[str, RunResult] = {}
        for run in list_runs(base) if self.visible and base.is_dir() else []:  # oldest first: newest wins
            if run.params is not None and run.state == "succeeded":
                newest[run.params.digest] = run
        out: dict[str, RunResult | None] = {}
        for params in sets:
            digests = [params.digest]
            try:
                digests.append(cluster_params(params, self.settings).digest)
            except SettingsError:
                pass
            found = [newest[d] for d in digests if d in newest]
            out[params.digest] = max(found, key=lambda r: r.path.name) if found else None
        return out

    def result(self, run_id: str, local_base_dir: str | os.PathLike | None = None) -> RunResult:
        """The run's result folder, loaded exactly like a local run's."""
        base = local_base_dir or self.settings.storage.local_dir()
        try:
            return find_run(base, run_id)
        except LabkitError as err:
            raise ClusterError(f"{err}; if your data directory is mounted elsewhere here, set "
                               "storage.local_base_dir (LABKIT_CLUSTER_STORAGE__LOCAL_BASE_DIR)") from None

    def sweep_results(self, status: SweepStatus) -> list[RunResult]:
        """The folders of a sweep's finished runs found here (any state)."""
        base = self.settings.storage.local_dir()
        found = []
        for run in status.runs:
            if run.done and run.run_id:
                try:
                    found.append(find_run(base, run.run_id))
                except LabkitError:
                    logger.info("no result folder for run %s under %s", run.run_id, base)
        return found


class Following(Protocol):
    def submit(self, params: IcaParams, *, force: bool = False) -> Any: ...
    def watch(self, name: str, on_change: Callable[[JobStatus], None] | None = None) -> JobStatus: ...
    def result(self, name_or_status: str | JobStatus) -> RunResult: ...


def run_to_result(jobs: Following, params: IcaParams, *, force: bool = False,
                  on_change: Callable[[JobStatus], None] | None = None) -> RunResult:
    """Submit (or attach), follow to the end and return the result folder like a local run.

    A failed Job raises :class:`RunFailed` with the reason in words (and the folder, when the
    analysis itself failed).
    """
    sub = jobs.submit(params, force=force)
    if sub.existing is not None:
        return sub.existing
    final = jobs.watch(sub.name, on_change=on_change)
    if final.phase == "succeeded":
        return jobs.result(final)
    folder = None
    if final.infrastructure is False:
        try:
            folder = jobs.result(final).path
        except LabkitError:
            folder = None
    kind = "cluster problem" if final.infrastructure else "analysis error" if final.infrastructure is False else "failed"
    raise RunFailed(f"Cluster run {final.run_id} ({final.name}) failed [{kind}]: {final.reason}", folder)
