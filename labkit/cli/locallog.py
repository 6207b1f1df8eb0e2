"""A local run's log for the terminal, as ``labkit logs`` (``labkit.cli.cluster``) prints a run found here,
and the message for a run id found nowhere here: the folder searched and the nearest run ids.

Its own module so the cluster commands need nothing from ``labkit.cli.main`` (which loads them).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import click

from labkit.errors import ExitCode, LabkitError
from labkit.params import check_run_id
from labkit.results.layout import FOLDER_PREFIX, LOG_FILE, run_id_of

#: how many run ids a "no such run" message offers
SHOWN_IDS = 3


class RunNotFound(LabkitError):
    """No run folder with this id under the base directory (and no cluster to ask)."""

    exit_code = ExitCode.NOT_FOUND


def local_run_ids(base_dir: str | os.PathLike) -> list[str]:
    """The run ids of every run folder directly in ``base_dir`` (complete, failed or partial), sorted.

    Read from the folder names only, so listing a directory of many runs opens no file."""
    try:
        names = [p.name for p in Path(base_dir).iterdir() if p.name.startswith(FOLDER_PREFIX) and p.is_dir()]
    except OSError:
        return []
    return sorted({run_id_of(name) for name in names} - {""})


def not_found_here(base_dir: str | os.PathLike, run_id: str, why_not_cluster: str) -> RunNotFound:
    """The error for a run id with no folder here: the folder searched, the nearest ids, where else to look."""
    where = Path(base_dir).expanduser().resolve()
    ids = local_run_ids(where)
    if not ids:
        there = "it holds no run folders; --base-dir DIR (or $BASE_DIR) says where your runs are"
    else:
        near = difflib.get_close_matches(run_id, ids, n=SHOWN_IDS, cutoff=0.4)
        shown = ", ".join(near or ids[-SHOWN_IDS:])
        there = f"{'nearest' if near else 'newest'} run ids there: {shown} (labkit runs --base-dir {where} lists all)"
    return RunNotFound(f"No run {run_id!r} in {where} (searched for {FOLDER_PREFIX}{run_id}); {there}. "
                       f"{why_not_cluster}")


def print_local_log(base_dir: str, run_id: str, follow: bool = False, poll: float = 0.5) -> bool:
    """Print a local run's ``run.log`` (with ``follow``, until the run ends, then its outcome).

    False when ``base_dir`` holds no run ``run_id`` (``labkit logs`` then asks the cluster)."""
    import time

    from labkit.results.folder import RunFolder
    from labkit.results.reading import load_run

    try:
        folder = RunFolder(base_dir, check_run_id(run_id))
    except LabkitError:
        return False
    if not folder.path.is_dir():
        return False
    offset = 0
    while True:
        try:
            with folder.file(LOG_FILE).open("rb") as log:  # the folder may be renamed between reads
                log.seek(offset)
                chunk = log.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        click.echo(chunk.decode(errors="replace"), nl=False)
        found = load_run(folder.path)
        if not follow or (found.state in ("succeeded", "failed") and not chunk):
            break
        time.sleep(poll)
    if follow:
        click.echo(f"run {found.run_id}: {found.outcome}{f' ({found.error})' if found.error else ''}: {found.path}")
    return True
