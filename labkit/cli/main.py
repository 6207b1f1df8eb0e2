"""The ``labkit`` command: a thin click layer over the Python API.

Parameter sources merge in this order, later wins: the defaults (the prototype's), the
prototype's environment variables (``BASE_DIR``, ``ICA_METHOD``, ...), a ``--params`` JSON file,
then individual flags. ``labkit entrypoint`` reads the environment variables only and is what
the container image runs. Every command exits with a code of :class:`labkit.errors.ExitCode`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import click

from labkit import __version__
from labkit.cli.compare import compare_runs
from labkit.cli.options import fail as _fail
from labkit.cli.options import param_flags, param_options, params_from_cli, read_params_file, run_id_option
from labkit.cli.runs import runs
from labkit.errors import ExitCode, LabkitError
from labkit.params import IcaParams, default_base_dir
from labkit.results.layout import REPORT_FILE
from labkit.settings import env


class _Commands(click.Group):
    """labkit's commands; the cluster ones (``labkit.cli.cluster``) are imported only when used or listed.

    Importing them (YAML, manifests, settings) would add 0.04 s to the start of every ``labkit run``.
    """

    cluster = ("submit", "jobs", "logs", "cancel", "render", "hub-service")
    #: the artifact store's commands (``labkit.cli.store``)
    store = ("push", "fetch")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.cluster, *self.store])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.store:
            from labkit.cli.store import COMMANDS as STORE_COMMANDS

            return {command.name: command for command in STORE_COMMANDS}[cmd_name]
        if cmd_name in self.cluster:
            from labkit.cli.cluster import COMMANDS

            return {command.name: command for command in COMMANDS}[cmd_name]
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["labkit.args"] = list(args)  # the command line as given: an interrupted sweep prints it to resume
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Any labkit error a command lets through ends as its message and exit code, never a traceback;
        Ctrl-C ends as :attr:`ExitCode.CANCELLED` (click would say ``Aborted!`` and exit 1)."""
        try:
            return super().invoke(ctx)
        except LabkitError as err:
            _fail(err)
        except KeyboardInterrupt:
            click.echo("\nlabkit: interrupted", err=True)
            sys.exit(int(ExitCode.CANCELLED))


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="labkit")
def main() -> None:
    """labkit: EEG/MEG ICA runs from a parameter set to a result folder."""
    # every command: jsonschema (under papermill's nbformat, JupyterHub's auth, kubernetes-validate) imports the
    # optional rfc3987_syntax IRI checker when installed, which compiles its grammars at import (3 s of CPU here,
    # python-jsonschema/jsonschema#1428); labkit's schemas check no IRIs
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def _run_and_report(params: IcaParams, run_id: str | None, blas_threads: int, resume: bool = False,
                   as_json: bool = False) -> None:
    from labkit.cli.progress import RunWatch, above_bars
    from labkit.runners.local import Cancelled, LocalRunner, terminate_on_signals

    env()  # LABKIT_* values (the cache, heartbeats) are checked before any folder is made
    params.raw_path()  # base directory and recording exist, inside base_dir: checked before any folder is made
    before = terminate_on_signals()  # Ctrl-C and SIGTERM: the run ends recorded as cancelled, labkit exits 130
    watch = RunWatch(bar=sys.stderr.isatty() and not as_json)
    try:
        with above_bars() if watch.bar_wanted else contextlib.nullcontext():
            try:
                result = LocalRunner(blas_threads=blas_threads).run(params, run_id=run_id, resume=resume,
                                                                    started=watch.started)
            finally:
                watch.close()
    except LabkitError as err:  # a failed or cancelled run, a taken run id, a folder that cannot be made
        _fail(err)
    except Cancelled:  # the signal arrived before the run's folder existed: nothing to record
        click.echo("labkit: interrupted", err=True)
        sys.exit(int(ExitCode.CANCELLED))
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    click.echo(json.dumps(run_summary(result)) if as_json else "\n".join(summary_lines(result)))
    gc.freeze()  # done, every file closed: spare the exit a last collection of papermill's objects (0.1 s)


def run_summary(result: Any) -> dict[str, Any]:
    """What a finished run tells its caller: outcome, warnings, suspects, where the folder and report are."""
    m = result.metrics
    report = result.file(REPORT_FILE)
    return {"run_id": result.run_id, "state": result.state, "outcome": result.outcome,
            "warnings": result.warnings, "eog_suspects": m.get("eog_suspects", []),
            "ecg_suspects": m.get("ecg_suspects", []), "path": str(result.path),
            "report": str(report) if report.is_file() else None}


def summary_lines(result: Any) -> list[str]:
    """A short summary for the terminal; the result folder is the last line (scripts read it)."""
    s = run_summary(result)
    lines = [f"run {s['run_id']}: {s['outcome']}"]
    lines += [f"  warning: {w}" for w in s["warnings"]]
    suspects = "; ".join(f"{kind} {', '.join(map(str, s[kind + '_suspects'])) or 'none'}" for kind in ("eog", "ecg"))
    lines.append(f"  suspects: {suspects}")
    if s["report"]:
        lines.append(f"  report: {s['report']}")
    return [*lines, s["path"]]


@main.command()
@param_options
@run_id_option("name the result folder PreExperiment_ICA_<run-id>")
@click.option("--blas-threads", default=0, show_default=True,
              help="BLAS threads for the ICA fit (0: one for a short recording, every core for a long one)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as one JSON object instead of a summary")
def run(params_file: Any, run_id: str | None, blas_threads: int, as_json: bool, **values: Any) -> None:
    """Run one parameter set here (papermill); print its outcome, warnings, suspects and report,
    and its result folder as the last line.

    Each parameter comes from its flag, else the --params file, else its environment variable
    (the prototype's BASE_DIR, ICA_METHOD, ... named in each flag's help), else the default."""
    _run_and_report(params_from_cli(params_file, values), run_id, blas_threads, as_json=as_json)


@main.command()
def entrypoint() -> None:
    """Run from the prototype's environment variables (BASE_DIR, ICA_METHOD, ...); the image's command.

    A Job without the share (``LABKIT_CLUSTER_USE_STORE``) fetches its recording from the artifact
    store first and uploads its result folder after (``labkit.cli.store``)."""
    settings = env()
    from labkit.cli.store import run_with_store, store_mode, verify_recording

    def run() -> None:
        if not store_mode():  # a recording fetched from the store was verified as it came in
            verify_recording(IcaParams.from_env())
        # a Job's retried pod has the same LABKIT_RUN_ID: it restarts its own folder, never a complete one
        _run_and_report(IcaParams.from_env(), settings.run_id or None, settings.blas_threads,
                        resume=bool(settings.run_id))

    run_with_store(run, settings.run_id) if store_mode() else run()


@main.command("demo-data")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .",
              help="directory to write labkit-demo/demo_raw.fif into")
@click.option("--overwrite/--no-overwrite", default=False, help="regenerate even if present")
def demo_data(base_dir: str, overwrite: bool) -> None:
    """Write the demo recording (with its ground truth) and print its path relative to base-dir."""
    from labkit.analysis.datasets import write_demo

    path = write_demo(base_dir, overwrite=overwrite)
    click.echo(str(Path(path).relative_to(Path(base_dir))))


def _grid(values: tuple[str, ...]) -> dict[str, list[str]]:
    grid = {}
    for item in values:
        name, sep, listed = item.partition("=")
        if not sep or not name or not listed:
            raise click.BadParameter(f"got {item!r}; allowed: NAME=V1,V2,... (e.g. method=fastica,picard)",
                                     param_hint="'--grid'")
        grid[name.strip().replace("-", "_")] = [v.strip() for v in listed.split(",")]
    return grid


def _seeds(text: str | None) -> Any:
    if text is None:
        return None
    try:
        if ":" in text:
            start, stop = text.split(":")
            return list(range(int(start), int(stop)))
        return int(text) if "," not in text else [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"got {text!r}; allowed: a count (30), a range (0:30) or a list (1,2,3)",
                                 param_hint="'--seeds'") from None


def _sweep_sets(sets_file: Any, recordings: tuple[str, ...], bids: str | None, grid: tuple[str, ...],
                seeds: str | None, values: dict[str, Any]) -> list[IcaParams]:
    """The sets of a sweep: a file (JSON list of sets, or a YAML/JSON study), or recordings x grid x seeds flags."""
    from labkit.study.sweeps import expand, load_sets

    given = {k: v for k, v in values.items() if v is not None}
    if sets_file:
        sets = load_sets(read_params_file(sets_file, "sets"), base_dir=given.get("base_dir"),
                         folder=Path(sets_file.name).parent)
        sets = [p.replace(**given) for p in sets] if given else sets
        extra = {"seeds": _seeds(seeds), **_grid(grid)} if (seeds or grid) else {}
        return [q for p in sets for q in expand(p, **extra)] if extra else sets
    base = IcaParams(**{"base_dir": default_base_dir(), **given})
    spec: Any = list(recordings) if recordings else None
    if bids:
        spec = [*(spec or []), {"bids": bids}]
    return expand(base, recordings=spec, seeds=_seeds(seeds), **_grid(grid))


@main.command()
@click.argument("sets_file", required=False, type=click.File("rb"))
@param_flags(env=False)
@click.option("--recording", "recordings", multiple=True, help="a recording or a glob, relative to base-dir (repeat)")
@click.option("--bids", default=None, help="a BIDS dataset under base-dir: every recording in it (mne-bids)")
@click.option("--grid", multiple=True, help="NAME=V1,V2,...: a parameter's values to cross (repeat)")
@click.option("--seeds", default=None, help="random_state values: a count (30), a range (0:30) or a list (1,2,3)")
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="the cores",
              help="runs at once, each on a warm kernel")
@click.option("--force", is_flag=True, help="rerun every set, even those with a complete matching result")
@click.option("--wide", is_flag=True, help="print every column of the table (default: what fits 100 columns)")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="also write the table as CSV")
@click.option("--cluster", is_flag=True, help="submit the sets as Kubernetes Jobs instead of running here")
@click.option("--export", "export", type=click.Choice(["argo"]), default=None,
              help="write the sweep as an Argo Workflow (YAML) instead of running it")
@click.option("--artifacts", type=click.Choice(["volume", "s3"]), default="volume", show_default=True,
              help="--export argo: steps share the data volume, or pass recordings and results as S3 artifacts")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="where --export writes (stdout)")
@click.option("--image", default=lambda: env().image or "labkit:latest",
              show_default="$LABKIT_IMAGE or labkit:latest", help="container image for --export argo")
def sweep(sets_file: Any, params_file: Any, recordings: tuple[str, ...], bids: str | None,
          grid: tuple[str, ...], seeds: str | None, workers: int | None, force: bool, wide: bool,
          csv_path: str | None, cluster: bool, export: str | None, artifacts: str, output: str | None, image: str,
          **values: Any) -> None:
    """Run a sweep here on warm parallel workers, resuming what is already done, and print the table.

    SETS_FILE is a JSON list of parameter sets (what the notebook form exports) or a study
    (YAML/JSON: recordings, params, grid, seeds); without it the flags make the study.
    Flags given with a file apply to every set. A set is skipped when a complete result
    with the same parameters and provenance exists (--force reruns); the table's
    action/reason columns say why each set ran or was reused, and a last line counts them.

    Ctrl-C (or SIGTERM) starts no more sets, cancels the running ones (recorded as cancelled),
    prints what finished and the command that resumes the sweep, and exits 130.
    """
    env()  # LABKIT_* values are checked before any run starts (a worker would fail each run with them)
    if params_file is not None:
        values = {**IcaParams.from_json(read_params_file(params_file, "params")).to_dict(),
                  **{k: v for k, v in values.items() if v is not None}}
    sets = _sweep_sets(sets_file, recordings, bids, grid, seeds, values)
    if export:
        from labkit.runners.argo import sweep_workflow

        if artifacts == "s3":
            from labkit.cli.store import artifact_export

            text = artifact_export(sets, image=image)
        else:
            text = sweep_workflow(sets, image=image).to_yaml()
        Path(output).write_text(text) if output else click.echo(text)
        return
    if cluster:
        from labkit.runners.hub import cluster_jobs

        sub = cluster_jobs().submit_sweep(sets, force=force)
        click.echo(f"sweep {sub.sweep_id}: {len(sub.runs)} runs ({sub.kind})")
        for r in sub.runs:
            click.echo(f"  {'already ran' if r.existing else 'attached' if r.attached else 'submitted'}  "
                       f"{r.name or '-'} (run {r.run_id})")
        return
    _sweep_here(sets, workers, force, wide, csv_path)


def _sweep_here(sets: list[IcaParams], workers: int | None, force: bool, wide: bool, csv_path: str | None) -> None:
    """Run the sweep on this machine: a bar (a line per finished set when piped), then the table and counts."""
    from labkit.cli import progress
    from labkit.study.sweeps import SweepInterrupted, run_sweep

    tty = sys.stderr.isatty()

    def finished(row: dict[str, Any], done: int, total: int) -> None:
        click.echo(f"sweep {done}/{total}: run {row['run_id']}: {row['state']}", err=True)

    with progress.sweep_stops_on_signals():  # until labkit exits: a later Ctrl-C cuts no report short
        try:
            with progress.above_bars():
                frame = run_sweep(sets, workers=workers, force=force, progress=tty, on_row=None if tty else finished)
        except SweepInterrupted as stop:
            if csv_path:
                stop.frame.to_csv(csv_path)
            click.echo(progress.table(stop.frame, wide=wide) if len(stop.frame) else "(no set finished)")
            click.echo(f"interrupted: {progress.counts(stop.frame)}, {stop.not_started} not started")
            args = click.get_current_context().meta.get("labkit.args", sys.argv[1:])
            click.echo(progress.resume_command(args, shutil.get_terminal_size().columns if sys.stdout.isatty()
                                               else None))
            if "--force" in args:
                click.echo("  (without --force: the sets that finished are reused, not run again)")
            sys.exit(int(ExitCode.CANCELLED))
    if csv_path:
        frame.to_csv(csv_path)
    click.echo(progress.table(frame, wide=wide))
    click.echo(progress.counts(frame))
    if len(frame) and (frame["state"] != "succeeded").any():
        sys.exit(int(ExitCode.RUN_FAILED))


main.add_command(runs)
main.add_command(compare_runs)


@main.group()
def cache() -> None:
    """The preprocessing cache under base-dir (.labkit-cache): filtered recordings shared by runs."""


@cache.command("info")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .")
def cache_info(base_dir: str) -> None:
    """Where the cache is, how many entries, how many bytes of its limit (LABKIT_CACHE_MAX_BYTES)."""
    from labkit.analysis.cache import Cache
    from labkit.results.layout import cache_dir

    for k, v in Cache(cache_dir(base_dir)).info().items():
        click.echo(f"{k}: {v}")


@cache.command("clear")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .")
def cache_clear(base_dir: str) -> None:
    """Remove every cached preprocessed recording (results are untouched)."""
    from labkit.analysis.cache import Cache
    from labkit.results.layout import cache_dir

    click.echo(f"removed {Cache(cache_dir(base_dir)).clear()} cache entries")
