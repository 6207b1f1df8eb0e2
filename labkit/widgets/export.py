"""A parameter set (or a sweep) as text to paste elsewhere: JSON, env assignments, ``labkit run``, papermill."""

from __future__ import annotations

import json
import shlex
from typing import Any

from labkit.params import IcaParams

#: where papermill finds the run template, for exported command lines
PAPERMILL_TEMPLATE = "notebooks/ica_run.ipynb"
EXPORT_FORMATS = ("json", "env", "labkit run", "papermill")


def _papermill_text(value: Any) -> str:
    # papermill -p resolves True/False/None and numbers from text; everything else stays a string
    return repr(value) if value is None or isinstance(value, bool) else str(value)


def export_text(params: IcaParams, fmt: str) -> str:
    """One parameter set as JSON, env assignments, a ``labkit run`` or a papermill command line."""
    if fmt == "json":
        return params.to_json()
    if fmt == "env":
        return "\n".join(f"{k}={shlex.quote(v)}" for k, v in params.to_env().items())
    if fmt == "labkit run":
        return shlex.join(["labkit", "run", *params.to_cli_args()])
    if fmt == "papermill":
        args = ["papermill", PAPERMILL_TEMPLATE, f"ica_run_{params.digest}.ipynb"]
        for key, value in params.to_papermill().items():
            args += ["-p", key, _papermill_text(value)]
        return shlex.join(args)
    raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")


def export_sweep(sets: list[IcaParams]) -> str:
    """A sweep as a JSON list of parameter sets (each loads back with ``IcaParams.from_dict``)."""
    return json.dumps([p.to_dict() for p in sets], indent=2, sort_keys=True)


def load_sweep(text: str) -> list[IcaParams]:
    """A sweep exported by :func:`export_sweep` (or one set's JSON) read back; a bad text names what is wrong."""
    from labkit.errors import ParameterError

    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ParameterError("sweep", text[:60], f"a JSON list of parameter sets ({err.msg} at line {err.lineno})") \
            from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(d, dict) for d in items):
        raise ParameterError("sweep", text[:60], "a JSON list of parameter sets (objects)")
    return [IcaParams.from_dict(d) for d in items]
