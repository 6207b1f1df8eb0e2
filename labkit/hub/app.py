"""The labkit hub service as a process: its address, its hub auth and :func:`serve` (``labkit hub-service``).

The service's state lives in :mod:`~labkit.hub.service`, its HTTP API in :mod:`~labkit.hub.handlers`;
this module puts the two together and listens.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

from kubernetes import client as k8s

from labkit.hub.handlers import make_app
from labkit.hub.service import DEFAULT_PORT, SERVICE_NAME, Service
from labkit.runners.cluster import api
from labkit.runners.cluster.errors import ClusterError
from labkit.runners.cluster.settings import ClusterSettings
from labkit.settings import env

logger = logging.getLogger(__name__)


def listen_address(environ: dict[str, str] | None = None) -> tuple[str, int]:
    """(host, port): from ``$JUPYTERHUB_SERVICE_URL`` when set; ``$LABKIT_HUB_SERVICE_PORT`` wins for the port."""
    environ = dict(os.environ if environ is None else environ)
    url = urlparse(environ.get("JUPYTERHUB_SERVICE_URL", ""))
    host = url.hostname or "0.0.0.0"
    return host, env(environ).hub_service_port or url.port or DEFAULT_PORT


def hub_auth_from_env() -> Any:
    """HubAuth checking users' tokens against the hub API (``$JUPYTERHUB_API_URL``)."""
    from jupyterhub.services.auth import HubAuth

    if not os.environ.get("JUPYTERHUB_API_URL"):
        raise ClusterError("JUPYTERHUB_API_URL is not set: the labkit service runs as a JupyterHub service "
                           "(see k8s/README.md)")
    return HubAuth(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""), api_url=os.environ["JUPYTERHUB_API_URL"])


async def serve(settings: ClusterSettings | None = None, api_client: k8s.ApiClient | None = None,
                ready: Callable[[Service], Awaitable[None] | None] | None = None) -> None:
    """Run the service until cancelled.

    It listens at once and never exits because the API server is slow or throttles it: the
    informers keep trying, ``api/health`` answers 503 with the reason meanwhile, and reads
    go to the API directly until the cache is current.
    """
    settings = settings or ClusterSettings.load()
    service = Service(settings, api_client or api.load_api_client())
    service.start()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    name = os.environ.get("JUPYTERHUB_SERVICE_NAME", SERVICE_NAME)
    app = make_app(service, hub_auth_from_env(), prefix, {f"access:services!service={name}"})
    host, port = listen_address()
    server = app.listen(port, address=host, xheaders=True, max_body_size=4 * service.limits.max_body_bytes)
    logger.info("labkit hub service on http://%s:%d%s (namespace %s)", host, port, prefix, service.namespace)
    try:
        if ready is not None:
            result = ready(service)
            if result is not None:
                await result
        await asyncio.Event().wait()
    finally:
        server.stop()
        service.stop()
