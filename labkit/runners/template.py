"""What the papermill template ``ica_run.ipynb`` calls, so the notebook stays a few readable cells.

The template works two ways: a runner (``labkit run``, ``labkit entrypoint``, the
widgets, a cluster Job) passes ``run_dir`` and owns the run's lifecycle; plain
``papermill`` passes nothing and the notebook creates and finishes its own folder.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from labkit.analysis import ica
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.errors import LabkitError, ParameterError
from labkit.params import SAMPLE_DATA_PATH, IcaParams, check_run_id, whole_number
from labkit.results.folder import RunFolder
from labkit.results.layout import FOLDER_PREFIX, run_id_of
from labkit.results.reading import load_run

logger = logging.getLogger(__name__)


def default_locations(base_dir: str, raw_file_path: str) -> tuple[str, str]:
    """Fill blank template parameters: base_dir from ``BASE_DIR`` or ``~/labkit``;
    the recording from MNE's sample data if present, else labkit's demo recording (made on first use)."""
    base = default_base_dir(base_dir)
    if raw_file_path:
        return base, raw_file_path
    from labkit.analysis import datasets

    if datasets.sample_data_path(base) is not None:
        return base, SAMPLE_DATA_PATH
    datasets.write_demo(base)
    logger.warning("no recording given: using labkit's demo recording %s", datasets.DEMO_FILENAME)
    return base, datasets.DEMO_FILENAME


#: where a plain papermill run with no base_dir and no $BASE_DIR keeps its results: in the user's home,
#: so a run started from a checkout or a shared folder never writes into it
HOME_BASE = "labkit"


def default_base_dir(base_dir: str, *, make: bool = True) -> str:
    """A blank ``base_dir`` means ``$BASE_DIR``, else ``~/labkit`` (made if missing, unless ``make`` is False)."""
    if base_dir or os.environ.get("BASE_DIR"):
        return base_dir or os.environ["BASE_DIR"]
    home = Path.home() / HOME_BASE
    if make:
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ParameterError("base_dir", "", f"a directory; the default for a blank base_dir, {home}, "
                                 f"cannot be made ({err.strerror or err}): give base_dir or set BASE_DIR") from None
    return str(home)


@dataclass
class TemplateRun:
    """One execution of the template: its parameters, its folder, and whether it owns the lifecycle."""

    params: IcaParams
    folder: RunFolder
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
            if isinstance(err, LabkitError):
                raise told(err) from None
            raise
        return self.result

    def show(self) -> None:
        """Inline: the topomaps, the key metrics and the log."""
        from IPython.display import HTML, Image, Markdown, display

        found = load_run(self.folder.path)
        for png in found.topomaps:
            display(Image(filename=str(png)))
        if "topomaps_skipped" in found.metrics:
            display(Markdown(f"**Topomaps skipped:** {found.metrics['topomaps_skipped']}"))
        warnings = found.metrics.get("warnings") or []
        if warnings:  # the outcome, told where the researcher looks: "succeeded with warnings"
            items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
            display(HTML(f"<p><b>Succeeded with warnings</b> ({len(warnings)}):</p><ul>{items}</ul>"))
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
    """Build the parameter set from the notebook's variables and open (or create) its run folder.

    Every parameter (and ``run_dir``, ``blas_threads``, ``verbose``) is checked before anything is
    written: a bad value raises :class:`ParameterError` naming it, and leaves no folder and no demo file."""
    try:
        return _start(namespace)
    except LabkitError as err:
        raise told(err) from None


def told(err: LabkitError) -> LabkitError:
    """The error, shown by IPython (the notebook's cell output, papermill's report) as its one-line message.

    A labkit error already says what to change; the frames inside labkit that raised it would only bury it."""
    line = f"{type(err).__name__}: {err}"
    err._render_traceback_ = lambda: [line]  # IPython's hook for an exception's own rendering
    return err


def _start(namespace: Mapping[str, Any]) -> TemplateRun:
    values = dict(namespace)
    blank_base = _blank(values.get("base_dir"))
    if blank_base:
        values["base_dir"] = default_base_dir("", make=False)
    blank_recording = _blank(values.get("raw_file_path"))
    params = IcaParams.from_papermill({**values, "raw_file_path": DEMO_FILENAME} if blank_recording else values)
    blas_threads = whole_number("blas_threads", values.get("blas_threads", 0), 0, 1024)  # 0: automatic
    _check_verbose(values.get("verbose"))
    if blank_base:
        default_base_dir("")  # ~/labkit is made only for a set that passed every check above
    params.base_path()
    run_dir = _checked_run_dir(values.get("run_dir"), params)
    if blank_recording:
        params = params.replace(raw_file_path=default_locations(params.base_dir, "")[1])
    if run_dir is not None:
        folder, owner = RunFolder(run_dir.parent, run_id_of(run_dir.name)), False
    else:
        folder, owner = RunFolder.create(params), True
    run = TemplateRun(params, folder, owner, blas_threads=blas_threads)
    run._log = folder.logging_to_file()
    run._log.__enter__()
    folder.start()
    logger.info("run %s: %s (every parameter: params.json)", folder.run_id, _in_words(params))
    return run


def _in_words(p: IcaParams) -> str:
    """The settings a reader tells runs apart by: ``picard, 20 components, eeg 1-30 Hz, crop 0-60 s, demo.fif``."""
    crop = f"{p.crop_tmin:g}-{'end' if p.crop_tmax is None else f'{p.crop_tmax:g}'} s"
    seed = "random seed" if p.random_state is None else f"seed {p.random_state}"
    return (f"{p.method}, {p.n_components} components, {p.channel_type} {p.filter_fmin:g}-{p.filter_fmax:g} Hz, "
            f"crop {crop}, {seed}, {Path(p.raw_file_path).name}")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _checked_run_dir(run_dir: Any, params: IcaParams) -> Path | None:
    """A runner's ``run_dir``: a ``PreExperiment_ICA_<run id>`` folder directly in ``base_dir``."""
    if _blank(run_dir):
        return None
    allowed = f"a {FOLDER_PREFIX}<run id> folder directly inside base_dir {params.base_dir!r}"
    if not isinstance(run_dir, (str, os.PathLike)) or "\x00" in str(run_dir):
        raise ParameterError("run_dir", run_dir, allowed)
    path = Path(run_dir)
    run_id = run_id_of(path.name)
    if not path.name.startswith(FOLDER_PREFIX) or path.parent.resolve() != params.base_path():
        raise ParameterError("run_dir", run_dir, allowed)
    check_run_id(run_id, "run_dir")
    return path


_VERBOSE = (None, True, False, "debug", "info", "warning", "error", "critical")


def _check_verbose(verbose: Any) -> None:
    """MNE's ``verbose``: a level name, a bool or None (as ``mne.set_log_level`` takes)."""
    level = verbose.lower() if isinstance(verbose, str) else verbose
    if not any(level is v or (isinstance(v, str) and level == v) for v in _VERBOSE):
        raise ParameterError("verbose", verbose, _VERBOSE)
