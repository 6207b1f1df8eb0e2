"""labkit's papermill engine: nbclient's, but a notebook cut short is still saved as far as it ran.

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
        return _nbclient_keeping().execute_notebook(nb, kernel_name, **kwargs)

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
