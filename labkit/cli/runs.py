"""``labkit runs``: the result folders under a base directory, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labkit.params import default_base_dir, existing_directory
from labkit.results.layout import FOLDER_PREFIX


@click.command()
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .")
@click.option("--wide", is_flag=True, help="every parameter and metric (a wide table)")
@click.option("--json", "as_json", is_flag=True, help="every column, as JSON records")
@click.option("--csv", "as_csv", is_flag=True, help="every column, as CSV")
def runs(base_dir: str, wide: bool, as_json: bool, as_csv: bool) -> None:
    """List the result folders under base-dir: outcome, recording, method, fit time, suspects, why."""
    from labkit.results.reading import list_runs

    found = list_runs(existing_directory(base_dir))
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


#: the compact table's width: it fits a 100-column terminal
RUNS_WIDTH = 100


def runs_lines(found: list[Any]) -> str:
    """One line per run, at most :data:`RUNS_WIDTH` characters (the recording's name is shortened); why a
    run failed or what it warned about follows on an indented line."""
    head = ("RUN ID", "OUTCOME", "RECORDING", "METHOD", "COMP", "FIT S", "SUSPECTS")
    cells = [_run_cells(r) for r in found]
    rows = [head] + [c[:-1] for c in cells]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    room = RUNS_WIDTH - (sum(widths) - widths[2] + 2 * (len(head) - 1))
    widths[2] = max(min(widths[2], room), 9)
    lines = []
    for row, note in zip(rows, [""] + [c[-1] for c in cells], strict=True):
        lines.append("  ".join(_cut(c, w).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if note:
            lines.append(_cut("    " + note, RUNS_WIDTH))
    return "\n".join(line[:RUNS_WIDTH] for line in lines)


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


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."
