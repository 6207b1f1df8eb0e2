"""What the papermill template ``ica_run.ipynb`` calls, so the notebook stays a few readable cells.

The template works two ways: a runner (``labkit run``, ``labkit entrypoint``, the
widgets, a cluster Job) passes ``run_dir`` and owns the run's lifecycle; plain
``papermill`` passes nothing and the notebook creates and finishes its own folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import ica, results
from .params import SAMPLE_DATA_PATH, IcaParams

logger = logging.getLogger(__name__)


def default_locations(base_dir: str, raw_file_path: str) -> tuple[str, str]:
    """Fill blank template parameters: base_dir from ``BASE_DIR`` or the working directory;
    the recording from MNE's sample data if present, else labkit's demo recording (made on first use)."""
    base = base_dir or os.environ.get("BASE_DIR") or os.getcwd()
    if raw_file_path:
        return base, raw_file_path
    from . import datasets

    if datasets.sample_data_path(base) is not None:
        return base, SAMPLE_DATA_PATH
    datasets.write_demo(base)
    logger.warning("no recording given: using labkit's demo recording %s", datasets.DEMO_FILENAME)
    return base, datasets.DEMO_FILENAME


@dataclass
class TemplateRun:
    """One execution of the template: its parameters, its folder, and whether it owns the lifecycle."""

    params: IcaParams
    folder: results.RunFolder
    owner: bool
    blas_threads: int = ica.DEFAULT_BLAS_THREADS
    result: ica.AnalysisResult | None = None
    _log: Any = field(default=None, repr=False)

    def analyse(self, verbose: bool | str | None = None) -> ica.AnalysisResult:
        """Run the analysis into the folder; a failure is recorded before it propagates."""
        try:
            self.result = ica.run(self.params, self.folder.path, folder=self.folder,
                                  blas_threads=self.blas_threads, verbose=verbose)
        except BaseException as err:
            reason = f"{type(err).__name__}: {err}"
            logger.exception("analysis failed: %s", reason)
            self.folder.stop_heartbeat()
            if self.owner:
                self._close_log()
                self.folder.fail(reason)
            else:
                with contextlib.suppress(OSError):  # a full disk: the runner records the outcome
                    self.folder.set_status("running", error={"reason": reason})
            raise
        return self.result

    def show(self) -> None:
        """Inline: the topomaps, the key metrics and the log."""
        from IPython.display import HTML, Image, Markdown, display

        found = results.load_run(self.folder.path)
        for png in found.topomaps:
            display(Image(filename=str(png)))
        if "topomaps_skipped" in found.metrics:
            display(Markdown(f"**Topomaps skipped:** {found.metrics['topomaps_skipped']}"))
        display(HTML(found.summary_html()))
        print(found.log)

    def finish(self) -> Path:
        """If this notebook owns the run, mark it complete (rename); return the folder."""
        self._close_log()
        self.folder.stop_heartbeat()
        if self.owner:
            self.folder.succeed()
        return self.folder.path

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.__exit__(None, None, None)
            self._log = None


def start(namespace: Mapping[str, Any]) -> TemplateRun:
    """Build the parameter set from the notebook's variables and open (or create) its run folder."""
    values = dict(namespace)
    values["base_dir"], values["raw_file_path"] = default_locations(
        str(values.get("base_dir") or ""), str(values.get("raw_file_path") or ""))
    params = IcaParams.from_papermill(values)
    run_dir = values.get("run_dir")
    if run_dir:
        path = Path(run_dir)
        folder, owner = results.RunFolder(path.parent, results.run_id_of(path.name)), False
    else:
        folder, owner = results.RunFolder.create(params), True
    run = TemplateRun(params, folder, owner, blas_threads=int(values.get("blas_threads") or 1))
    run._log = folder.logging_to_file()
    run._log.__enter__()
    folder.start()
    logger.info("run %s: %s", folder.run_id, params.to_json().replace("\n", " "))
    return run
