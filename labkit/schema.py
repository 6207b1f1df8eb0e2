"""The parameter set for forms: its JSON Schema and every problem of a draft, in the CLI's words.

A form (the notebook form, the JupyterLab run dialog) never re-spells a rule: it shows the schema
served from :class:`~labkit.params.IcaParams` itself and asks :func:`check_draft` what is wrong
with what the user typed, field by field, with the same messages ``labkit run`` prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from labkit.errors import ParameterError
from labkit.params import (
    CHANNEL_TYPES,
    FIELD_BY_NAME,
    FIELDS,
    METHODS,
    IcaParams,
    coerce_values,
    did_you_mean,
    static_problems,
)

#: a field's JSON type (``null`` where blank means "the default": crop to the end, a random seed, ...)
_TYPES: dict[str, Any] = {
    "base_dir": {"type": "string"},
    "raw_file_path": {"type": "string", "minLength": 1},
    "method": {"type": "string", "enum": list(METHODS)},
    "n_components": {"type": "integer", "minimum": 2},
    "crop_tmin": {"type": "number", "minimum": 0},
    "crop_tmax": {"type": ["number", "null"]},
    "channel_type": {"type": "string", "enum": list(CHANNEL_TYPES)},
    "filter_fmin": {"type": "number", "exclusiveMinimum": 0},
    "filter_fmax": {"type": "number", "exclusiveMinimum": 0},
    "random_state": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1},
    "max_iter": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
    "extended": {"type": ["boolean", "null"]},
    "ortho": {"type": ["boolean", "null"]},
    "label_threshold": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
}
_FIELDS = {f.name: f for f in dataclasses.fields(IcaParams)}


def default(name: str) -> Any:
    """A field's default now (``base_dir``'s depends on ``$BASE_DIR``)."""
    f = _FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def json_schema() -> dict[str, Any]:
    """The parameter set as JSON Schema (draft 2020-12): types, ranges, defaults and each field's help.

    Rules between fields (crop end after start, band-pass edges, the recording's bounds) are not
    expressible here: :func:`check_draft` answers them."""
    props = {}
    for f in FIELDS:
        prop = {"title": f.name, "description": f.help, **_TYPES[f.name], "x-env": f.env, "x-flag": f.flag}
        if f.name != "base_dir":  # where the run goes is the server's to say, not a schema's
            prop["default"] = default(f.name)
        props[f.name] = prop
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "labkit ICA parameter set",
            "type": "object", "properties": props, "additionalProperties": False}


@dataclass
class Draft:
    """What a form holds: each field's problem (the first one), the coerced values, the set when all is well."""

    problems: dict[str, ParameterError] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    params: IcaParams | None = None

    @property
    def messages(self) -> dict[str, str]:
        return {name: str(err) for name, err in self.problems.items()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of a validation request: ``ok``, and per field its message, value and what is allowed."""
        return {"ok": self.params is not None and not self.problems,
                "problems": [problem(e) for e in self.problems.values()]}


def problem(err: ParameterError) -> dict[str, Any]:
    """One problem as JSON: the message, the field, the value given (as text when JSON cannot hold it), what is allowed."""
    value = err.value if isinstance(err.value, (str, int, float, bool, type(None))) else repr(err.value)[:200]
    allowed = err.allowed if isinstance(err.allowed, str) else ", ".join(map(str, err.allowed))
    return {"message": str(err), "field": err.field, "value": value, "allowed": allowed}


def check_draft(values: Any, *, header_problems: Callable[[Any], list[ParameterError]] | None = None,
                source: str = "params") -> Draft:
    """Every problem of ``values`` (a mapping of field -> typed value), one per field.

    Type errors are found field by field; the rules between fields then run on the valid ones;
    ``header_problems`` (given the coerced set) adds what the recording's header says."""
    draft = Draft()
    if not isinstance(values, Mapping):
        draft.problems[source] = ParameterError(source, values, "a mapping of parameter names to values")
        return draft
    for key in sorted((k for k in values if k not in FIELD_BY_NAME), key=str):
        draft.problems[str(key)] = ParameterError(
            str(key), values[key], "a parameter name" + did_you_mean(str(key), FIELD_BY_NAME)
            + ": one of " + ", ".join(FIELD_BY_NAME))
    full = {name: values[name] if name in values else default(name) for name in FIELD_BY_NAME}
    for _ in FIELDS:  # one type error per field, each told at its field
        try:
            coerced = coerce_values(full)
            break
        except ParameterError as err:
            draft.problems.setdefault(err.field, err)
            full[err.field] = default(err.field)
    else:  # pragma: no cover - every field replaced by its valid default
        return draft
    draft.values = coerced
    for err in static_problems(coerced):
        draft.problems.setdefault(err.field, err)
    if header_problems is not None:
        for err in header_problems(type("Draft", (), coerced) if draft.problems else IcaParams(**coerced)):
            draft.problems.setdefault(err.field, err)
    if not draft.problems:
        draft.params = IcaParams(**coerced)
    return draft
