"""The one listing of a user's runs that every face shows: here first, then the remote backend's, newest first.

The notebook form's History and jobs view and the JupyterLab extension's runs list ask this, so a run is
listed with the same state, recording and order wherever it is looked at.
"""

from __future__ import annotations

import logging

from labkit.errors import LabkitError
from labkit.runners.backend import Backend, Run, check_state

logger = logging.getLogger(__name__)


def _stored(known: set[str], remote: Backend | None = None) -> list[Run]:
    """The artifact store's runs not already listed (none without a store; an unreachable store is logged, and
    the runs here and on the cluster are still listed). Through the hub service when ``remote`` is it: the
    service reads the store for the user, whose server may hold no credentials."""
    from labkit.runners.cluster.submission import stored_runs

    try:
        if remote is not None and remote.name == "hub" and hasattr(remote, "stored"):
            return remote.stored(exclude=sorted(known))
        return stored_runs(exclude=known)
    except LabkitError as err:
        logger.warning("stored runs not listed: %s", err)
        return []


def list_runs(local: Backend, remote: Backend | None = None, *, state: str | None = None,
              sweep: str | None = None, recording: str | None = None, method: str | None = None,
              text: str = "") -> list[Run]:
    """My runs on ``local``, ``remote`` and in the artifact store, when one is configured (a run two of them know
    is told once: here before the cluster before the store), filtered, newest first.

    ``text`` matches the run id, recording, method, sweep id or state (any case)."""
    check_state(state)
    kwargs = {"state": state, "sweep": sweep or None, "recording": recording or None}
    found = local.runs(**kwargs)
    if remote is not None:
        known = {r.run_id for r in found}
        found += [r for r in remote.runs(**kwargs) if r.run_id not in known]
    found += [r for r in _stored({r.run_id for r in found}, remote) if (state is None or r.state == state)
              and (sweep is None or r.sweep_id == sweep)
              and (recording is None or recording in (r.recording, r.recording.rsplit("/", 1)[-1]))]
    text = (text or "").lower()
    found = [r for r in found if (method is None or r.method == method)
             and (not text or text in " ".join((r.run_id, r.recording, r.method, r.sweep_id, r.state)).lower())]
    found.sort(key=lambda r: (r.created, r.run_id), reverse=True)
    return found
