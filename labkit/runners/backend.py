"""The runs interface: one vocabulary for runs wherever they execute.

Every face (the CLI, the widgets, the hub service, the JupyterLab extension) talks to a
:class:`Backend`; three implement it, none inheriting from another:

- :class:`labkit.runners.machine.MachineBackend`: this machine (a child process per run);
- :class:`labkit.runners.cluster.backend.ClusterBackend`: Kubernetes directly (your kubeconfig);
- :class:`labkit.runners.hub.HubBackend`: the lab hub's labkit service, which submits for you.

:func:`labkit.runners.factory.choose_backend` picks one from the environment and says why. A run is told as a
:class:`Run` whose ``state`` is one of :data:`RUN_STATES`, the same words everywhere a run is
shown or stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

from labkit.errors import LabkitError
from labkit.params import IcaParams
from labkit.results.reading import RunResult
from labkit.results.states import CANCELLED, DAMAGED, FAILED, QUEUED, RUNNING, SUCCEEDED, WITH_WARNINGS

#: every state a run is shown in, in the order a run passes through them (the words of :mod:`labkit.results.states`)
RUN_STATES = (QUEUED, RUNNING, SUCCEEDED, WITH_WARNINGS, FAILED, CANCELLED)
#: the states after which nothing changes any more
FINAL_STATES = frozenset({SUCCEEDED, WITH_WARNINGS, FAILED, CANCELLED})


@dataclass(frozen=True)
class Run:
    """One run as any backend tells it."""

    #: the run's id: its result folder is ``<base>/PreExperiment_ICA_<run_id>``
    run_id: str
    #: one of :data:`RUN_STATES`
    state: str
    #: why it is in this state, in plain words (the failure or cancel reason; empty when there is nothing to say)
    reason: str = ""
    #: ``machine``, ``cluster`` or ``hub``: which backend this run lives on
    backend: str = ""
    #: the handle the backend acts on (a Job's name on a cluster, the run id here)
    name: str = ""
    #: the analysis step it is in (``fit``, ``topomaps``, ...) when known
    step: str = ""
    recording: str = ""
    method: str = ""
    sweep_id: str = ""
    created: str = ""
    warnings: tuple[str, ...] = ()
    #: where it runs or ran: the result folder here, ``namespace/node`` on a cluster
    where: str = ""
    #: backend details a face may show (pod, node, events, infrastructure or analysis failure)
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def summary(self) -> str:
        text = f"{self.run_id or self.name}: {self.state}"
        return f"{text} - {self.reason}" if self.reason else text

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "state": self.state, "reason": self.reason, "backend": self.backend,
                "name": self.name, "step": self.step, "recording": self.recording, "method": self.method,
                "sweep_id": self.sweep_id, "created": self.created, "warnings": list(self.warnings),
                "where": self.where, "done": self.done}


def check_state(state: str | None) -> str | None:
    """``state`` if it is one of :data:`RUN_STATES` (or None), else a clear error naming the allowed ones."""
    if state is not None and state not in RUN_STATES:
        from labkit.errors import ParameterError

        raise ParameterError("state", state, "one of " + ", ".join(RUN_STATES))
    return state


def run_of(result: RunResult, *, backend: str = "machine", sweep_id: str = "") -> Run:
    """A result folder told as a :class:`Run` (the same words for a local and a cluster run's folder)."""
    status = result.status
    state = result.outcome
    reason = result.error or ""
    if state == FAILED and (status.get("kind") == "cancelled" or reason.startswith("cancelled")):
        state = CANCELLED  # folders written before the cancelled state existed
    if state == DAMAGED:  # its files cannot be read: it is no result, and the reason says why
        state = FAILED
    params = result.params
    return Run(run_id=result.run_id, state=state, reason=reason if state in (FAILED, CANCELLED) else "",
               backend=backend, name=result.run_id, step=str(status.get("step") or ""),
               recording=params.raw_file_path if params else "", method=params.method if params else "",
               sweep_id=sweep_id or str(status.get("sweep_id") or ""), created=str(status.get("created") or ""),
               warnings=tuple(result.warnings), where=str(result.path))


@runtime_checkable
class Backend(Protocol):
    """Where runs execute. Every method acts on the current user's runs only."""

    #: ``machine``, ``cluster`` or ``hub``
    name: str

    def submit(self, params: IcaParams, *, run_id: str | None = None, force: bool = False) -> Run:
        """Start a run of ``params`` and return at once (queued or running)."""

    def submit_sweep(self, sets: Sequence[IcaParams], *, sweep_id: str | None = None,
                     force: bool = False) -> list[Run]:
        """Start one run per distinct set, all labelled with one sweep id."""

    def runs(self, *, state: str | None = None, sweep: str | None = None,
             recording: str | None = None) -> list[Run]:
        """My runs, newest first, filtered by state, sweep and recording."""

    def status(self, run: str) -> Run:
        """One run as it is now (``run``: its id or its name on this backend)."""

    def log(self, run: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The run's log lines: the last ``tail`` (all when None); with ``follow`` until it ends."""

    def cancel(self, run: str) -> Run:
        """Stop the run; it is then told as ``cancelled``."""

    def result(self, run: str) -> RunResult:
        """The finished run's result folder, loaded as a local run's."""


def wait(backend: Backend, run: str, *, timeout: float | None = None, interval: float = 0.5,
         on_change: Any = None) -> Run:
    """Poll ``backend`` until ``run`` ends (or ``timeout`` seconds pass: then a LabkitError)."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        current = backend.status(run)
        if current != last and on_change is not None:
            on_change(current)
        last = current
        if current.done:
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise LabkitError(f"Run {run} is still {current.state} after {timeout} s")
        time.sleep(interval)
