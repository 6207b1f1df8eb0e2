"""Where a run's files are and how they are written: folder names, file names, atomic writes.

Layout (the prototype's ``PreExperiment_ICA_{timestamp}`` name is kept)::

    PreExperiment_ICA_{run_id}.partial/   while running (status queued/running)
    PreExperiment_ICA_{run_id}.failed/    after a failure or a cancel (status failed/cancelled + error)
    PreExperiment_ICA_{run_id}/           complete (status succeeded)

A folder is renamed only once everything in it is written, so a reader that sees
the final name may trust the contents. Files are replaced atomically (:func:`write_text`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from labkit.params import RUN_ID_RESERVED_SUFFIXES, IcaParams

FOLDER_PREFIX = "PreExperiment_ICA_"
#: the suffixes of a folder that is not complete: still running, or ended without a result (failed or cancelled)
PARTIAL, FAILED = RUN_ID_RESERVED_SUFFIXES
#: where run ids are claimed (one directory per id, made exclusively, never removed)
CLAIMS_DIR = ".labkit/run-ids"
RESERVE_FILE = ".reserve"
#: the runner process's heartbeat, beside the kernel's in status.json (see RunFolder.runner_heartbeat)
RUNNER_BEAT_FILE = ".runner-heartbeat.json"
RESERVE_BYTES = 64 * 1024
TMP_SUFFIX = ".tmp"
#: the shared preprocessing cache under a base directory (:mod:`labkit.analysis.cache`), and fingerprints
CACHE_DIRNAME = ".labkit-cache"

LOG_FILE = "run.log"
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
NOTEBOOK_FILE = "ica_run.ipynb"
REPORT_FILE = "report.html"
ICA_FILE = "components-ica.fif"
TOPOMAP_GLOB = "topomaps*.png"
#: each component's own scalp map, cut from the topomaps' grid (``maps/ICA000.png``: MNE's component names)
MAPS_DIR = "maps"
COMPONENTS_TSV = "components.tsv"


def component_map(component: int) -> str:
    """Where, in a result folder, one component's own map is (named as MNE names the component)."""
    return f"{MAPS_DIR}/ICA{component:03d}.png"


def cache_dir(base_dir: str | os.PathLike) -> Path:
    """The cache directory under ``base_dir``: filtered recordings and recording fingerprints."""
    return Path(base_dir) / CACHE_DIRNAME


def now() -> str:
    """The time in UTC, to the second, as every status and log line records it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id(params: IcaParams) -> str:
    """Timestamp (UTC, to the millisecond) plus the set's digest: sortable and unique per run."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{stamp}-{params.digest[:6]}"


def run_id_of(folder_name: str) -> str:
    """The run id in a folder name (``PreExperiment_ICA_{run_id}`` plus ``.partial``/``.failed``)."""
    name = folder_name[len(FOLDER_PREFIX):]
    for suffix in (PARTIAL, FAILED):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def current_path(bare: Path) -> Path:
    """Where the run folder ``bare`` is now: complete, failed or partial (partial if none exists yet)."""
    for suffix in ("", FAILED, PARTIAL):
        candidate = bare.with_name(bare.name + suffix)
        if candidate.is_dir():
            return candidate
    return bare.with_name(bare.name + PARTIAL)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically with ``data`` as JSON (:func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically: a private temporary file in the same folder, fsync, rename.

    A reader sees the old content or the new one, never a mix or an empty file; on any
    failure (a full disk) the temporary file is removed and the old content stays.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it (mkstemp makes 0600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Damaged(Exception):
    """A file of a run folder cannot be read as what it should be; the message says why."""


def read_json(path: Path) -> Any:
    """The JSON in ``path``; None if it does not exist; :class:`Damaged` if it cannot be read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise Damaged(f"{path.name} cannot be read ({err})") from None
    if not text.strip():
        raise Damaged(f"{path.name} is empty (its write was cut short)")
    try:
        return json.loads(text)
    except ValueError as err:
        raise Damaged(f"{path.name} is not valid JSON (truncated?): {err}") from None
