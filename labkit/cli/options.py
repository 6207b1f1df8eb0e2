"""What every ``labkit`` command shares: parameter flags generated from the parameter table, and one error exit.

Kept apart from ``labkit.cli.main`` so the cluster commands (``labkit.cli.cluster``) use the
same flags without importing the main command group.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn

import click

from labkit.errors import LabkitError, ParameterError
from labkit.params import FIELD_BY_NAME, FIELDS, IcaParams, check_run_id


def param_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--flag`` per parameter field, generated from :data:`labkit.params.FIELDS`, plus ``--params``."""
    for field in reversed(FIELDS):
        command = click.option(field.flag, field.name, default=None, help=f"{field.help} [env {field.env}]")(command)
    return click.option("--params", "params_file", type=click.File("rb"), default=None,
                        help="JSON or YAML parameter set ('-' for stdin); flags override it")(command)


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


def params_from_cli(params_file: Any, values: dict[str, Any]) -> IcaParams:
    """Defaults, then the ``--params`` file, then the flags that were given (later wins)."""
    base = IcaParams.from_json(read_params_file(params_file, "params"), "params") if params_file is not None else None
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return base.replace(**given) if base is not None else IcaParams(**given)
    except ParameterError as err:
        if err.field in given:
            raise err.tell_source(FIELD_BY_NAME[err.field].flag) from None
        raise


def fail(err: LabkitError) -> NoReturn:
    """Print the error a researcher can act on (no traceback) and exit with its code."""
    click.echo(f"labkit: {err}", err=True)
    sys.exit(getattr(err, "exit_code", 1))
