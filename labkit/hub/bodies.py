"""What a user may send the service: parameters and the admin's profile names, nothing else.

Everything that isolates users (namespace, storage, uid/gid, security context, image,
resources, queue) comes from the admin's settings and the hub identity, so any other key in
a body is refused with an error that names it. Each error names its field as a path
(``params.n_components``, ``sets.3.method``, ``security``).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labkit.errors import ExitCode, LabkitError, ParameterError
from labkit.params import IcaParams

#: keys people try, and why the service decides them itself
DECIDED_BY_THE_SERVICE = {
    "user": "your identity comes from your JupyterHub token",
    "owner": "your identity comes from your JupyterHub token",
    "namespace": "the admin's settings decide where runs execute",
    "image": "the admin's settings choose the image",
    "security": "the pod's user, group and security context are the admin's settings",
    "uid": "the pod's user, group and security context are the admin's settings",
    "run_as_user": "the pod's user, group and security context are the admin's settings",
    "privileged": "pods never run privileged",
    "storage": "your storage is the directory the hub gives you",
    "nfs_path": "your storage is the directory the hub gives you",
    "resources": "resources come from the admin's profiles (choose one with 'profile')",
    "node_selector": "placement comes from the admin's profiles (choose one with 'profile')",
    "tolerations": "placement comes from the admin's profiles (choose one with 'profile')",
    "scheduler": "the scheduler and the queue are the admin's settings",
    "queue": "the scheduler and the queue are the admin's settings",
    "volcano": "the scheduler and the queue are the admin's settings",
    "min_available": "a Volcano sweep's gang size is the admin's setting (scheduler.min_available)",
}


class BodyError(LabkitError):
    """A request body the service refuses; ``field`` names where (``params.method``, ``security``)."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubmitBody(_Body):
    """``POST api/runs``: one parameter set."""

    params: dict[str, Any]
    #: an admin-defined profile name (``GET api/profiles``)
    profile: Optional[str] = None
    run_id: Optional[str] = None
    force: bool = False
    #: ``{raw_file_path: SHA-256}`` computed on the user's server: a pod without the share fetches those bytes
    recordings: Optional[dict[str, str]] = None


class SweepBody(_Body):
    """``POST api/sweeps``: many parameter sets."""

    sets: list[dict[str, Any]] = Field(min_length=1, max_length=2000)
    profile: Optional[str] = None
    sweep_id: Optional[str] = None
    #: one per distinct set, in order: the idempotency keys of the sweep's runs (a retry attaches)
    run_ids: Optional[list[str]] = Field(None, min_length=1, max_length=2000)
    force: bool = False
    recordings: Optional[dict[str, str]] = Field(None, max_length=2000)


class TooLarge(BodyError):
    """A body over the size limit (HTTP 413)."""


def parse(model: type[_Body], raw: bytes, *, max_bytes: int = 1 << 20, max_depth: int = 16) -> Any:
    """The body as ``model``; any problem is a :class:`BodyError` naming the field.

    Bodies are bounded (``max_bytes``, ``max_depth``) and nothing a user sent is echoed
    back at length: a refused key or value is shown cut to 80 characters.
    """
    if len(raw) > max_bytes:
        raise TooLarge("", f"the body is {len(raw):,} bytes; the limit is {max_bytes:,} bytes")
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise BodyError("", f"the body is nested too deeply (the limit is {max_depth} levels)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise BodyError("", f"the body is not JSON ({_short(str(err))})") from None
    if _depth(data, max_depth) > max_depth:
        raise BodyError("", f"the body is nested too deeply (the limit is {max_depth} levels)")
    if not isinstance(data, dict):
        raise BodyError("", f"the body must be a JSON object, got {type(data).__name__}")
    allowed = ", ".join(model.model_fields)
    for key in data:
        if key not in model.model_fields:
            why = DECIDED_BY_THE_SERVICE.get(str(key).lower(), "it is not something a user chooses")
            raise BodyError(_short_text(key), f"unknown field; you may send only: {allowed} ({why})")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BodyError(_short_text(where), f"{first['msg']} (got {_short(first.get('input'))})") from None


def params_from(data: dict[str, Any], where: str = "params") -> IcaParams:
    """A parameter set from a body; its errors name ``<where>.<field>``."""
    try:
        return IcaParams.from_dict(data)
    except ParameterError as err:
        raise BodyError(f"{where}.{_short_text(err.field)}", _short_text(str(err), 400)) from None
    except (TypeError, ValueError, OverflowError) as err:  # a value no parameter can take
        raise BodyError(where, f"not a parameter set ({_short_text(str(err), 200)})") from None


def recordings_from(recordings: dict[str, str] | None, sets: list[IcaParams], use_store: bool) -> dict[str, str]:
    """The recordings' fingerprints a body sent, checked: each names a set's recording and is a SHA-256. Runs that
    use the store need one per recording: the pod fetches exactly those bytes, not the latest push of a name."""
    recordings = recordings or {}
    names = {p.raw_file_path for p in sets}
    for name, sha in recordings.items():
        if name not in names:
            raise BodyError(f"recordings.{_short_text(name)}", "names no recording of the sets sent")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BodyError(f"recordings.{_short_text(name)}", f"not a SHA-256 (64 lowercase hex digits): {_short(sha)}")
    missing = sorted(names - set(recordings))
    if use_store and missing:
        raise BodyError("recordings", f"runs without the share need the SHA-256 of each recording, computed where "
                                      f"it is; none for {_short_text(missing[0])} (labkit sends it: push the "
                                      f"recording and submit from the server that holds it)")
    return recordings


def _depth(data: Any, limit: int) -> int:
    """How deeply ``data`` nests lists and dicts (iterative; stops counting past ``limit``)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if level > limit:
                return level
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _short(value: Any) -> str:
    return _short_text(repr(value))


def _short_text(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
