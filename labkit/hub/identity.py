"""Who is asking: the hub's answer for the request's token, asked afresh on every request.

The token comes from the ``Authorization`` header only (``token <t>`` or ``Bearer <t>``):
a token in the URL would land in access logs, browser histories and proxies, so a request
carrying ``?token=`` is refused outright rather than silently ignored. The hub is asked
every time (``use_cache=False``; HubAuth's ``cache_max_age=0`` would mean *forever*), so a
revoked or expired token, or the token of a deleted user, stops on the very next request.
"""

from __future__ import annotations

import re
from typing import Any

from tornado.httputil import HTTPServerRequest

from labkit.errors import LabkitError

_AUTHORIZATION = re.compile(r"(?:token|bearer) +(\S+)", re.IGNORECASE)


class Refused(LabkitError):
    """A request refused before any work, with its HTTP status (and headers such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        super().__init__(message)


def token_from(request: HTTPServerRequest) -> str:
    """The token of the ``Authorization`` header; a token anywhere in the URL is refused (400)."""
    if "token" in request.query_arguments:
        raise Refused(400, "a token in the URL is refused (it would be written to logs): send it in the header "
                           "'Authorization: token <your JupyterHub API token>'")
    match = _AUTHORIZATION.fullmatch(request.headers.get("Authorization", "").strip())
    if match is None:
        raise Refused(401, "no token: send 'Authorization: token <your JupyterHub API token>'")
    return match.group(1)


async def current_user(hub_auth: Any, request: HTTPServerRequest, scopes: set[str]) -> str:
    """The hub user name behind the request's token, checked with the hub now (never cached)."""
    token = token_from(request)
    model = await hub_auth.user_for_token(token, use_cache=False, sync=False)
    if not model:
        raise Refused(403, "the hub did not accept this token (revoked, expired, or its user was deleted)")
    if model.get("kind", "user") != "user":
        raise Refused(403, "only users run analyses (this token belongs to a service)")
    if not hub_auth.check_scopes(scopes, model):
        raise Refused(403, f"this token lacks the scope {sorted(scopes)[0]}")
    name = model.get("name")
    if not isinstance(name, str) or not name:
        raise Refused(403, "the hub named no user for this token")
    return name
