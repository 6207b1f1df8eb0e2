"""The ``labkit`` command: a thin click layer over the Python API.

Parameter sources merge in this order, later wins: the defaults (the prototype's),
a ``--params`` JSON file, then individual flags. ``labkit entrypoint`` reads the
prototype's environment variables instead and is what the container image runs.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import LabkitError, ParameterError, RunFailed
from .options import fail as _fail
from .options import param_options, params_from_cli, read_params_file, run_id_option
from .params import IcaParams, check_run_id


class _Commands(click.Group):
    """labkit's commands; the cluster ones (``labkit.cluster.cli``) are imported only when used or listed.

    Importing them (YAML, manifests, settings) would add 0.04 s to the start of every ``labkit run``.
    """

    cluster = ("submit", "jobs", "logs", "cancel", "render")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.cluster])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.cluster:
            from .cluster.cli import COMMANDS

            return {command.name: command for command in COMMANDS}[cmd_name]
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Any labkit error a command lets through ends as its message and exit code, never a traceback."""
        try:
            return super().invoke(ctx)
        except LabkitError as err:
            _fail(err)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="labkit")
def main() -> None:
    """labkit: EEG/MEG ICA runs from a parameter set to a result folder."""


def _run_and_report(params: IcaParams, run_id: str | None, blas_threads: int, resume: bool = False) -> None:
    # papermill -> nbformat -> jsonschema imports the optional rfc3987_syntax URI checker, which
    # compiles a grammar at import (1.8 s of a run here); nbformat never checks URI formats.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from .runners import Cancelled, LocalRunner, terminate_on_signals

    params.raw_path()  # base directory and recording exist, inside base_dir: checked before any folder is made
    terminate_on_signals()
    try:
        result = LocalRunner(blas_threads=blas_threads).run(params, run_id=run_id, resume=resume)
    except LabkitError as err:  # a failed run, a taken run id, a folder that cannot be made
        _fail(err)
    except Cancelled:  # pragma: no cover - signal arrived outside the run
        sys.exit(130)
    click.echo(str(result.path))
    gc.freeze()  # done, every file closed: spare the exit a last collection of papermill's objects (0.1 s)


@main.command()
@param_options
@run_id_option("name the result folder PreExperiment_ICA_<run-id>")
@click.option("--blas-threads", default=1, show_default=True, help="BLAS threads for the ICA fit")
def run(params_file: Any, run_id: str | None, blas_threads: int, **values: Any) -> None:
    """Run one parameter set here (papermill) and print its result folder."""
    _run_and_report(params_from_cli(params_file, values), run_id, blas_threads)


@main.command()
def entrypoint() -> None:
    """Run from the prototype's environment variables (BASE_DIR, ICA_METHOD, ...); the image's command."""
    params = IcaParams.from_env()
    run_id = os.environ.get("LABKIT_RUN_ID") or None
    # a Job's retried pod has the same LABKIT_RUN_ID: it restarts its own folder, never a complete one
    _run_and_report(params, check_run_id(run_id, "LABKIT_RUN_ID") if run_id else None,
                    _env_count("LABKIT_BLAS_THREADS", 1), resume=run_id is not None)


def _env_count(name: str, default: int) -> int:
    """A positive whole number from the environment (empty means ``default``)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= 1024:
        raise ParameterError(name, text, "a whole number from 1 to 1024")
    return int(text)


@main.command("demo-data")
@click.option("--base-dir", default=lambda: os.environ.get("BASE_DIR", "."), show_default="$BASE_DIR or .",
              help="directory to write labkit-demo/demo_raw.fif into")
@click.option("--overwrite/--no-overwrite", default=False, help="regenerate even if present")
def demo_data(base_dir: str, overwrite: bool) -> None:
    """Write the demo recording (with its ground truth) and print its path relative to base-dir."""
    from .datasets import write_demo

    path = write_demo(base_dir, overwrite=overwrite)
    click.echo(str(Path(path).relative_to(Path(base_dir))))


@main.command()
@click.option("--base-dir", default=lambda: os.environ.get("BASE_DIR", "."), show_default="$BASE_DIR or .")
def runs(base_dir: str) -> None:
    """List the result folders under base-dir with their state and key metrics."""
    from .sweeps import runs_table

    click.echo(runs_table(base_dir).to_string())


@main.command("compare")
@click.option("--base-dir", default=lambda: os.environ.get("BASE_DIR", "."), show_default="$BASE_DIR or .")
@click.option("--metric", "metrics", multiple=True,
              help="a table column to compare (repeatable) [default: fit time and the ground-truth quality columns]")
@click.option("--by", default="method", show_default=True, help="the column whose values are the groups")
@click.option("--posthoc", type=click.Choice(["nemenyi", "conover"]), default="nemenyi", show_default=True)
@click.option("--unpaired", is_flag=True, help="treat the runs as unpaired instead of blocking by recording and seed")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="also write the run table as CSV")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False), default=None,
              help="write box plots, critical-difference diagrams and the topomap grid here as PNG")
def compare_runs(base_dir: str, metrics: tuple[str, ...], by: str, posthoc: str, unpaired: bool,
                 csv_path: str | None, figures_dir: str | None) -> None:
    """Compare the runs under base-dir: rank tests chosen by the design, effect sizes, Holm (labkit.compare)."""
    from . import compare

    frame = compare.table(base_dir)
    if frame.empty:
        raise compare.ComparisonError(f"no result folders under {base_dir}")
    if csv_path:
        frame.to_csv(csv_path)
    chosen = list(metrics) or [m for m in compare.DEFAULT_METRICS if m in frame and frame[m].notna().any()]
    result = compare.compare(frame, chosen, by, blocks=None if unpaired else compare.BLOCKS, posthoc=posthoc)
    click.echo(result.summary())
    click.echo("\n" + result.tests.drop(columns=["design", "blocking"]).to_string(index=False))
    if len(result.posthoc):
        click.echo("\n" + result.posthoc.to_string(index=False))
    for path in compare.save_figures(frame, result, figures_dir) if figures_dir else []:
        click.echo(f"wrote {path}")


@main.command()
@click.argument("sets_file", type=click.File("rb"))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="also write the table as CSV")
def sweep(sets_file: Any, csv_path: str | None) -> None:
    """Run every parameter set of a JSON list here, one after another, and print the comparison table."""
    from .sweeps import load_sets, run_sweep

    sets = load_sets(read_params_file(sets_file, "sets"))
    frame = run_sweep(sets)
    if csv_path:
        frame.to_csv(csv_path)
    click.echo(frame.drop(columns=["path"]).to_string())
    if (frame["state"] != "succeeded").any():
        sys.exit(RunFailed.exit_code)

