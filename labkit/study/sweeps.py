"""Sweeps and studies: many parameter sets, run in parallel on warm kernels, resumed, then compared.

A study is recordings (a list, a glob, or a BIDS dataset) x a parameter grid x seeds
(:class:`Study`, :func:`expand`). :func:`run_sweep` plans before it runs: a set whose
complete result is already in the directory with the same provenance (recording
content, labkit/MNE/picard versions, image; :mod:`labkit.results.provenance`) is reused, any
other is run, and the reason is shown for each. Runs go to a :class:`~labkit.runners.pool.PoolRunner`
(warm kernels, one per core); a failing or crashing run is recorded and the others go on.

Stochastic methods should be run with many seeds (about 30); the statistics that
compare the runs are in :mod:`labkit.study.compare`, the figures in :mod:`labkit.study.figures`,
the table of runs in :mod:`labkit.results.table`.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
from tqdm.auto import tqdm

from labkit.errors import LabkitError, ParameterError, RunCancelled, RunFailed
from labkit.params import FIELD_BY_NAME, IcaParams, default_base_dir, in_folder, read_document, sets_from_text
from labkit.results import provenance, states
from labkit.results.folder import RunFolder
from labkit.results.layout import PARTIAL
from labkit.results.liveness import pid_alive
from labkit.results.reading import RunResult, list_runs, load_run
from labkit.results.table import row

logger = logging.getLogger(__name__)

#: file extensions of the recordings a BIDS dataset is searched for
BIDS_EXTENSIONS = (".fif", ".vhdr", ".edf", ".bdf", ".set", ".mff", ".con", ".sqd", ".ds")


# -- what to run ---------------------------------------------------------------------------------------------------
def find_recordings(base_dir: str | os.PathLike, spec: str | Mapping[str, Any] | Sequence[Any]) -> list[str]:
    """Recordings (paths relative to ``base_dir``) from a path, a glob, ``{"bids": root, **filters}``, or a list."""
    base = Path(base_dir)
    if isinstance(spec, Mapping):
        return _bids_recordings(base, spec)
    if not isinstance(spec, str):
        return [path for item in spec for path in find_recordings(base, item)]
    if glob.has_magic(spec):
        found = sorted(os.path.relpath(p, base) for p in glob.glob(str(base / spec), recursive=True))
        if not found:
            raise ParameterError("recordings", spec, f"a pattern matching recordings under {base}")
        return found
    return [spec]


def _bids_recordings(base: Path, spec: Mapping[str, Any]) -> list[str]:
    import mne_bids

    filters = {k: v for k, v in spec.items() if k != "bids"}
    root = base / str(spec["bids"])
    allowed = ("subjects", "sessions", "tasks", "acquisitions", "runs", "processings", "recordings", "spaces",
               "splits", "descriptions", "suffixes", "extensions", "datatypes")
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise ParameterError(f"recordings.{unknown[0]}", filters[unknown[0]], "one of " + ", ".join(allowed))
    filters.setdefault("extensions", list(BIDS_EXTENSIONS))
    paths = mne_bids.find_matching_paths(root, **filters)
    found = sorted({os.path.relpath(p.fpath, base) for p in paths if p.suffix not in ("scans", "channels", "events")})
    if not found:
        raise ParameterError("recordings", dict(spec), f"a BIDS dataset with recordings under {root}")
    return found


def expand(base: IcaParams, *, recordings: Any = None, seeds: Iterable[int] | int | None = None,
           **grid: Sequence[Any]) -> list[IcaParams]:
    """Every combination of recordings x grid x seeds over ``base``.

    ``expand(base, recordings="sub-*/eeg/*.vhdr", method=[...], seeds=30)``; ``recordings``
    as in :func:`find_recordings`, ``seeds`` a count or the seeds themselves (``random_state``).
    """
    sets = [base]
    axes: dict[str, Sequence[Any]] = {}
    if recordings is not None:
        axes["raw_file_path"] = find_recordings(base.base_dir, recordings)
    axes.update(grid)
    if seeds is not None:
        axes["random_state"] = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    for name, values in axes.items():
        if name not in FIELD_BY_NAME or name == "base_dir":
            raise ParameterError(name, list(values), "a parameter name: " + ", ".join(FIELD_BY_NAME))
        sets = [p.replace(**{name: v}) for p in sets for v in values]
    return sets


@dataclass
class Study:
    """Recordings x grid x seeds, as Python, or a YAML/JSON study file::

        base_dir: data                 # optional: relative to the file's folder (default $BASE_DIR, else .)
        recordings: ["sub-*/eeg/*.vhdr"]   # or {bids: bids_root, datatypes: eeg, tasks: rest}
        params: {n_components: 20, crop_tmax: 60}
        grid: {method: [fastica, picard, infomax]}
        seeds: 30                      # or a list of seeds
    """

    base: IcaParams
    recordings: Any = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: Any = None

    def sets(self) -> list[IcaParams]:
        return expand(self.base, recordings=self.recordings, seeds=self.seeds, **self.grid)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | None = None,
                  folder: str | os.PathLike | None = None) -> "Study":
        """``base_dir`` (the CLI's ``--base-dir``) wins over the file's; the file's, if relative, is taken from
        ``folder`` (the file's own); without either, the default (``$BASE_DIR``, else the current directory)."""
        unknown = sorted(set(data) - {"base_dir", "recordings", "params", "grid", "seeds"})
        if unknown:
            raise ParameterError(unknown[0], data[unknown[0]], "one of base_dir, recordings, params, grid, seeds")
        params = dict(data.get("params") or {})
        params["base_dir"] = str(base_dir or in_folder(data.get("base_dir") or params.get("base_dir"), folder)
                                 or default_base_dir())
        grid = data.get("grid") or {}
        if not isinstance(grid, Mapping) or not all(isinstance(v, list) for v in grid.values()):
            raise ParameterError("grid", grid, "a mapping of parameter names to lists of values")
        return cls(IcaParams.from_dict(params, "params"), data.get("recordings"), dict(grid), data.get("seeds"))

    @classmethod
    def from_file(cls, path: str | os.PathLike, base_dir: str | None = None) -> "Study":
        data = read_document(Path(path).read_bytes(), "study")
        if not isinstance(data, Mapping):
            raise ParameterError("study", str(path), "a mapping of recordings, params, grid, seeds")
        return cls.from_dict(data, base_dir, folder=Path(path).parent)


#: the keys that make a sweep file a study rather than a list of sets
STUDY_KEYS = {"recordings", "grid", "seeds"}


def load_sets(text: str | bytes, base_dir: str | None = None, folder: str | os.PathLike | None = None
              ) -> list[IcaParams]:
    """A JSON/YAML list of parameter sets (what the notebook form exports; see :func:`params.sets_from_text`),
    or a study (a mapping with recordings, grid or seeds; :class:`Study`). ``folder`` is the file's own: a
    relative ``base_dir`` in it is taken from there, in both kinds."""
    data = read_document(text, "sets")
    if isinstance(data, Mapping) and set(data) & STUDY_KEYS:
        return Study.from_dict(data, base_dir, folder=folder).sets()
    return sets_from_text(text, folder=folder)


# -- plan: run, or reuse a matching result -------------------------------------------------------------------------
@dataclass
class Decision:
    """What a sweep does with one set, and why (shown in the table and the log)."""

    params: IcaParams
    action: str  # "run" or "reuse"
    reason: str
    existing: RunResult | None = None


def plan(sets: Iterable[IcaParams], *, force: bool = False) -> list[Decision]:
    """Decide per distinct set: reuse a complete result whose provenance matches, else run (resume by default)."""
    distinct: dict[tuple[str, str], IcaParams] = {}
    for params in sets:
        params = params.replace(base_dir=os.path.abspath(params.base_dir))
        distinct.setdefault((params.base_dir, params.digest), params)
    found: dict[str, dict[str, list[RunResult]]] = {}
    decisions = []
    for (base, digest), params in distinct.items():
        if base not in found:
            found[base] = _runs_by_digest(base)
        decisions.append(_decide(params, found[base].get(digest, []), force))
    return decisions


def _runs_by_digest(base: str) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {}
    if not os.path.isdir(base):
        return out
    for run in list_runs(base):
        _finish_abandoned(run)
        if run.params is not None:
            out.setdefault(run.params.digest, []).append(run)
    return out


def _finish_abandoned(run: RunResult) -> None:
    """A partial run whose process or sweep is gone (killed) is finished and renamed, so it is rerun and
    never read as running (its orphaned kernel, if any, exits with its parent: ipykernel's poller).

    Its sweep gone: cancelled (stopped from outside, whatever became of its kernel since). Its own process
    gone: failed (it died).
    """
    if not run.path.name.endswith(PARTIAL):
        return
    runner, host = run.status.get("runner_pid"), run.status.get("host", socket.gethostname())
    sweep_gone = isinstance(runner, int) and host == socket.gethostname() and not pid_alive(runner)
    folder = RunFolder(run.path.parent, run.run_id)
    if sweep_gone:
        also = f"; {run.error}" if run.state in states.STOPPED else ""
        folder.finish_cancelled(f"interrupted: the sweep running it stopped (killed?){also}")
    elif run.state == states.FAILED:
        folder.fail(f"interrupted: {run.error}")
    elif run.state == states.CANCELLED:  # recorded, but killed before its folder was renamed
        folder.finish_cancelled(str(run.error))
    else:
        return
    run.status, run.path = folder.status, folder.path


def _decide(params: IcaParams, runs: list[RunResult], force: bool) -> Decision:
    if force:
        return Decision(params, "run", "--force: rerun")
    try:
        now = provenance.current(params)
    except (OSError, LabkitError) as err:
        return Decision(params, "run", f"recording unreadable ({err}): run to record why")
    done = [r for r in runs if r.state == states.SUCCEEDED][::-1]  # newest first
    whys = [provenance.mismatch(provenance.recorded(run.path), now) for run in done]
    for run, why in zip(done, whys, strict=True):
        if why is None:
            return Decision(params, "reuse", f"complete result {run.run_id}: same parameters and provenance", run)
    if done:
        return Decision(params, "run", f"result {done[0].run_id} is stale: {whys[0]}")
    running = [r for r in runs if r.state == states.RUNNING]
    if running:
        return Decision(params, "reuse", f"running now as {running[-1].run_id} (another sweep)", running[-1])
    stopped = [r for r in runs if r.state in states.STOPPED]
    if stopped:
        last = stopped[-1]
        return Decision(params, "run", f"rerun: {last.run_id} {'was ' if last.state == states.CANCELLED else ''}"
                                       f"{last.state} ({last.error})")
    return Decision(params, "run", "no result yet")


# -- run -----------------------------------------------------------------------------------------------------------
def run_sweep(sets: Iterable[IcaParams], runner: Any = None, *, workers: int | None = None, force: bool = False,
              progress: bool = True, on_row: Callable[[dict[str, Any], int, int], None] | None = None
              ) -> pd.DataFrame:
    """Run every set not already done (``force``: all), ``workers`` at a time; one row per set.

    A failure (a cell raising, a dead kernel, a folder that cannot be made) is a row with
    state ``failed`` and its reason; the sweep goes on. ``action``/``reason`` say why a set
    was run or reused. ``on_row(row, done, total)`` is told of each finished run (the notebook form's progress).

    Interrupted (Ctrl-C, or a SIGTERM the caller turns into :class:`KeyboardInterrupt`): no set starts any
    more, the running ones are cancelled through the runner (each recorded ``cancelled``), and
    :class:`SweepInterrupted` carries the rows of every set that finished or was cancelled.
    """
    from labkit.runners.pool import PoolRunner, default_workers

    decisions = plan(sets, force=force)
    for d in decisions:
        logger.info("sweep: %s %s (%s): %s", d.action, d.params.digest, d.params.raw_file_path, d.reason)
    todo = [d for d in decisions if d.action == "run"]
    rows: dict[int, dict[str, Any]] = {i: _row_of(d, d.existing) for i, d in enumerate(decisions) if d.existing}
    workers = max(1, min(workers or default_workers(), len(todo) or 1))
    own = runner is None
    if runner is None:
        from labkit.results.layout import new_run_id

        runner = PoolRunner(workers, sweep_id=f"sweep-{new_run_id(todo[0].params)}" if todo else "")
    failed = 0
    stopped: SweepInterrupted | None = None
    pool = ThreadPoolExecutor(workers, thread_name_prefix="labkit-sweep")
    futures: dict[Future[dict[str, Any] | None], int] = {}
    try:
        with tqdm(total=len(todo), desc="ICA sweep", unit="run", disable=not progress) as bar:
            try:
                for i, d in enumerate(decisions):
                    if d.action == "run":
                        futures[pool.submit(_run_one, runner, d)] = i
                for future in as_completed(futures):
                    row = future.result()
                    if row is not None:
                        rows[futures[future]] = row
                        failed += row["state"] != states.SUCCEEDED
                    bar.set_postfix(failed=failed, refresh=False)
                    bar.update()
                    if on_row is not None and row is not None:
                        on_row(row, sum(1 for f in futures if f.done()), len(todo))
            except KeyboardInterrupt:
                stopped = _stop(pool, runner, futures, rows, len(todo))
    finally:
        pool.shutdown(wait=True)
        if own:
            runner.close()
    frame = _frame(rows)
    if stopped is not None:
        stopped.frame = frame
        raise stopped
    return frame


def _frame(rows: dict[int, dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([rows[i] for i in sorted(rows)])
    return frame.set_index("run_id") if len(frame) else frame


def _stop(pool: ThreadPoolExecutor, runner: Any, futures: dict[Future[dict[str, Any] | None], int],
          rows: dict[int, dict[str, Any]], total: int) -> "SweepInterrupted":
    """Start no set any more, cancel the running ones, wait for each to record itself; the rows of all."""
    logger.warning("sweep: interrupted: starting no more sets, cancelling the running ones")
    pool.shutdown(wait=False, cancel_futures=True)  # the sets no worker has taken never start
    _cancel(runner)  # the running ones: their kernels die, each run ends recorded as cancelled
    not_started = 0
    for future, i in futures.items():
        if future.cancelled():
            not_started += 1
            continue
        try:
            row = future.result()
        except Exception as err:  # noqa: BLE001 - a bug in one run must not lose the others' rows
            logger.warning("sweep: a run ended with %s: %s", type(err).__name__, err)
            row = None
        if row is None:
            not_started += 1
        else:
            rows[i] = row
    return SweepInterrupted(not_started=not_started, total=total)


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was interrupted: nothing more started, the running sets were cancelled. ``frame`` has a row
    for every set that finished, was reused or was cancelled; ``not_started`` counts the sets never begun
    (running the same sweep again resumes them, reusing what finished)."""

    def __init__(self, frame: pd.DataFrame | None = None, *, not_started: int = 0, total: int = 0) -> None:
        super().__init__("sweep interrupted")
        self.frame = frame if frame is not None else pd.DataFrame()
        self.not_started = not_started
        self.total = total


def _cancel(runner: Any) -> None:
    """Cancel through the runner (labkit's runners kill their kernels); any other runner just starts no more."""
    cancel = getattr(runner, "cancel", None)
    if callable(cancel):
        cancel()
    else:
        runner.stopping = True


def _run_one(runner: Any, decision: Decision) -> dict[str, Any] | None:
    """The set's row; None for a set its runner refused to start because the sweep was being stopped."""
    try:
        return _row_of(decision, runner.run(decision.params))
    except RunCancelled as err:
        if err.folder is None:
            return None
        return _row_of(decision, load_run(err.folder))
    except RunFailed as err:
        logger.warning("sweep: %s", err)
        if err.folder is not None:
            return _row_of(decision, load_run(err.folder))
        error = str(err)
    except (LabkitError, OSError) as err:  # e.g. the base directory cannot be made
        logger.warning("sweep: set %s not run: %s", decision.params.digest, err)
        error = f"{type(err).__name__}: {err}"
    out: dict[str, Any] = {"run_id": f"not-run-{decision.params.digest}", "state": states.FAILED, "error": error}
    out.update({k: v for k, v in decision.params.to_dict().items() if k != "base_dir"})
    return {**out, "path": None, "action": decision.action, "reason": decision.reason}


def _row_of(decision: Decision, found: RunResult) -> dict[str, Any]:
    return {**row(found), "action": "ran" if decision.action == "run" else "reused", "reason": decision.reason}
