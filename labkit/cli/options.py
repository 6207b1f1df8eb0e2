"""What every ``labkit`` command shares: parameter flags generated from the parameter table, and one error exit.

Kept apart from ``labkit.cli.main`` so the cluster commands (``labkit.cli.cluster``) use the
same flags without importing the main command group.

One parameter set comes from, later wins: the defaults, the prototype's environment variables
(``BASE_DIR``, ``ICA_METHOD``, ...; what each flag's help names), the ``--params`` file, the flags.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Mapping, NoReturn

import click

from labkit.errors import ExitCode, LabkitError, ParameterError
from labkit.params import FIELD_BY_NAME, FIELDS, IcaParams, check_run_id, read_document


def param_flags(env: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One ``--flag`` per parameter field, generated from :data:`labkit.params.FIELDS`, plus ``--params``.

    ``env``: the command reads each field's environment variable below its flag (:func:`params_from_cli`),
    and the help says which; without it the help names no variable."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for field in reversed(FIELDS):
            text = f"{field.help} [env {field.env}]" if env else field.help
            command = click.option(field.flag, field.name, default=None, help=text)(command)
        return click.option("--params", "params_file", type=click.File("rb"), default=None,
                            help="JSON or YAML parameter set ('-' for stdin); flags override it"
                                 + (", it overrides the environment" if env else ""))(command)
    return decorate


#: the flags of a command that builds one set with :func:`params_from_cli` (flag > file > env > default)
param_options = param_flags(env=True)


#: the largest parameter file read (a set is about 400 bytes; a sweep of thousands fits)
MAX_FILE_BYTES = 16 * 2**20


def read_params_file(file: Any, source: str) -> bytes | str:
    """A parameter file's content, refused (naming ``source``) past :data:`MAX_FILE_BYTES` (``/dev/zero``)."""
    data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ParameterError(source, getattr(file, "name", "?"), f"a file of at most {MAX_FILE_BYTES // 2**20} MiB")
    return data


def _checked_run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_run_id(value)
    except ParameterError as err:
        fail(err)


def run_id_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--run-id``, checked by :func:`labkit.params.check_run_id` before the command starts."""
    return click.option("--run-id", default=None, callback=_checked_run_id, help=help)


def params_from_cli(params_file: Any, values: dict[str, Any], environ: Mapping[str, str] | None = None) -> IcaParams:
    """Defaults, then the prototype's environment variables (empty means unset), then the ``--params``
    file, then the flags that were given (later wins). An error says which flag or variable gave the value."""
    environ = os.environ if environ is None else environ
    from_env = {f.name: environ[f.env] for f in FIELDS if environ.get(f.env, "") != ""}
    from_file = _file_values(params_file) if params_file is not None else {}
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return IcaParams(**{**from_env, **from_file, **given})
    except ParameterError as err:
        if err.field in given:
            raise err.tell_source(FIELD_BY_NAME[err.field].flag) from None
        if err.field in from_env and err.field not in from_file:
            raise err.tell_source(f"the environment variable {FIELD_BY_NAME[err.field].env}") from None
        raise


def _file_values(params_file: Any) -> dict[str, Any]:
    """The fields a ``--params`` file sets (``{"params": {...}}`` as ``params.json`` holds them, or the set)."""
    data = read_document(read_params_file(params_file, "params"), "params")
    if isinstance(data, Mapping) and isinstance(data.get("params"), Mapping):
        data = data["params"]
    if not isinstance(data, Mapping):
        raise ParameterError("params", data, "a mapping of parameter names to values")
    unknown = sorted((k for k in data if k not in FIELD_BY_NAME), key=str)
    if unknown:
        raise ParameterError(str(unknown[0]), data[unknown[0]], "one of " + ", ".join(FIELD_BY_NAME))
    return dict(data)


def fail(err: LabkitError) -> NoReturn:
    """Print the error a researcher can act on (no traceback) and exit with its code (:class:`ExitCode`)."""
    click.echo(f"labkit: {err}", err=True)
    sys.exit(int(getattr(err, "exit_code", ExitCode.ERROR)))


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters; a cut one ends in ``...``, so nothing is cut silently."""
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."
