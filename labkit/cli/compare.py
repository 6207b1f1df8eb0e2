"""``labkit compare``: statistics over the runs under a base directory.

The runs compared are chosen first (``--sweep``, ``--where``), then checked: runs whose
parameters differ in anything but the groups (``--by``) and the blocks (``--blocks``) are
refused, naming each parameter, its values and the ``--where`` that picks one set of them,
so 15, 20 and 30 components are never pooled silently. A set run twice (a block holding
one group twice) is refused by :mod:`labkit.study.compare` unless ``--latest`` or
``--average-duplicates`` says what to do; every refusal ends with the command to run.
"""

from __future__ import annotations

import numbers
import shlex
import shutil
from typing import Any, Sequence

import click

from labkit.cli.runs import fit_columns
from labkit.errors import ParameterError
from labkit.params import ANALYSIS_FIELDS, default_base_dir

#: the default --blocks: labkit.study.compare.BLOCKS (not imported here: it would load pandas for --help)
_BLOCKS = "raw_file_path,random_state"
#: options only some ICA methods take: one value per method is part of what the method is, not a mix
METHOD_OPTIONS = ("extended", "ortho")
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_MISSING = ("none", "null", "nan", "")


@click.command("compare")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .")
@click.option("--metric", "metrics", multiple=True,
              help="a table column to compare (repeatable) [default: fit time and the ground-truth quality columns]")
@click.option("--by", "--group", "by", default="method", show_default=True,
              help="the column whose values are the groups")
@click.option("--where", "where", multiple=True, metavar="COLUMN=VALUE",
              help="only runs whose COLUMN has VALUE, compared as the column's type (repeatable, all must hold; "
                   "e.g. --where method=picard --where n_components=20; VALUE none: no value)")
@click.option("--sweep", "sweep_id", default=None, metavar="ID",
              help="only the runs of this sweep (the sweep_id column of labkit runs --wide)")
@click.option("--blocks", default=_BLOCKS, show_default=True, metavar="COLUMN,...",
              help="the columns whose values pair runs, comma-separated: runs of one block saw the same data")
@click.option("--unpaired", is_flag=True, help="treat the runs as unpaired instead of pairing them by --blocks")
@click.option("--latest", is_flag=True,
              help="a set that ran more than once (a block holding one group twice): compare its newest run")
@click.option("--average-duplicates", is_flag=True,
              help="a set that ran more than once: compare the mean of its runs' values")
@click.option("--posthoc", type=click.Choice(["nemenyi", "conover"]), default="nemenyi", show_default=True)
@click.option("--wide", is_flag=True, help="every column of the result tables (they fit the terminal by default)")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="also write the run table as CSV")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False), default=None,
              help="write box plots, critical-difference diagrams and the topomap grid here as PNG")
@click.pass_context
def compare_runs(ctx: click.Context, base_dir: str, metrics: tuple[str, ...], by: str, where: tuple[str, ...],
                 sweep_id: str | None, blocks: str, unpaired: bool, latest: bool, average_duplicates: bool,
                 posthoc: str, wide: bool, csv_path: str | None, figures_dir: str | None) -> None:
    """Compare the runs under base-dir: rank tests chosen by the design, effect sizes, Holm (labkit.study.compare).

    Runs are paired by --blocks (a recording and a seed). Runs whose other parameters
    differ are refused, with the --where that compares one set of them; a set that ran
    twice is refused unless --latest or --average-duplicates is given. --sweep keeps one
    sweep's runs. Output fits the terminal (COLUMNS, at most 100); --wide shows every column.
    """
    from labkit.study import compare, figures, quality

    if latest and average_duplicates:
        raise ParameterError("--latest", True, "either --latest or --average-duplicates, not both")
    block_cols = tuple(b.strip() for b in blocks.split(",") if b.strip())
    frame = quality.comparison_table(base_dir)
    if frame.empty:
        raise compare.ComparisonError(f"no result folders under {base_dir}")
    if csv_path:
        frame.to_csv(csv_path)
    for b in block_cols:
        if b not in frame.columns:
            raise ParameterError("--blocks", blocks, "comma-separated columns of the runs table: "
                                 + ", ".join(map(str, frame.columns)))
    frame = select(frame, where, sweep_id)
    command = _command(ctx)
    try:
        notes = check_parameters(frame, by, () if unpaired else block_cols)
        chosen = list(metrics) or [m for m in compare.DEFAULT_METRICS if m in frame and frame[m].notna().any()]
        result = compare.compare(frame, chosen, by, blocks=None if unpaired else block_cols, posthoc=posthoc,
                                 duplicates="latest" if latest else "average" if average_duplicates else "refuse")
    except compare.AmbiguousRuns as err:
        raise err.told_as(command) from None
    result.notes[:0] = notes + _sweeps_note(frame)
    width = max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
    click.echo(result.summary(width))
    click.echo("\n" + "\n".join(tests_lines(result, width, wide)))
    if len(result.posthoc):
        click.echo("\n" + "\n".join(posthoc_lines(result, width, wide)))
    for path in figures.save_figures(frame, result, figures_dir) if figures_dir else []:
        click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- choosing the runs


def select(frame: Any, where: Sequence[str] = (), sweep_id: str | None = None) -> Any:
    """The runs of ``sweep_id`` whose columns hold the ``COLUMN=VALUE`` of every ``where``.

    A value is read as its column's type (a number, true/false, else text; ``none`` is
    no value). An unknown column, a value of the wrong type, or a condition no run meets
    raises :class:`ParameterError` naming what the runs do hold.
    """
    if sweep_id is not None:
        known = sorted(map(str, frame["sweep_id"].dropna().unique())) if "sweep_id" in frame else []
        if sweep_id not in known:
            raise ParameterError("--sweep", sweep_id, ("a sweep of these runs: " + ", ".join(known)) if known
                                 else "a sweep id, but none of these runs ran in a sweep")
        frame = frame[frame["sweep_id"] == sweep_id]
    for text in where:
        column, sep, value = text.partition("=")
        column = column.strip()
        if not sep or not column:
            raise ParameterError("--where", text, "COLUMN=VALUE, e.g. method=picard")
        if column not in frame.columns:
            raise ParameterError("--where", text, "COLUMN=VALUE with COLUMN a column of the runs table: "
                                 + ", ".join(map(str, frame.columns)))
        keep = _matches(frame[column], value.strip(), text)
        if not keep.any():
            held = sorted({_text(v) for v in frame[column]})
            raise ParameterError("--where", text, f"a value of {column} among these runs: {', '.join(held)}")
        frame = frame[keep.to_numpy()]
    return frame


def _matches(series: Any, value: str, text: str) -> Any:
    import pandas as pd

    if value.lower() in _MISSING:
        return series.isna()
    present = [v for v in series if not _missing(v)]
    column = series.name
    if present and all(isinstance(v, (bool, _np_bool())) for v in present):
        if value.lower() not in _BOOLS:
            raise ParameterError("--where", text, f"true or false: {column} holds true or false")
        want = _BOOLS[value.lower()]
        return series.map(lambda v: not _missing(v) and bool(v) == want)
    if present and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, _np_bool())) for v in present):
        try:
            number = float(value)
        except ValueError:
            raise ParameterError("--where", text, f"a number: {column} holds numbers, e.g. "
                                 f"{column}={_text(present[0])}") from None
        return pd.to_numeric(series, errors="coerce") == number
    return series.map(lambda v: not _missing(v) and _text(v) == value)


def _np_bool() -> type:
    import numpy as np

    return np.bool_


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _text(value: Any) -> str:
    """A cell as --where reads it back: ``none``, ``true``/``false``, ``20`` for 20.0, else its text."""
    if _missing(value):
        return "none"
    if isinstance(value, (bool, _np_bool())):
        return "true" if value else "false"
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return str(int(value))
    return str(value)


def check_parameters(frame: Any, by: str, blocks: Sequence[str]) -> list[str]:
    """Refuse succeeded runs whose parameters differ other than in ``by`` and the blocks (a recording and a
    seed even when unpaired); a method-only option with one value per method is a note instead."""
    from labkit.study.compare import BLOCKS, AmbiguousRuns

    ok = frame[frame["state"] == "succeeded"] if "state" in frame.columns else frame
    free = {by, *(blocks or BLOCKS)}
    texts = {c: ok[c].map(_text) for c in ANALYSIS_FIELDS if c in ok.columns and c not in free}
    differ = [c for c, t in texts.items() if t.nunique() > 1]
    notes = []
    for c in [c for c in differ if c in METHOD_OPTIONS and by == "method" and by in ok.columns]:
        per_group = texts[c].groupby(ok[by].to_numpy())
        if (per_group.nunique() == 1).all():
            differ.remove(c)
            notes.append(f"{c} goes with the method: " + ", ".join(f"{g} {v}" for g, v in per_group.first().items())
                         + ".")
    if not differ:
        return notes
    import pandas as pd

    values = "; ".join(f"{c} = " + ", ".join(f"{v} ({n} runs)" for v, n in sorted(texts[c].value_counts().items()))
                       for c in differ)
    common = pd.DataFrame({c: texts[c] for c in differ}).value_counts().index[0]
    common = common if isinstance(common, tuple) else (common,)
    pick = [w for c, v in zip(differ, common, strict=True) for w in ("--where", f"{c}={v}")]
    ways: list[tuple[str, list[str]]] = [("compare one set of them at a time", pick)]
    if blocks:
        ways.append(("pair runs across them", ["--blocks", ",".join([*blocks, *differ])]))
    besides = f"{by!r} and the blocks ({', '.join(blocks or BLOCKS)})"
    raise AmbiguousRuns(f"the runs differ in parameters besides {besides}: {values}", "filter the table", ways)


def _sweeps_note(frame: Any) -> list[str]:
    """Say so when the succeeded runs compared come from more than one sweep (``--sweep`` compares one)."""
    ok = frame[frame["state"] == "succeeded"] if "state" in frame.columns else frame
    counts = ok["sweep_id"].value_counts().sort_index() if "sweep_id" in ok.columns else []
    if len(counts) < 2:
        return []
    return [f"The runs come from {len(counts)} sweeps (" + ", ".join(f"{s}: {n} runs" for s, n in counts.items())
            + "); --sweep ID compares one."]


def _command(ctx: click.Context) -> str:
    """The command line as typed (options given on it), to which a refusal adds its way out."""
    from click.core import ParameterSource

    words = ["labkit", "compare"]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if p.is_flag:
            words += [p.opts[0]] if value else []
        else:
            words += [w for v in (value if p.multiple else [value]) for w in (p.opts[0], str(v))]
    return shlex.join(words)


# --------------------------------------------------------------------------- printing the results

_MEASURES = {"matched-pairs rank-biserial r": "r (paired)", "rank-biserial r": "r", "Kendall's W": "W",
             "epsilon squared": "eps^2"}


def tests_lines(result: Any, width: int, wide: bool = False) -> list[str]:
    """One line per metric: the test, n, p, Holm's p, the effect size and its magnitude (``wide``: every column)."""
    tests = result.tests.drop(columns=["design", "blocking"])
    if wide:
        return tests.to_string(index=False).splitlines()
    head = ("metric", "test", "n", "p", "p (Holm)", "effect", "size")
    rows = [(str(r["metric"]), str(r["test"]), str(r["n"]), _g(r["pvalue"]), _g(r["pvalue_holm"]),
             f"{_MEASURES.get(r['effect_measure'], r['effect_measure'])} = {_g(r['effect_size'], 2)}"
             if r["effect_measure"] else "-", str(r.get("magnitude") or r.get("note") or "-"))
            for r in tests.to_dict("records")]
    return fit_columns(head, rows, width, right=(2, 3, 4))


def posthoc_lines(result: Any, width: int, wide: bool = False) -> list[str]:
    """One line per metric and pair of groups: p, effect size, median difference, the higher group."""
    if wide:
        return result.posthoc.to_string(index=False).splitlines()
    head = ("metric", "group a", "group b", "p", "effect", "a - b", "higher")
    rows = [(str(r["metric"]), str(r["group_a"]), str(r["group_b"]), _g(r["pvalue"]), _g(r["effect_size"], 2),
             _g(r["median_difference"]), "-" if r["higher"] is None else str(r["higher"]))
            for r in result.posthoc.to_dict("records")]
    return fit_columns(head, rows, width, right=(3, 4, 5))


def _g(value: Any, digits: int = 3) -> str:
    return "-" if _missing(value) else f"{value:.{digits}g}" if digits == 3 else f"{value:.{digits}f}"
