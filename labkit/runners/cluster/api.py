"""The one door to the Kubernetes API: :func:`call` retries what is worth retrying and explains the rest.

* connection errors, HTTP 5xx and 429 are retried with bounded exponential backoff
  (429 and 503 honour ``Retry-After``), each attempt logged with its number;
* 401/403, 404, 409 and 422 become typed :class:`~labkit.runners.cluster.errors.ClusterError`
  subclasses whose message says what happened and what to do, never a raw traceback.

:func:`load_api_client` picks in-cluster configuration inside a pod (a JupyterHub user
server with a service account) and the user's kubeconfig elsewhere.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time
from typing import Any, Callable, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from labkit.runners.cluster.errors import (
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterGone,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnavailable,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: exceptions that mean "the connection broke", worth another try
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def load_api_client() -> k8s.ApiClient:
    """An ApiClient from the in-cluster service account, else from kubeconfig."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            # read $KUBECONFIG now: the client's default was fixed when it was imported
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        except (config.ConfigException, OSError, TypeError) as err:
            raise ClusterUnavailable(
                "No Kubernetes access configured: not inside a cluster pod and no usable kubeconfig "
                f"({err}). On the hub this needs the service account of k8s/labkit-service-rbac.yaml; elsewhere set "
                "KUBECONFIG."
            ) from None
    return own_retries(k8s.ApiClient())


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def current_namespace() -> str:
    """This pod's namespace (service account), else the kubeconfig context's, else ``default``."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as fh:
            ns = fh.read().strip()
        if ns:
            return ns
    except OSError:
        pass
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)
        ns = ((active or {}).get("context") or {}).get("namespace")
        if ns:
            return ns
    except Exception:  # no kubeconfig: fall through to the default
        pass
    return "default"


def own_retries(api_client: k8s.ApiClient) -> k8s.ApiClient:
    """Turn off urllib3's own retries on this client, so :func:`call` is the only retry loop.

    urllib3 would otherwise silently retry 429/503 honouring any ``Retry-After`` (even an
    hour), invisible to the user and unbounded by labkit's settings.
    """
    from kubernetes.client import rest

    if api_client.configuration.retries is not False:
        api_client.configuration.retries = False
        api_client.rest_client = rest.RESTClientObject(api_client.configuration)
    return api_client


def api_message(err: ApiException) -> str:
    """The API server's own message from an error response, else its reason phrase."""
    try:
        body = json.loads(err.body) if err.body else {}
    except (TypeError, ValueError):
        body = {}
    return (body.get("message") if isinstance(body, dict) else None) or str(err.reason or "").strip() or "no details"


def invalid_field(err: ApiException) -> str | None:
    """The field a 422 names (its first ``details.causes[].field``), when the API server gave one."""
    try:
        causes = (json.loads(err.body or "{}").get("details") or {}).get("causes") or []
    except (AttributeError, TypeError, ValueError):
        return None
    fields = [c.get("field") for c in causes if isinstance(c, dict) and c.get("field")]
    return str(fields[0]) if fields else None


def retry_after(err: ApiException) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    headers = err.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def explain(err: ApiException, what: str) -> ClusterError:
    """A typed error a researcher can act on, from an API error response."""
    msg = api_message(err)
    status = err.status
    if status == 401:
        return ClusterForbidden(f"Cannot {what}: the cluster did not accept your credentials ({msg}); "
                                "log in again or ask the admin to check the hub's service account "
                                "(k8s/labkit-service-rbac.yaml)")
    if status == 403:
        return ClusterForbidden(f"Cannot {what}: not allowed ({msg}). The service account needs the permissions "
                                "in k8s/labkit-service-rbac.yaml; ask your cluster admin")
    if status == 404:
        return ClusterNotFound(f"Cannot {what}: it does not exist (maybe finished and cleaned up, or cancelled)")
    if status == 409:
        return ClusterConflict(f"Cannot {what}: it already exists ({msg})")
    if status == 410:
        return ClusterGone(f"Cannot {what}: the resource version expired (410 Gone; {msg})")
    if status == 422:
        field = invalid_field(err)
        where = f" in {field}" if field else ""
        return ClusterInvalid(f"Cannot {what}: the cluster refused it as invalid{where} ({msg})", field)
    return ClusterError(f"Cannot {what}: the cluster answered HTTP {status} ({msg})")


def call(fn: Callable[..., T], *args: Any, what: str, retries: int = 5, max_backoff: float = 30.0,
         base_backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> T:
    """Call one Kubernetes client method; retry transient failures; raise a ClusterError otherwise.

    ``what`` completes "Cannot ..." in messages, e.g. ``"create Job labkit-anna-1a2b3c"``.
    The wait before attempt ``n + 1`` is ``Retry-After`` when the server sends one, else
    ``base_backoff * 2**(n-1)`` with jitter; both are capped at ``max_backoff``.
    """
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except ApiException as err:
            if err.status not in RETRY_STATUSES:
                raise explain(err, what) from None
            hint = retry_after(err)
            problem = f"HTTP {err.status} ({api_message(err)})"
            if attempt == attempts:
                raise ClusterUnavailable(f"Cannot {what}: the cluster kept answering {problem} after "
                                         f"{attempts} attempts; try again later") from None
        except CONNECTION_ERRORS as err:
            hint = None
            problem = f"connection problem ({type(err).__name__}: {err})"
            if attempt == attempts:
                raise ClusterUnavailable(f"Cannot {what}: the cluster cannot be reached ({problem}) after "
                                         f"{attempts} attempts; check the network or try again later") from None
        if hint is not None:
            delay = min(hint, max_backoff)
        else:
            delay = min(max_backoff, base_backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        logger.warning("%s: attempt %d/%d failed with %s; retrying in %.1f s", what, attempt, attempts, problem, delay)
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
