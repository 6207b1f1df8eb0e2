"""``labkit push`` and ``labkit fetch``, and the pod's side of a run without the share.

The store is the cluster settings' ``store`` (``--store`` names another: ``s3://bucket/prefix`` or
a directory). Credentials come from the environment only (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
or ``~/.aws``); nothing here prints them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from labkit.params import default_base_dir, existing_directory


def _store(url: str | None, endpoint: str | None, user: str | None) -> Any:
    from labkit.results.s3 import open_store

    if url:
        return open_store(url, endpoint=endpoint or "")
    from labkit.runners.cluster.settings import ClusterSettings
    from labkit.runners.cluster.submission import default_user

    settings = ClusterSettings.load().store
    if endpoint:
        settings = settings.model_copy(update={"endpoint": endpoint})
    return settings.open(user or default_user())


_store_options = [
    click.option("--store", "store_url", default=None, show_default="the cluster settings' store",
                 help="s3://bucket/prefix, or a directory"),
    click.option("--endpoint", default=None, help="the S3 endpoint URL (default: the cluster settings' store.endpoint)"),
    click.option("--user", default=None, help="whose part of the store (default: $JUPYTERHUB_USER or $LABKIT_USER)"),
]


def store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_store_options):
        command = option(command)
    return command


@click.command()
@click.argument("recording")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .",
              help="RECORDING is relative to it")
@store_options
def push(recording: str, base_dir: str, store_url: str | None, endpoint: str | None, user: str | None) -> None:
    """Put a recording (with its sidecar files: .vmrk/.eeg, .fdt, ...) into the store once, by content.

    Runs without the share fetch it by its SHA-256; pushing it again uploads nothing."""
    from labkit.errors import ParameterError
    from labkit.results.store import push_recording

    base = Path(existing_directory(base_dir)).resolve()
    path = base / recording
    try:  # the path a parameter set names it by (raw_file_path); never a file outside the user's directory
        name = str(path.resolve().relative_to(base))
    except ValueError:
        raise ParameterError("recording", recording, f"a recording inside {base} (no '..', no link out of it)") from None
    if not path.exists():
        raise ParameterError("recording", recording, f"a recording under {base}")
    store = _store(store_url, endpoint, user)
    pushed = push_recording(store, path, name=name)
    what = f"{len(pushed.files)} file{'s' * (len(pushed.files) != 1)}"
    if pushed.uploaded:
        click.echo(f"pushed {recording} ({what}, {pushed.uploaded} bytes) to {store.url}")
    else:
        click.echo(f"{recording} is already in {store.url} ({what}); nothing uploaded")
    click.echo(pushed.sha256)


@click.command()
@click.argument("run")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .",
              help="where the result folder goes")
@store_options
def fetch(run: str, base_dir: str, store_url: str | None, endpoint: str | None, user: str | None) -> None:
    """Bring a stored run's result folder home, verified (SHA-256 of every file), atomically, as a local run's.

    On a hub with the labkit service (and no --store) the service reads the store for you: your server needs
    no store credentials."""
    from labkit.params import check_run_id
    from labkit.results.store import AlreadyHere, fetch_run

    check_run_id(run)
    from labkit.runners.hub import service_store

    # on a hub with the labkit service (and no --store), the service reads your part of the store for you
    store = (None if store_url else service_store(user=user)) or _store(store_url, endpoint, user)
    try:
        path = fetch_run(store, run, existing_directory(base_dir))
    except AlreadyHere as here:
        click.echo(f"run {run} is already here; left as it is")
        click.echo(str(here.path))
        return
    click.echo(f"fetched run {run} from {store.url}")
    click.echo(str(path))


COMMANDS = (push, fetch)


def store_mode(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this pod runs without the share: its Job says so (``LABKIT_CLUSTER_USE_STORE``)."""
    environ = os.environ if environ is None else environ
    return str(environ.get("LABKIT_CLUSTER_USE_STORE", "")).lower() in ("1", "true", "yes", "on")


def run_with_store(run: Callable[[], None], run_id: str) -> None:
    """The pod's run without the share: fetch the recording by its fingerprint into the scratch directory,
    verified, run, then upload the result folder (whatever its outcome) and commit it with its manifest."""
    from labkit.cli.options import fail
    from labkit.errors import LabkitError
    from labkit.params import IcaParams
    from labkit.results.layout import FOLDER_PREFIX, PARTIAL, current_path
    from labkit.results.store import RECORDING_SHA_ENV, fetch_recording, pushed_as, upload_folder
    from labkit.runners.cluster.settings import ClusterSettings

    params = IcaParams.from_env()
    raw = Path(params.base_dir) / params.raw_file_path
    try:
        store = ClusterSettings.load().store.open()
        # a Job built where the recording is not visible (the hub service) names it by its path only
        sha = os.environ.get(RECORDING_SHA_ENV, "") or pushed_as(store, params.raw_file_path)
        raw.parent.mkdir(parents=True, exist_ok=True)
        fetched = fetch_recording(store, sha, raw.parent)
        if fetched != raw:
            raise LabkitError(f"the store's recording {sha} is {fetched.name}, not {raw.name}")
        click.echo(f"labkit: fetched {params.raw_file_path} ({sha}) from {store.url}", err=True)
    except LabkitError as err:
        fail(err)
    try:
        run()
    finally:
        folder = current_path(Path(params.base_dir) / (FOLDER_PREFIX + run_id)) if run_id else None
        if folder is not None and folder.is_dir() and not folder.name.endswith(PARTIAL):
            try:
                manifest = upload_folder(store, folder)
            except LabkitError as err:
                click.echo(f"labkit: the result of run {run_id} could not be uploaded: {err}", err=True)
                sys.exit(1)  # an infrastructure failure: the Job retries it
            click.echo(f"labkit: uploaded run {run_id} ({len(manifest['files'])} files) to {store.url}", err=True)


def verify_recording(params: Any) -> None:
    """When the step names its recording's fingerprint (``LABKIT_RECORDING_SHA256``, an Argo artifact step),
    refuse a recording whose content differs (exit 3), before any folder is made."""
    from labkit.cli.options import fail
    from labkit.errors import RecordingError
    from labkit.results.provenance import fingerprint
    from labkit.results.store import RECORDING_SHA_ENV

    expected = os.environ.get(RECORDING_SHA_ENV, "")
    if not expected:
        return
    try:
        got = fingerprint(params.raw_path())
    except (OSError, ValueError):
        return  # a missing recording is the run's to report, by the field that names it
    if got != expected:
        fail(RecordingError(f"the recording {params.raw_file_path} has the fingerprint {got}, not {expected} "
                            f"({RECORDING_SHA_ENV}); refused"))


def artifact_export(sets: list[Any], *, image: str) -> str:
    """``labkit sweep --export argo --artifacts s3``: the Workflow whose steps take their recordings from the
    store's bucket (pushed by ``labkit push``) and leave their results as artifacts; the recordings are named
    by content, read here."""
    from labkit.errors import LabkitError
    from labkit.results.provenance import fingerprint
    from labkit.runners.argo import artifact_workflow
    from labkit.runners.cluster.settings import ClusterSettings
    from labkit.runners.cluster.submission import default_user

    store = ClusterSettings.load().store
    if store.kind != "s3" or not store.bucket:
        raise LabkitError("--artifacts s3 needs the artifact store in the cluster settings (store.kind: s3, "
                          "store.bucket: the bucket of Argo's artifact repository)")
    prefix = store.url(default_user()).split("/", 3)[3]
    recordings = {}
    for params in sets:
        if params.raw_file_path not in recordings:
            recordings[params.raw_file_path] = fingerprint(params.raw_path())
    click.echo("labkit: the Workflow reads these recordings from s3://" + store.bucket + "/" + prefix
               + "; push each once: " + "; ".join(f"labkit push {r}" for r in recordings), err=True)
    return artifact_workflow(sets, image=image, recordings=recordings, prefix=prefix).to_yaml()
