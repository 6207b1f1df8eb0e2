"""What every ``labkit`` command shares: parameter flags generated from the parameter table, and one error exit.

Kept apart from ``labkit.cli`` so the cluster commands (``labkit.cluster.cli``) use the
same flags without importing the main command group.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn

import click

from .errors import LabkitError
from .params import FIELDS, IcaParams


def param_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--flag`` per parameter field, generated from :data:`labkit.params.FIELDS`, plus ``--params``."""
    for field in reversed(FIELDS):
        command = click.option(field.flag, field.name, default=None, help=f"{field.help} [env {field.env}]")(command)
    return click.option("--params", "params_file", type=click.File("r"), default=None,
                        help="JSON parameter set ('-' for stdin); flags override it")(command)


def params_from_cli(params_file: Any, values: dict[str, Any]) -> IcaParams:
    """Defaults, then the ``--params`` file, then the flags that were given (later wins)."""
    base = IcaParams.from_json(params_file.read()) if params_file is not None else None
    given = {k: v for k, v in values.items() if v is not None}
    return base.replace(**given) if base is not None else IcaParams(**given)


def fail(err: LabkitError) -> NoReturn:
    """Print the error a researcher can act on (no traceback) and exit with its code."""
    click.echo(f"labkit: {err}", err=True)
    sys.exit(getattr(err, "exit_code", 1))
