"""The notebook and CLI side of hub mode: runs through the lab hub's labkit service.

:class:`HubJobs` speaks the service's HTTP API (the same operations :class:`ClusterJobs`
does against Kubernetes, no code shared by inheritance); :class:`HubBackend` is it behind
the runs interface. The user's JupyterHub token (``$JUPYTERHUB_API_TOKEN``) goes with every
request and the service decides everything else. Results are read from the user's own
directory, which the hub mounts here, exactly as in direct mode (:mod:`~labkit.runners.cluster.userdir`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote, urlencode

import urllib3

from labkit.errors import LabkitError, ParameterError
from labkit.params import IcaParams
from labkit.results.layout import new_run_id
from labkit.results.reading import RunResult
from labkit.runners.cluster.errors import (
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnavailable,
)
from labkit.runners.cluster.follow import FollowClock
from labkit.runners.cluster.jobs import ClusterJobs
from labkit.runners.cluster.manifests import recording_fingerprints
from labkit.runners.cluster.settings import ClusterSettings
from labkit.runners.cluster.status import JobPendingTooLong, JobStatus, SweepStatus
from labkit.runners.cluster.submission import Submission, SweepSubmission
from labkit.runners.cluster.userdir import ResultsHere, run_to_result

logger = logging.getLogger(__name__)

SERVICE_URL_ENV = "LABKIT_HUB_SERVICE_URL"
#: HTTP statuses worth another try: the service restarting behind the proxy
RETRY = (502, 503, 504)


def hub_service_url(environ: dict[str, str] | None = None) -> str | None:
    """The labkit service's URL (ending in ``/``), or None when not on a hub with the service.

    ``$LABKIT_HUB_SERVICE_URL`` wins; else, inside a hub user server (``$JUPYTERHUB_API_URL``),
    the hub is asked where its ``labkit`` service is (``GET services/labkit``).
    """
    environ = dict(os.environ if environ is None else environ)
    explicit = environ.get(SERVICE_URL_ENV, "").strip()
    if explicit:
        return explicit.rstrip("/") + "/"
    api_url, token = environ.get("JUPYTERHUB_API_URL"), environ.get("JUPYTERHUB_API_TOKEN")
    if not api_url or not token:
        return None
    try:
        resp = urllib3.request("GET", api_url.rstrip("/") + "/services/labkit",
                               headers={"Authorization": f"token {token}"}, timeout=5.0, retries=False)
    except urllib3.exceptions.HTTPError as err:
        logger.info("cannot ask the hub for the labkit service (%s): using the cluster directly", err)
        return None
    if resp.status != 200:
        logger.info("the hub has no labkit service for you (HTTP %d): using the cluster directly", resp.status)
        return None
    model = resp.json()
    if not model.get("url"):
        return None
    return model["url"].rstrip("/") + "/" + str(model.get("prefix") or "/services/labkit/").strip("/") + "/"


class HubJobs:
    """One user's labkit runs through the hub service; the operations of :class:`ClusterJobs`, over HTTP."""

    def __init__(self, settings: ClusterSettings | None = None, user: str | None = None, api_client: Any = None, *,
                 sleep: Callable[[float], None] = time.sleep, poll_interval: float | None = None,
                 user_dir_here: bool = True, url: str | None = None, token: str | None = None,
                 profile: str | None = None, timeout: float = 30.0) -> None:
        self.settings = settings or ClusterSettings.load()
        self.url = (url or hub_service_url() or "").rstrip("/") + "/"
        if self.url == "/":
            raise ClusterError(f"No labkit hub service found: set {SERVICE_URL_ENV}")
        self.token = token if token is not None else os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.user = user or os.environ.get("JUPYTERHUB_USER", "")
        self.profile = profile
        self.namespace = ""
        self.sleep = sleep
        self.user_dir_here = user_dir_here
        self.here = ResultsHere(self.settings, user_dir_here)
        self.poll_interval = poll_interval if poll_interval is not None else 30.0
        self.watch_state: dict[str, Any] = {}
        self.http = urllib3.PoolManager(retries=False)
        #: seconds to wait for an answer to a short request before trying again (when that is safe)
        self.timeout = timeout

    # -- HTTP ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                timeout: float | None = None, stream: bool = False, attempts: int = 8,
                repeatable: bool | None = None) -> Any:
        """One API call; waits out the service restarting (connection refused, 502/503/504).

        A request that may have reached the service (a read timeout, a 502/504 from the proxy)
        is sent again only when ``repeatable``: reads are, and so are submits carrying their
        idempotency key (run ids) and cancels (the service answers a repeated one with what
        it cancelled). Anything else is never repeated blindly.
        """
        repeatable = method == "GET" if repeatable is None else repeatable
        timeout = self.timeout if timeout is None else timeout
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                resp = self.http.request(method, url, body=data, headers=headers, preload_content=not stream,
                                         timeout=urllib3.Timeout(connect=10.0, read=timeout))
            except urllib3.exceptions.HTTPError as err:
                problem = f"{type(err).__name__}: {err}"
                if not (repeatable or _never_sent(err)):
                    raise ClusterUnavailable(f"The labkit service did not answer {method} {path} ({problem}); it may "
                                             "have done it: look with labkit jobs before trying again") from None
            else:
                if resp.status not in RETRY or (resp.status != 503 and not repeatable):
                    if resp.status >= 400:
                        raise _error(resp, method, path)
                    return resp if stream else (json.loads(resp.data) if resp.data else {})
                problem = f"HTTP {resp.status}"
            delay = min(5.0, 0.25 * 2 ** (attempt - 1))
            logger.info("labkit service: %s %s failed (%s); again in %.1f s", method, path, problem, delay)
            self.sleep(delay)
        raise ClusterUnavailable(f"The labkit service at {self.url} cannot be reached ({problem}); "
                                 "try again later or ask the hub admin")

    # -- submit --------------------------------------------------------------------------------
    def submit(self, params: IcaParams, *, force: bool = False, run_id: str | None = None,
               sweep_id: str | None = None, profile: str | None = None) -> Submission:
        done = None if force else self.completed(params)
        if done is not None:
            return Submission("", "", done.run_id, False, {}, (f"the same parameter set already ran: run "
                                                              f"{done.run_id}, result {done.path} (use --force to run "
                                                              "it again)",), done)
        if sweep_id is not None:
            return self.submit_sweep([params], sweep_id=sweep_id, force=force, profile=profile).runs[0]
        body = {"params": params.to_dict(), "force": force, "run_id": run_id or new_run_id(params),
                "profile": profile or self.profile,  # the run id is the idempotency key: a retry attaches
                "recordings": recording_fingerprints([params]) or None}  # a pod without the share fetches these
        out = self.request("POST", "api/runs", {k: v for k, v in body.items() if v is not None}, repeatable=True)
        return _submission(out)

    def submit_sweep(self, params_list: Sequence[IcaParams], *, volcano: bool | None = None,
                     sweep_id: str | None = None, force: bool = False, min_available: int | None = None,
                     profile: str | None = None) -> SweepSubmission:
        if volcano is not None or min_available not in (None, 1):
            raise ParameterError("volcano" if volcano is not None else "min_available",
                                 volcano if volcano is not None else min_available,
                                 "nothing on a hub: the admin's settings choose the scheduler, the queue and the "
                                 "gang size (drop --volcano/--min-available)")
        sets = list({p.digest: p for p in params_list}.values())
        if not sets:
            raise ParameterError("sets", [], "at least one parameter set")
        done = {} if force else self._completed(sets)
        existing = tuple(Submission("", "", r.run_id, False, {}, (), r) for p in sets if (r := done.get(p.digest)))
        todo = [p for p in sets if done.get(p.digest) is None]
        if not todo:
            return SweepSubmission(sweep_id or "", "jobs", existing)
        body = {"sets": [p.to_dict() for p in todo], "run_ids": [f"{new_run_id(p)}-{i}" for i, p in enumerate(todo)],
                "force": force, "sweep_id": sweep_id, "profile": profile or self.profile,
                "recordings": recording_fingerprints(todo) or None}
        out = self.request("POST", "api/sweeps", {k: v for k, v in body.items() if v is not None}, timeout=120.0,
                           repeatable=True)
        runs = tuple(_submission(r) for r in out["runs"])
        return SweepSubmission(out["sweep_id"], out["kind"], existing + runs, out.get("name", ""),
                               out.get("attached", False), (), tuple(out.get("warnings") or ()))

    # -- read ------------------------------------------------------------------------------------
    def list(self, sweep_id: str | None = None, *, volcano: bool = True) -> list[JobStatus]:
        out = self.request("GET", "api/runs", query={"sweep": sweep_id} if sweep_id else None)
        return [_status(r) for r in out["runs"]]

    def status(self, name: str, *, with_events: bool | None = None) -> JobStatus:
        return _status(self.request("GET", f"api/runs/{quote(name, safe='')}"))

    run_status = status

    def volcano_jobs(self, sweep_id: str | None = None) -> list[dict[str, Any]]:
        """Volcano Jobs are the service's business: their runs are listed by ``sweep_status``."""
        return []

    def sweep_status(self, sweep_id: str, names: Sequence[str] = ()) -> SweepStatus:
        return _sweep(self.request("GET", f"api/sweeps/{quote(sweep_id, safe='')}"))

    # -- follow ----------------------------------------------------------------------------------
    def watch(self, name: str, on_change: Callable[[JobStatus], None] | None = None,
              timeout: float | None = None) -> JobStatus:
        """Follow the run until it ends: long-polls the service (which watches the cluster once for everyone)."""
        return self._poll(f"api/runs/{quote(name, safe='')}", _status, lambda st: [st], on_change, timeout,
                          lambda st, waited: JobPendingTooLong(st, waited), name)

    def watch_sweep(self, sweep_id: str, on_change: Callable[[JobStatus], None] | None = None,
                    timeout: float | None = None, names: Sequence[str] = ()) -> SweepStatus:
        def too_long(st: SweepStatus, waited: float) -> ClusterError:
            return ClusterError(f"Sweep {sweep_id} is still pending after {waited:.0f} s: {st.reason}")

        return self._poll(f"api/sweeps/{quote(sweep_id, safe='')}", _sweep, lambda st: list(st.runs), on_change,
                          timeout, too_long, f"sweep {sweep_id}")

    def _poll(self, path: str, parse: Callable[[dict[str, Any]], Any], runs: Callable[[Any], list[JobStatus]],
              on_change: Callable[[JobStatus], None] | None, timeout: float | None,
              too_long: Callable[[Any, float], ClusterError], what: str) -> Any:
        clock = FollowClock(self.settings.pending_timeout, timeout)
        last: dict[str, JobStatus] = {}
        after = ""

        def timed_out(current: Any) -> ClusterError:
            return ClusterError(f"Stopped following {what} after {timeout:.0f} s; it is {current.phase} "
                                f"({current.reason})")

        while True:
            left = clock.left()
            wait = min(self.poll_interval, 55.0, *(() if left is None else (left,)))
            data = self.request("GET", path, query={"wait": f"{wait:.1f}", "after": after}, timeout=wait + 30)
            after = data.get("fingerprint", "")
            current = parse(data)
            for run in runs(current):
                if last.get(run.name) != run:
                    last[run.name] = run
                    if on_change:
                        on_change(run)
            if current.done:
                return current
            clock.check(current, too_long, timed_out)

    def logs(self, name: str, follow: bool = False, wait: float | None = None) -> Iterator[str]:
        resp = self.request("GET", f"api/runs/{quote(name, safe='')}/log", query={"follow": int(follow)},
                            timeout=3600.0, stream=True)
        buffer = b""
        try:
            for chunk in resp.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if buffer:
                yield buffer.decode("utf-8", "replace")
        finally:
            resp.release_conn()

    # -- results (read from the user's directory, mounted here) -----------------------------------
    def completed(self, params: IcaParams) -> RunResult | None:
        return self.here.completed([params])[params.digest]

    def _completed(self, sets: Sequence[IcaParams]) -> dict[str, RunResult | None]:
        return self.here.completed(sets)

    def result(self, name_or_status: str | JobStatus, local_base_dir: str | os.PathLike | None = None) -> RunResult:
        st = name_or_status if isinstance(name_or_status, JobStatus) else self.status(name_or_status)
        return self.here.result(st.run_id, local_base_dir)

    def sweep_results(self, sweep: str | SweepStatus) -> list[RunResult]:
        return self.here.sweep_results(sweep if isinstance(sweep, SweepStatus) else self.sweep_status(sweep))

    def run(self, params: IcaParams, *, force: bool = False,
            on_change: Callable[[JobStatus], None] | None = None) -> RunResult:
        """Submit (or attach), follow to the end and return the result folder like a local run."""
        return run_to_result(self, params, force=force, on_change=on_change)

    volcano_task = staticmethod(ClusterJobs.volcano_task)

    # -- manage ----------------------------------------------------------------------------------
    def cancel(self, name: str, propagation: str = "Background") -> None:
        self.request("DELETE", f"api/runs/{quote(name, safe='')}", repeatable=True)

    def cancel_sweep(self, sweep_id: str, propagation: str = "Background") -> list[str]:
        """Cancel the sweep; the names of its runs cancelled now or by an earlier (repeated) cancel."""
        return list(self.request("DELETE", f"api/sweeps/{quote(sweep_id, safe='')}", repeatable=True,
                                 timeout=120.0)["cancelled"])

    def result_folder(self, name: str) -> dict[str, Any]:
        """Where the run's result folder is in your directory (``folder``), with its phase."""
        return self.request("GET", f"api/runs/{quote(name, safe='')}/result")


def _never_sent(err: urllib3.exceptions.HTTPError) -> bool:
    """True when the request cannot have reached the service (no connection was made)."""
    reason = getattr(err, "reason", None)
    return isinstance(err, urllib3.exceptions.NewConnectionError) or isinstance(
        reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


class RequestRefused(LabkitError):
    """The service refused what was sent (HTTP 400); the message names the field."""

    exit_code = 2


def _error(resp: Any, method: str, path: str) -> LabkitError:
    body: Any = {}
    try:
        body = json.loads(resp.data)
        message = body.get("error") or resp.reason
    except (ValueError, AttributeError):
        message = resp.reason or f"HTTP {resp.status}"
    text = f"labkit service: {message}"
    if resp.status == 400:
        return RequestRefused(text)
    if resp.status in (401, 403):
        return ClusterForbidden(text)
    if resp.status == 404:
        return ClusterNotFound(text)
    if resp.status == 409:
        return ClusterConflict(text)
    if resp.status == 422:
        return ClusterInvalid(text, body.get("field") if isinstance(body, dict) else None)
    return ClusterError(f"{text} ({method} {path}: HTTP {resp.status})")


def _status(data: dict[str, Any]) -> JobStatus:
    fields = {k: v for k, v in data.items() if k in JobStatus.__dataclass_fields__}
    fields["events"] = tuple(fields.get("events") or ())
    return JobStatus(**fields)


def _sweep(data: dict[str, Any]) -> SweepStatus:
    return SweepStatus(data["sweep_id"], tuple(_status(r) for r in data["runs"]), data.get("kind", "jobs"),
                       data.get("name", ""))


def _submission(data: dict[str, Any]) -> Submission:
    return Submission(data["name"], data.get("namespace", ""), data["run_id"], bool(data.get("attached")), {},
                      tuple(data.get("warnings") or ()))


def HubBackend(url: str | None = None, token: str | None = None, **kwargs: Any) -> Any:  # noqa: N802 - a factory
    """The lab hub's labkit service behind the runs interface (it submits for you)."""
    from labkit.runners.cluster.backend import JobsBackend

    return JobsBackend(HubJobs(url=url, token=token, **kwargs), "hub")


def cluster_jobs(settings: ClusterSettings | None = None, user: str | None = None) -> ClusterJobs | HubJobs:
    """The user's cluster Jobs from here: through the hub's labkit service when there is one
    (:func:`hub_service_url`), else Kubernetes directly with your own kubeconfig."""
    if hub_service_url():
        return HubJobs(settings, user)
    return ClusterJobs(settings, user)


def cluster_backend(settings: ClusterSettings | None = None, user: str | None = None) -> Any:
    """:func:`cluster_jobs` behind the runs interface: ``hub`` through the service, else ``cluster``."""
    from labkit.runners.cluster.backend import JobsBackend

    jobs = cluster_jobs(settings, user)
    return JobsBackend(jobs, "hub" if isinstance(jobs, HubJobs) else "cluster")


def service_store(user: str | None = None) -> Any | None:
    """My part of the artifact store as the hub service reads it for me, on a hub with the labkit service (else
    None): a user's server needs no store credentials of its own."""
    return cluster_backend(user=user).store() if hub_service_url() else None
