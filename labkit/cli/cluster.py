"""``labkit submit / jobs / logs / cancel / render``: the cluster face of the ``labkit`` command.

The main click group (``labkit.cli.main``) offers :data:`COMMANDS`. Parameter flags are
generated from :data:`labkit.params.FIELDS` (one ``--flag`` per field) plus
``--params FILE.json``; cluster settings come from ``--settings FILE``,
``$LABKIT_CLUSTER_CONFIG`` and ``LABKIT_CLUSTER_*`` variables, with ``--set key=value``
overrides (``--set storage.nfs_server=nfs.lab.example``).

A run is submitted, listed, followed, logged and cancelled through the runs interface
(:class:`labkit.runners.cluster.backend.JobsBackend`, the hub's service or Kubernetes directly), so
its state reads in the same words as a local run's. Sweeps as one Volcano Job (gang scheduling,
``minAvailable``) are the cluster's own and go through the backend's ``jobs``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
import yaml

from labkit.cli.options import fail as _fail
from labkit.cli.options import param_options, params_from_cli, read_params_file, run_id_option
from labkit.errors import ExitCode, LabkitError
from labkit.params import default_base_dir
from labkit.runners.backend import CANCELLED, FAILED, SUCCEEDED, WITH_WARNINGS
from labkit.runners.cluster.errors import ClusterNotFound
from labkit.runners.cluster.settings import ClusterSettings


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="override one cluster setting, e.g. --set scheduler.queue=eeg")(command)
    command = click.option("--settings", "settings_file", type=click.Path(dir_okay=False), default=None,
                           help="cluster settings YAML/JSON [default: $LABKIT_CLUSTER_CONFIG, LABKIT_CLUSTER_*]")(command)
    return click.option("--user", default=None, help="whose Jobs [default: $JUPYTERHUB_USER]")(command)


def load_settings(settings_file: str | None, overrides: tuple[str, ...] = ()) -> ClusterSettings:
    settings = ClusterSettings.load(settings_file)
    if not overrides:
        return settings
    data = settings.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        target = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = _setting_value(value)
    return ClusterSettings.from_dict(data)


def _setting_value(text: str) -> Any:
    """A ``--set`` value: JSON/YAML for lists and mappings, ``null`` for none, else the text itself,
    parsed by the setting's own type (so ``--set scheduler.queue=on`` is the queue ``on``)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            return text
    return None if stripped.lower() in ("null", "none", "~") else text


def cluster_configured(settings_file: str | None = None, overrides: tuple[str, ...] = (),
                       environ: dict[str, str] | None = None) -> bool:
    """Whether there is a cluster or hub to ask at all: settings given, a hub, or Kubernetes credentials.

    Without any, a cluster lookup could only fail on who the user is or on missing credentials,
    which hides the answer that matters here (no such local run)."""
    import os
    from pathlib import Path

    from labkit.runners.cluster.settings import CONFIG_ENV, ENV_PREFIX
    from labkit.runners.hub import SERVICE_URL_ENV

    env = dict(os.environ if environ is None else environ)
    if settings_file or overrides or any(env.get(k) for k in (CONFIG_ENV, SERVICE_URL_ENV, "JUPYTERHUB_API_URL",
                                                              "KUBERNETES_SERVICE_HOST", "KUBECONFIG")):
        return True
    if any(k.startswith(ENV_PREFIX) and v for k, v in env.items()):
        return True
    home = env.get("HOME")
    return bool(home) and (Path(home) / ".kube" / "config").is_file()


def _backend(user: str | None, settings_file: str | None, overrides: tuple[str, ...]) -> Any:
    """The runs interface for the cluster commands: the hub's labkit service when there is one, else Kubernetes."""
    from labkit.runners.hub import cluster_backend

    return cluster_backend(load_settings(settings_file, overrides), user)


def _explained(command: Callable[..., Any]) -> Callable[..., Any]:
    """Report a labkit error in words (``labkit: ...``, its exit code), never as a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LabkitError as err:
            _fail(err)

    return wrapper


def _print_run(run: Any) -> None:
    """One line per state a cluster run passes through (a failure: whose problem it is, and its last events)."""
    node = run.details.get("node")
    text = f"{run.name}: {run.state}" + (f" on {node}" if node else "") + (f" - {run.reason}" if run.reason else "")
    infrastructure = run.details.get("infrastructure")
    if run.state == FAILED and infrastructure is not None:
        text += " [cluster problem]" if infrastructure else " [analysis error]"
    click.echo(text)
    if run.state == FAILED:
        for line in run.details.get("events", [])[-5:]:
            click.echo(f"  event: {line}")


def _print_status(status: Any) -> None:
    """A sweep run's JobStatus, told as a run."""
    from labkit.runners.cluster.backend import run_of_job

    _print_run(run_of_job(status, "cluster"))


def _table(rows: list[tuple[Any, ...]]) -> None:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        # the last column is left unpadded: zip stops at the widths
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + str(r[-1]))


def _print_sweep(sweep: Any) -> None:
    click.echo(sweep.summary())
    _table([("RUN", "PHASE", "RUN ID", "NODE", "REASON")]
           + [(r.name, r.phase, r.run_id, r.node or "-", r.reason) for r in sweep.runs])


def _follow_sweep(jobs: Any, sweep_id: str, names: list[str] = ()) -> None:
    final = jobs.watch_sweep(sweep_id, on_change=_print_status, names=names)
    _print_sweep(final)
    results = jobs.sweep_results(final)
    for found in results:
        click.echo(f"result {found.run_id} ({found.state}): {found.path}")
    missing = sum(r.done for r in final.runs) - len(results)
    if missing:
        click.echo(f"labkit: {missing} result folder(s) not found under {jobs.settings.storage.local_dir()}; "
                   "set storage.local_base_dir to where your data directory is mounted here", err=True)
    if final.phase != "succeeded":
        sys.exit(int(ExitCode.RUN_FAILED))


def _submit_sweep(jobs: Any, sweep_file: Any, values: dict[str, Any], *, volcano: bool | None,
                  sweep_id: str | None, force: bool, min_available: int | None, wait: bool) -> None:
    from labkit.study.sweeps import load_sets

    given = {k: v for k, v in values.items() if v is not None}
    sets = [p.replace(**given) if given else p
            for p in load_sets(read_params_file(sweep_file, "sweep"), folder=Path(sweep_file.name).parent)]
    sub = jobs.submit_sweep(sets, volcano=volcano, sweep_id=sweep_id, force=force, min_available=min_available)
    for warning in sub.warnings:
        click.echo(f"labkit: warning: {warning}", err=True)
    todo = [r for r in sub.runs if r.existing is None]
    if sub.kind == "volcano" and sub.name:
        how = f"one Volcano Job {sub.name}, queue {jobs.settings.scheduler.queue or 'default'}"
    else:
        how = f"{len(todo)} Job{'s' if len(todo) != 1 else ''}"
    click.echo(f"sweep {sub.sweep_id}: {len(sub.runs)} runs ({how}, namespace {jobs.namespace})")
    for run in sub.runs:
        if run.existing is not None:
            click.echo(f"  already ran  run {run.run_id}: {run.existing.path}")
        else:
            click.echo(f"  {'attached to' if run.attached else 'submitted'}  {run.name} (run {run.run_id})")
    if not todo:
        click.echo("every set already ran; use --force to run them again")
    elif wait:
        _follow_sweep(jobs, sub.sweep_id, [r.name for r in todo] if sub.kind == "jobs" else [])
    else:
        click.echo(f"follow it with: labkit jobs --sweep {sub.sweep_id} --watch")


@click.command("submit")
@param_options
@_settings_options
@click.option("--force", is_flag=True, help="run again even if this parameter set already ran or was submitted")
@run_id_option("name the result folder PreExperiment_ICA_<run-id>")
@click.option("--sweep", "sweep_file", type=click.File("rb"), default=None, metavar="SETS.json",
              help="submit a sweep: a JSON list of parameter sets (as the notebook form exports); "
                   "flags override every set (the environment variables do not)")
@click.option("--volcano/--no-volcano", default=None,
              help="a sweep as one Volcano Job [default: when scheduler.name is volcano], else one Job per set")
@click.option("--min-available", type=click.IntRange(1), default=None,
              help="Volcano minAvailable: how many runs of the sweep must fit at once to start "
                   "[default: scheduler.min_available; on a hub only the admin's setting]")
@click.option("--sweep-id", default=None, help="name the sweep [default: a hash of its sets]")
@click.option("--wait/--no-wait", default=False,
              help=f"follow until it finishes (exit {int(ExitCode.RUN_FAILED)} if it fails)")
@click.option("-f", "--follow", is_flag=True, help="stream the run's log while waiting (implies --wait)")
@_explained
def submit_cmd(params_file: Any, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
               force: bool, run_id: str | None, sweep_file: Any, volcano: bool | None, min_available: int | None,
               sweep_id: str | None, wait: bool, follow: bool, **values: Any) -> None:
    """Run a parameter set (or a sweep of them) as Kubernetes Jobs on your data directory.

    A set that already ran (its complete result folder is in your directory) is reported
    instead of run again, and an identical set still on the cluster is followed, unless --force.
    """
    backend = _backend(user, settings_file, overrides)
    if sweep_file is not None:
        if params_file is not None or run_id:
            raise click.UsageError("--sweep takes the sets from its file: no --params or --run-id with it")
        _submit_sweep(backend.jobs, sweep_file, values, volcano=volcano, sweep_id=sweep_id, force=force,
                      min_available=min_available, wait=wait or follow)
        return
    run = backend.submit(params_from_cli(params_file, values), force=force, run_id=run_id, sweep_id=sweep_id)
    for warning in run.details.get("submit_warnings", ()):
        click.echo(f"labkit: warning: {warning}", err=True)
    if run.details.get("already_ran"):
        click.echo(f"already ran: run {run.run_id} ({run.state}); use --force to run it again")
        click.echo(run.where)
        return
    verb = "attached to" if run.details.get("attached") else "submitted"
    click.echo(f"{verb} {run.name} (run {run.run_id}, namespace {run.details.get('namespace', '')})")
    if not (wait or follow):
        click.echo(f"follow it with: labkit logs -f {run.name}")
        return
    if follow:
        for line in backend.log(run.name, follow=True):
            click.echo(line)
    final = backend.watch(run.name, on_change=None if follow else _print_run)
    if follow:
        _print_run(final)
    _exit_for(backend, final)


def _exit_for(backend: Any, final: Any) -> None:
    """A finished run's folder (succeeded), else the exit code of a failed (4) or cancelled (130) local run."""
    if final.state in (SUCCEEDED, WITH_WARNINGS):
        try:
            click.echo(str(backend.result(final.name).path))
        except LabkitError as err:
            click.echo(f"labkit: {err}", err=True)
    elif final.state == CANCELLED:
        sys.exit(int(ExitCode.CANCELLED))
    else:
        sys.exit(int(ExitCode.RUN_FAILED))


@click.command("jobs")
@_settings_options
@click.option("--sweep", "sweep_id", default=None, help="the runs of this sweep, one row each")
@click.option("--watch", is_flag=True,
              help=f"with --sweep: follow until every run is done (exit {int(ExitCode.RUN_FAILED)} if one fails)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@_explained
def jobs_cmd(user: str | None, settings_file: str | None, overrides: tuple[str, ...], sweep_id: str | None,
             watch: bool, as_json: bool) -> None:
    """List your labkit Jobs (and Volcano sweeps) with their state."""
    import dataclasses

    backend = _backend(user, settings_file, overrides)
    if watch and not sweep_id:
        raise click.UsageError("--watch follows a sweep: give --sweep ID")
    if sweep_id:
        if watch:
            _follow_sweep(backend.jobs, sweep_id)
            return
        sweep = backend.jobs.sweep_status(sweep_id)
        if as_json:
            click.echo(json.dumps({"sweep_id": sweep.sweep_id, "kind": sweep.kind, "name": sweep.name,
                                   "phase": sweep.phase, "runs": [dataclasses.asdict(r) for r in sweep.runs]},
                                  indent=2, default=str))
        else:
            _print_sweep(sweep)
        return
    runs = backend.runs()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
    elif not runs:
        click.echo("no labkit Jobs")
    else:
        _table([("NAME", "STATE", "RUN ID", "SWEEP", "CREATED", "REASON")]
               + [(r.name, r.state, r.run_id or "-", r.sweep_id or "-", r.created, r.reason) for r in runs])


@click.command("logs")
@click.argument("name")
@_settings_options
@click.option("-f", "--follow", is_flag=True, help="keep streaming until the run ends")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .",
              help="where local runs are: a run id found here prints its run.log, no cluster needed")
@_explained
def logs_cmd(name: str, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
             follow: bool, base_dir: str) -> None:
    """Print the log of a run: a local run by run id, else a cluster run (Job name, Volcano run name or run id)."""
    from labkit.cli.locallog import not_found_here, print_local_log

    if print_local_log(base_dir, name, follow):
        return
    if not cluster_configured(settings_file, overrides):
        raise not_found_here(base_dir, name, "No cluster to ask either: no cluster settings (--settings, "
                             "$LABKIT_CLUSTER_CONFIG), no hub service and no kubeconfig.")
    backend = _backend(user, settings_file, overrides)
    printed = False
    try:
        for line in backend.log(name, follow=follow):
            printed = True
            click.echo(line)
    except ClusterNotFound as err:
        if printed:
            raise
        raise not_found_here(base_dir, name, f"Nor on the cluster: {err}") from None
    if follow:
        _print_run(backend.status(name))


@click.command("cancel")
@click.argument("name", required=False)
@_settings_options
@click.option("--sweep", "sweep_id", default=None, help="cancel every run of this sweep instead")
@click.option("--foreground", is_flag=True, help="wait for the pods to be deleted before the Job disappears")
@_explained
def cancel_cmd(name: str | None, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
               sweep_id: str | None, foreground: bool) -> None:
    """Stop and delete one of your Jobs (by Job name or run id), or a whole sweep (--sweep ID).

    A run that already ended has nothing to stop: its Job is removed and its result folder stays."""
    if bool(name) == bool(sweep_id):
        raise click.UsageError("give a Job name (or run id), or --sweep ID")
    backend = _backend(user, settings_file, overrides)
    propagation = "Foreground" if foreground else "Background"
    if sweep_id:
        for cancelled in backend.jobs.cancel_sweep(sweep_id, propagation):
            click.echo(f"cancelled {cancelled}")
        return
    run = backend.status(name)
    if run.done:  # nothing left to stop: its Job is removed, its result folder stays
        backend.jobs.cancel(run.name, propagation)
        click.echo(f"removed {run.name} (it had already {run.state}; its result folder stays)")
        return
    click.echo(f"cancelled {backend.cancel(name, propagation=propagation).name}")


#: what ``labkit render`` mounts when no storage is configured: each user's home claim on a
#: zero-to-jupyterhub hub (KubeSpawner's default PVC name)
RENDER_DEFAULT_PVC = "claim-{user}"


@click.command("render")
@param_options
@_settings_options
@run_id_option("run id to put in the manifest [default: a new one]")
@click.option("--sweep-id", default=None, help="label the Job as part of this sweep")
@click.option("--profile", default=None, metavar="NAME",
              help="with the admin's profile NAME applied (its placement, resources, artifact store)")
@_explained
def render_cmd(params_file: Any, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
               run_id: str | None, sweep_id: str | None, profile: str | None, **values: Any) -> None:
    """Print the Job manifest for a parameter set as YAML (no cluster needed)."""
    from labkit.runners.cluster.manifests import build_job, to_yaml
    from labkit.runners.cluster.submission import default_user

    params = params_from_cli(params_file, values)
    settings = load_settings(settings_file, overrides)
    if not (settings.storage.pvc or settings.storage.nfs_server):
        settings = load_settings(settings_file, (f"storage.pvc={RENDER_DEFAULT_PVC}", *overrides))
        click.echo(f"labkit: no storage configured; rendered with storage.pvc={RENDER_DEFAULT_PVC} "
                   "(zero-to-jupyterhub's home claim); set storage.nfs_server or storage.pvc", err=True)
    if profile is not None:
        if profile not in settings.profiles:
            from labkit.errors import ParameterError

            raise ParameterError("profile", profile, sorted(settings.profiles) or "none: these settings define no profiles")
        settings = settings.with_profile(profile)
    manifest = build_job(params, settings, user or default_user(), run_id, sweep_id)
    click.echo(to_yaml(manifest), nl=False)


@click.command("hub-service")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), default=None,
              help="cluster settings YAML [default: $LABKIT_CLUSTER_CONFIG, LABKIT_CLUSTER_*]")
@_explained
def hub_service_cmd(settings_file: str | None) -> None:
    """Run the labkit JupyterHub service: it submits and follows Jobs for the hub's users.

    Started by JupyterHub (or as its own Deployment) with JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN,
    JUPYTERHUB_SERVICE_PREFIX and JUPYTERHUB_SERVICE_URL set; listens on LABKIT_HUB_SERVICE_PORT
    (default 8765). See k8s/README.md.
    """
    import asyncio
    import logging

    from labkit.hub.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ClusterSettings.load(settings_file)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass


#: the commands the main ``labkit`` group offers from this module (imported when one is used)
COMMANDS = (submit_cmd, jobs_cmd, logs_cmd, cancel_cmd, render_cmd, hub_service_cmd)
