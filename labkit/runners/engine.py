"""labkit's papermill engine: nbclient's, but a notebook cut short is still saved as far as it ran, and
``papermill ... --engine labkit`` ends a labkit error (a bad parameter, an unreadable recording) in its
one-line message and its exit code (2, 3) instead of papermill's traceback and exit 1.

papermill finds it through the ``papermill.engine`` entry point labkit declares in
``pyproject.toml`` (``labkit = "labkit.runners.engine:KeepingEngine"``); runs ask for it with
``execute_notebook(..., engine_name=NAME)``.

papermill loads its entry points while it imports ``papermill.engines``, so this module must
not import papermill at its top: imported first, it would make papermill load it half-made.
:class:`KeepingEngine` is therefore papermill's engine interface (the three class methods
papermill calls on an engine) over an ``NBClientEngine`` subclass made on first use.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

#: the engine's name, as the entry point declares it
NAME = "labkit"


class KeepingEngine:
    """Saves a notebook whose kernel died or whose run was cancelled, not only one that ended.

    With ``request_save_on_cell_execute=False`` (one save at the end, ~30 ms less per cell),
    papermill hands the engine no output path, so a run cut short would leave no notebook
    to tell in which cell it died. On any exception the engine gives the execution manager
    the path in ``keep_at``; papermill's own final save (``notebook_complete``) then writes it.
    """

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
        nb = _nbclient_keeping().execute_notebook(nb, kernel_name, **kwargs)
        command = _papermill_command()
        if command is not None:
            exit_on_labkit_error(nb, command.params.get("output_path") or kwargs.get("output_path"))
        return nb

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> str:
        return _nbclient_keeping().nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> str:
        return _nbclient_keeping().nb_language(nb, language)


@functools.cache
def _nbclient_keeping() -> type:
    from papermill.engines import NBClientEngine

    class NBClientKeeping(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, keep_at: str = "", **kwargs: Any) -> Any:
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            except BaseException:
                nb_man.output_path = keep_at or nb_man.output_path
                raise

    return NBClientKeeping


def _papermill_command() -> Any:
    """papermill's own command line's click context when it is what runs this engine, else None.

    Only there does a labkit error become a message and an exit code; ``labkit run`` and the other
    runners call papermill as a library and read the outcome from the run folder themselves."""
    import click

    ctx = click.get_current_context(silent=True)
    callback = getattr(getattr(ctx, "command", None), "callback", None)
    return ctx if getattr(callback, "__module__", "") == "papermill.cli" else None


def labkit_error_in(nb: Any) -> tuple[str, str, int] | None:
    """(name, message, exit code) of the first labkit error a cell of ``nb`` raised, or None.

    Known by its class name among labkit's errors and by a labkit frame in its traceback (or the
    one-line rendering labkit gives it), so another library's ``ParameterError`` is not taken for one."""
    from labkit.errors import ExitCode, LabkitError

    codes = {cls.__name__: int(cls.exit_code) for cls in _subclasses(LabkitError)}
    for cell in nb.cells:
        for output in cell.get("outputs", ()):
            if output.get("output_type") != "error" or output.get("ename") not in codes:
                continue
            trace = "\n".join(output.get("traceback") or ())
            if "labkit" in trace or trace.strip() == f"{output['ename']}: {output.get('evalue', '')}".strip():
                return output["ename"], output.get("evalue", ""), codes.get(output["ename"], int(ExitCode.ERROR))
    return None


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def exit_on_labkit_error(nb: Any, output_path: str | None) -> None:
    """After papermill's command line ran ``nb``: for a labkit error, save the notebook as papermill does
    (its error banner on top), print the error's one line and exit with its code (2 for a bad parameter)."""
    found = labkit_error_in(nb)
    if found is None:
        return
    _, message, code = found
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    try:
        raise_for_execution_errors(nb, output_path)  # writes the executed notebook with papermill's banner
    except PapermillExecutionError:
        pass
    saved = f" (the executed notebook: {output_path})" if output_path and output_path != "-" else ""
    print(f"labkit: {message}{saved}", file=sys.stderr, flush=True)
    raise SystemExit(code)
