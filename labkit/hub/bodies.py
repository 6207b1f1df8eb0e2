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

from ..errors import LabkitError, ParameterError
from ..params import IcaParams

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
    "scheduler": "the queue is the admin's setting",
    "queue": "the queue is the admin's setting",
}


class BodyError(LabkitError):
    """A request body the service refuses; ``field`` names where (``params.method``, ``security``)."""

    exit_code = 2

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


class SweepBody(_Body):
    """``POST api/sweeps``: many parameter sets."""

    sets: list[dict[str, Any]] = Field(min_length=1, max_length=2000)
    profile: Optional[str] = None
    sweep_id: Optional[str] = None
    force: bool = False
    volcano: Optional[bool] = None
    min_available: int = Field(1, ge=1)


def parse(model: type[_Body], raw: bytes) -> Any:
    """The body as ``model``; any problem is a :class:`BodyError` naming the field."""
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise BodyError("", f"the body is not JSON ({err})") from None
    if not isinstance(data, dict):
        raise BodyError("", f"the body must be a JSON object, got {type(data).__name__}")
    allowed = ", ".join(model.model_fields)
    for key in data:
        if key not in model.model_fields:
            why = DECIDED_BY_THE_SERVICE.get(str(key).lower(), "it is not something a user chooses")
            raise BodyError(str(key), f"unknown field; you may send only: {allowed} ({why})")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BodyError(where, f"{first['msg']} (got {_short(first.get('input'))})") from None


def params_from(data: dict[str, Any], where: str = "params") -> IcaParams:
    """A parameter set from a body; its errors name ``<where>.<field>``."""
    try:
        return IcaParams.from_dict(data)
    except ParameterError as err:
        raise BodyError(f"{where}.{err.field}", str(err)) from None
    except (TypeError, ValueError, OverflowError) as err:  # a value no parameter can take
        raise BodyError(where, f"not a parameter set ({err})") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
