"""Who works on a run and whether they still live: owner, pid check, heartbeat timing, fault injection.

The timing comes from ``LABKIT_HEARTBEAT_S`` and ``LABKIT_STALE_S``; ``LABKIT_PAUSE_AT``
stops the process at a named point so a test can kill it there (all read through :func:`labkit.settings.env`,
which refuses a bad value by name).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
from pathlib import Path
from typing import Any

from labkit.settings import env


def heartbeat_interval() -> float:
    """Seconds between a working run's heartbeats (``LABKIT_HEARTBEAT_S``, default 5; see :mod:`labkit.settings`)."""
    return env().heartbeat_s


def stale_after() -> float:
    """Seconds without a heartbeat after which a run on another host reads as dead
    (``LABKIT_STALE_S``, default 60; never less than three of the run's own heartbeat intervals)."""
    return env().stale_s


def owner() -> dict[str, Any]:
    """Who works on a run: pid and host (checked on the same host) and the heartbeat interval."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat_s": heartbeat_interval()}


def checkpoint(name: str) -> None:
    """Fault injection for tests: ``LABKIT_PAUSE_AT=<name>`` stops this process (SIGSTOP) at that point,
    so a test can kill it there (before the kernel starts, in any step, before the outcome is recorded)."""
    if env().pause_at == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` lives on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the signal check is all there is
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def parse_time(text: Any) -> dt.datetime | None:
    """A recorded timestamp (naive ones are UTC), or None when it is not one."""
    try:
        stamp = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)

