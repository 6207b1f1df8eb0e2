"""A local run's log for the terminal, as ``labkit logs`` (``labkit.cli.cluster``) prints a run found here.

Its own module so the cluster commands need nothing from ``labkit.cli.main`` (which loads them).
"""

from __future__ import annotations

import click

from labkit.errors import LabkitError
from labkit.params import check_run_id
from labkit.results.layout import LOG_FILE


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
