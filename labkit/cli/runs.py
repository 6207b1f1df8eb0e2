"""``labkit runs``: the result folders under a base directory, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from labkit.cli.options import cut
from labkit.params import default_base_dir, existing_directory
from labkit.results.layout import FOLDER_PREFIX


@click.command()
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .")
@click.option("--wide", is_flag=True, help="every parameter and metric (a wide table)")
@click.option("--json", "as_json", is_flag=True, help="every column, as JSON records")
@click.option("--csv", "as_csv", is_flag=True, help="every column, as CSV")
def runs(base_dir: str, wide: bool, as_json: bool, as_csv: bool) -> None:
    """List the result folders under base-dir: outcome, recording, method, fit time, suspects, why;
    then the runs in the artifact store (when the cluster settings configure one) not fetched home yet."""
    from labkit.results.reading import list_runs

    found = list_runs(existing_directory(base_dir))
    found += _stored(r.run_id for r in found)
    if not (wide or as_json or as_csv):
        click.echo(runs_lines(found) if found else f"no runs under {base_dir} (result folders are {FOLDER_PREFIX}*)")
        return
    from labkit.results.table import table

    frame = table(found)
    if as_json:
        click.echo(frame.reset_index().to_json(orient="records", indent=2) if found else "[]")
    elif as_csv:
        click.echo(frame.to_csv(), nl=False)
    else:
        click.echo(frame.to_string() if found else f"no runs under {base_dir}")


def _stored(here: Any) -> list[Any]:
    """The store's runs not under base-dir (none without a store); an unreachable store is said, not fatal.

    On a hub with the labkit service, the service reads the store for the user (whose server may hold no
    store credentials); elsewhere the cluster settings' store is read with this machine's credentials."""
    import os

    from labkit.errors import LabkitError
    from labkit.runners.hub import SERVICE_URL_ENV

    on_hub = bool(os.environ.get(SERVICE_URL_ENV) or os.environ.get("JUPYTERHUB_API_URL"))
    if not (on_hub or os.environ.get("LABKIT_CLUSTER_CONFIG") or os.environ.get("LABKIT_CLUSTER_STORE__KIND")):
        return []  # no cluster settings here: the settings (pydantic, 0.6 s of imports) are not even read
    from labkit.results.store import stored_results

    skip = set(here)
    try:
        from labkit.runners.hub import service_store

        store = service_store() if on_hub else None
        if store is not None:
            told = {r.run_id: (r.state, r.reason) for r in store.runs() if r.run_id not in skip}
            return stored_results(store, told)
        from labkit.runners.cluster.submission import configured_store

        store = configured_store()
        return [] if store is None else [r for r in stored_results(store) if r.run_id not in skip]
    except LabkitError as err:
        click.echo(f"labkit: the store's runs are not listed: {err}", err=True)
        return []


#: the compact table's width: it fits a 100-column terminal
RUNS_WIDTH = 100


def runs_lines(found: list[Any]) -> str:
    """One line per run, at most :data:`RUNS_WIDTH` characters; why a run failed or what it warned about
    follows on an indented line. A cell too long to fit (the recording's name first) ends in ``...``:
    nothing is cut without a mark, and the run id is never cut (``labkit logs`` needs it)."""
    head = ("RUN ID", "OUTCOME", "RECORDING", "METHOD", "COMP", "FIT S", "SUSPECTS")
    cells = [_run_cells(r) for r in found]
    table = fit_columns(head, [c[:-1] for c in cells], RUNS_WIDTH, first=(2,), keep=(0,))
    lines = [table[0]]
    for line, note in zip(table[1:], [c[-1] for c in cells], strict=True):
        lines.append(line)
        if note:
            lines.append(cut("    " + note, RUNS_WIDTH))
    return "\n".join(lines)


def fit_columns(head: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, first: Sequence[int] = (),
                keep: Sequence[int] = (), right: Sequence[int] = ()) -> list[str]:
    """Rows of text cells as aligned lines of at most ``width`` characters (when the kept columns and 4 characters
    of each other column fit).

    Columns narrow until the lines fit: those in ``first`` down to 9 characters, then the
    widest of the others not in ``keep``, down to 4; a narrowed cell ends in ``...``.
    Columns in ``right`` are right-aligned (numbers).
    """
    table = [tuple(head), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for i in first:
        less = min(max(excess, 0), max(widths[i] - 9, 0))
        widths[i], excess = widths[i] - less, excess - less
    while excess > 0:
        free = [i for i in range(len(widths)) if i not in keep and widths[i] > 4]
        if not free:
            break
        i = max(free, key=lambda j: widths[j])
        less = min(excess, widths[i] - 4, max(widths[i] - max(widths[j] for j in free if j != i) + 1, 1)
                  if len(free) > 1 else excess)
        widths[i], excess = widths[i] - less, excess - less
    return ["  ".join(cut(c, w).rjust(w) if i in right else cut(c, w).ljust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in table]


def _run_cells(found: Any) -> tuple[str, ...]:
    """The compact row's cells, and the note (error, or warnings) for the line below."""
    params, m = found.params, found.metrics
    suspects = " ".join(f"{k}:{','.join(map(str, m[k + '_suspects']))}" for k in ("eog", "ecg")
                        if m.get(k + "_suspects"))
    fit = m.get("fit_time_s")
    note = f"why: {found.error}" if found.error else "; ".join(found.warnings)
    return (found.run_id, found.outcome, Path(params.raw_file_path).name if params else "?",
            params.method if params else "?", str(params.n_components) if params else "?",
            f"{fit:.2f}" if isinstance(fit, (int, float)) else "-", suspects or "-", note.replace("\n", " "))

