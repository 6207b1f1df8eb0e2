"""``labkit submit / jobs / logs / cancel / render``: the cluster face of the ``labkit`` command.

:func:`register` adds the commands to the main click group. Parameter flags are
generated from :data:`labkit.params.FIELDS` (one ``--flag`` per field) plus
``--params FILE.json``; cluster settings come from ``--settings FILE``,
``$LABKIT_CLUSTER_CONFIG`` and ``LABKIT_CLUSTER_*`` variables, with ``--set key=value``
overrides (``--set storage.nfs_server=nfs.lab.example``).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click
import yaml

from ..errors import LabkitError
from ..params import FIELDS, IcaParams
from .settings import ClusterSettings

EXIT_FAILED = 1


def _fail(err: LabkitError) -> None:
    click.echo(f"labkit: {err}", err=True)
    sys.exit(getattr(err, "exit_code", 1))


def _param_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for field in reversed(FIELDS):
        command = click.option(field.flag, field.name, default=None, help=f"{field.help} [env {field.env}]")(command)
    return click.option("--params", "params_file", type=click.File("r"), default=None,
                        help="JSON parameter set ('-' for stdin); flags override it")(command)


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="override one cluster setting, e.g. --set scheduler.queue=eeg")(command)
    command = click.option("--settings", "settings_file", type=click.Path(dir_okay=False), default=None,
                           help="cluster settings YAML/JSON [default: $LABKIT_CLUSTER_CONFIG, LABKIT_CLUSTER_*]")(command)
    return click.option("--user", default=None, help="whose Jobs [default: $JUPYTERHUB_USER]")(command)


def _params(params_file: Any, values: dict[str, Any]) -> IcaParams:
    base = IcaParams.from_json(params_file.read()) if params_file is not None else None
    given = {k: v for k, v in values.items() if v is not None}
    return base.replace(**given) if base is not None else IcaParams(**given)


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
        target[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    return ClusterSettings.from_dict(data)


def _jobs(user: str | None, settings_file: str | None, overrides: tuple[str, ...]) -> Any:
    from .jobs import ClusterJobs

    return ClusterJobs(load_settings(settings_file, overrides), user)


def _resolve(jobs: Any, name: str) -> str:
    """Accept a Job name or a run id."""
    if name.startswith("labkit-"):
        return name
    for st in jobs.list():
        if st.run_id == name:
            return st.name
    return name


def _print_status(status: Any) -> None:
    kind = ""
    if status.phase == "failed" and status.infrastructure is not None:
        kind = " [cluster problem]" if status.infrastructure else " [analysis error]"
    click.echo(f"{status.summary()}{kind}")
    if status.phase == "failed":
        for line in status.events[-5:]:
            click.echo(f"  event: {line}")


@click.command("submit")
@_param_options
@_settings_options
@click.option("--force", is_flag=True, help="run again even if this parameter set was already submitted")
@click.option("--run-id", default=None, help="name the result folder PreExperiment_ICA_<run-id>")
@click.option("--wait/--no-wait", default=False, help="follow the Job until it finishes (exit 1 if it fails)")
@click.option("-f", "--follow", is_flag=True, help="stream the run's log while waiting (implies --wait)")
def submit_cmd(params_file: Any, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
               force: bool, run_id: str | None, wait: bool, follow: bool, **values: Any) -> None:
    """Run a parameter set as a Kubernetes Job on your data directory."""
    try:
        params = _params(params_file, values)
        jobs = _jobs(user, settings_file, overrides)
        sub = jobs.submit(params, force=force, run_id=run_id)
        for warning in sub.warnings:
            click.echo(f"labkit: warning: {warning}", err=True)
        verb = "attached to" if sub.attached else "submitted"
        click.echo(f"{verb} {sub.name} (run {sub.run_id}, namespace {sub.namespace})")
        if not (wait or follow):
            click.echo(f"follow it with: labkit logs -f {sub.name}")
            return
        if follow:
            for line in jobs.logs(sub.name, follow=True):
                click.echo(line)
        final = jobs.watch(sub.name, on_change=_print_status if not follow else None)
        if follow:
            _print_status(final)
        if final.phase == "succeeded" and jobs.settings.storage.local_base_dir:
            try:
                click.echo(str(jobs.result(final).path))
            except LabkitError as err:
                click.echo(f"labkit: {err}", err=True)
        if final.phase != "succeeded":
            sys.exit(EXIT_FAILED)
    except LabkitError as err:
        _fail(err)


@click.command("jobs")
@_settings_options
@click.option("--sweep", "sweep_id", default=None, help="only the Jobs of this sweep")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def jobs_cmd(user: str | None, settings_file: str | None, overrides: tuple[str, ...], sweep_id: str | None,
             as_json: bool) -> None:
    """List your labkit Jobs with their state."""
    try:
        jobs = _jobs(user, settings_file, overrides)
        statuses = jobs.list(sweep_id)
    except LabkitError as err:
        _fail(err)
    if as_json:
        import dataclasses

        click.echo(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2, default=str))
        return
    if not statuses:
        click.echo("no labkit Jobs")
        return
    rows = [("NAME", "PHASE", "RUN ID", "CREATED", "REASON")]
    rows += [(s.name, s.phase, s.run_id, s.created, s.reason) for s in statuses]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(str(r[i]).ljust(widths[i]) for i in range(4)) + "  " + str(r[4]))


@click.command("logs")
@click.argument("name")
@_settings_options
@click.option("-f", "--follow", is_flag=True, help="keep streaming until the run ends")
def logs_cmd(name: str, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
             follow: bool) -> None:
    """Print the log of a Job (by Job name or run id)."""
    try:
        jobs = _jobs(user, settings_file, overrides)
        name = _resolve(jobs, name)
        for line in jobs.logs(name, follow=follow):
            click.echo(line)
        if follow:
            _print_status(jobs.status(name))
    except LabkitError as err:
        _fail(err)


@click.command("cancel")
@click.argument("name")
@_settings_options
@click.option("--foreground", is_flag=True, help="wait for the pods to be deleted before the Job disappears")
def cancel_cmd(name: str, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
               foreground: bool) -> None:
    """Stop and delete one of your Jobs (by Job name or run id)."""
    try:
        jobs = _jobs(user, settings_file, overrides)
        name = _resolve(jobs, name)
        jobs.cancel(name, "Foreground" if foreground else "Background")
    except LabkitError as err:
        _fail(err)
    click.echo(f"cancelled {name}")


@click.command("render")
@_param_options
@_settings_options
@click.option("--run-id", default=None, help="run id to put in the manifest [default: a new one]")
@click.option("--sweep-id", default=None, help="label the Job as part of this sweep")
def render_cmd(params_file: Any, user: str | None, settings_file: str | None, overrides: tuple[str, ...],
               run_id: str | None, sweep_id: str | None, **values: Any) -> None:
    """Print the Job manifest for a parameter set as YAML (no cluster needed)."""
    from .jobs import default_user
    from .manifests import build_job, to_yaml

    try:
        params = _params(params_file, values)
        settings = load_settings(settings_file, overrides)
        manifest = build_job(params, settings, user or default_user(), run_id, sweep_id)
    except LabkitError as err:
        _fail(err)
    click.echo(to_yaml(manifest), nl=False)


COMMANDS = (submit_cmd, jobs_cmd, logs_cmd, cancel_cmd, render_cmd)


def register(group: click.Group) -> None:
    """Add ``submit``, ``jobs``, ``logs``, ``cancel`` and ``render`` to the ``labkit`` group."""
    for command in COMMANDS:
        group.add_command(command)


@click.group()
def cluster() -> None:
    """labkit cluster commands (also registered on the main ``labkit`` command)."""


register(cluster)
