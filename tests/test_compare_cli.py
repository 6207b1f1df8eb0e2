"""``labkit compare`` on folders as users leave them (a set run twice, a grid over components), and what
``labkit compare`` and ``labkit runs`` print in a 100-column terminal.

Result folders are made as labkit makes them (RunFolder, metrics.json, a succeeded status) without a real
ICA fit: their recording is not there, so the ground-truth columns are empty and only fit times compare.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit import IcaParams
from labkit.cli.main import main
from labkit.cli.runs import fit_columns
from labkit.results.folder import RunFolder
from labkit.results.layout import ICA_FILE, METRICS_FILE

HOST = socket.gethostname()
_clock = itertools.count()


def _ran(base: Path, sweep_pid: int | None, fit: float, _metrics: dict | None = None, **changes: object) -> str:
    """One succeeded run of a set, as a ``labkit sweep`` process ``sweep_pid`` leaves it; returns its run id."""
    params = IcaParams(**{"base_dir": str(base), "raw_file_path": "sub-01_raw.fif", "n_components": 20,
                          "crop_tmax": 20.0, **changes})
    folder = RunFolder.create(params)
    if sweep_pid is not None:
        folder.set_status("queued", runner_pid=sweep_pid)  # what the sweep's pool records for each run
    metrics = {"method": params.method, "fit_time_s": fit, "eog_suspects": [], "ecg_suspects": []}
    metrics.update(_metrics or {})
    folder.file(METRICS_FILE).write_text(json.dumps(metrics))
    folder.file(ICA_FILE).write_bytes(b"")
    folder.succeed()
    folder.set_status("succeeded", finished=f"2026-01-01T10:00:{next(_clock) % 60:02d}+00:00")
    return folder.run_id


def _sweep(base: Path, pid: int, values: dict[str, list[float]], **changes: object) -> None:
    """A sweep over methods x seeds 0..n-1: method m's i-th fit time is values[m][i]."""
    for method, fits in values.items():
        for seed, fit in enumerate(fits):
            _ran(base, pid, fit, method=method, random_state=seed, **changes)


FIRST = {"picard": [1.0, 2.0, 3.0, 4.0, 5.0], "fastica": [2.0, 3.5, 4.0, 6.0, 7.5]}
AGAIN = {"picard": [1.5, 2.5, 2.0, 4.5, 6.0], "fastica": [3.0, 3.0, 5.0, 7.0, 8.0]}


class _Said:
    """What a command printed: its exit code, its lines, and its words with the summary's wrapping undone."""

    def __init__(self, result) -> None:
        self.exit_code, self.output = result.exit_code, result.output.replace("\n  ", " ")
        self.lines = result.output.splitlines()


def _compare(base: Path, *args: str, columns: int = 100) -> _Said:
    return _Said(CliRunner().invoke(main, ["compare", "--base-dir", str(base), "--metric", "fit_time_s", *args],
                                    env={"COLUMNS": str(columns)}))


@pytest.fixture
def forced(tmp_path: Path) -> Path:
    """A sweep, then the same sweep again with --force: every set ran twice, by two sweep processes."""
    _sweep(tmp_path, 1111, FIRST)
    _sweep(tmp_path, 2222, AGAIN)
    return tmp_path


def test_a_set_run_twice_is_refused_with_the_commands_that_narrow_it(forced):
    out = _compare(forced)
    assert out.exit_code == 2, out.output
    message = out.output.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert "10 block(s) hold more than one succeeded run of one method" in message
    assert "holds 2 runs of method=" in message and "the same set ran more than once" in message
    command = f"labkit compare --base-dir {forced} --metric fit_time_s"
    assert f"Keep one sweep's runs: {command} --sweep local-{HOST}-2222" in message
    assert f"keep the newest run of each: {command} --latest" in message
    assert f"average them: {command} --average-duplicates" in message


def test_each_way_out_compares_what_it_says(forced):
    newest = _compare(forced, "--sweep", f"local-{HOST}-2222")
    assert newest.exit_code == 0, newest.output
    assert "Medians: fastica 5, picard 2.5" in newest.output  # AGAIN's medians
    first = _compare(forced, "--sweep", f"local-{HOST}-1111")
    assert first.exit_code == 0 and "Medians: fastica 4, picard 3" in first.output  # FIRST's
    latest = _compare(forced, "--latest")
    assert latest.exit_code == 0, latest.output
    assert "Medians: fastica 5, picard 2.5" in latest.output and "10 older run(s)" in latest.output
    assert f"The runs come from 2 sweeps (local-{HOST}-1111: 10 runs, local-{HOST}-2222: 10 runs)" in latest.output
    assert "sweeps" not in newest.output
    averaged = _compare(forced, "--average-duplicates")
    assert averaged.exit_code == 0, averaged.output
    means = {m: statistics.median((a + b) / 2 for a, b in zip(FIRST[m], AGAIN[m], strict=True)) for m in FIRST}
    assert f"Medians: fastica {means['fastica']:.4g}, picard {means['picard']:.4g}" in averaged.output
    assert "20 runs of a repeated set in 10 block(s) averaged" in averaged.output
    both = _compare(forced, "--latest", "--average-duplicates")
    assert both.exit_code == 2 and "either --latest or --average-duplicates" in both.output


def test_runs_of_different_component_counts_are_not_pooled(tmp_path):
    _sweep(tmp_path, 1, FIRST, n_components=15)
    _sweep(tmp_path, 2, FIRST, n_components=20)
    _sweep(tmp_path, 2, {"picard": FIRST["picard"][:2]}, n_components=30)
    for extra in ([], ["--unpaired"]):
        out = _compare(tmp_path, *extra)
        assert out.exit_code == 2, out.output
        assert "the runs differ in parameters besides 'method'" in out.output
        assert "n_components = 15 (10 runs), 20 (10 runs), 30 (2 runs)" in out.output
        assert f"labkit compare --base-dir {tmp_path} --metric fit_time_s {' '.join(extra)}".strip() in out.output
        assert "Compare one set of them at a time: labkit compare" in out.output
        assert "--where n_components=15" in out.output
    one = _compare(tmp_path, "--where", "n_components=20")
    assert one.exit_code == 0, one.output
    assert "fit_time_s: 5 complete blocks, 2 groups" in one.output
    paired = _compare(tmp_path, "--blocks", "raw_file_path,random_state,n_components")
    assert paired.exit_code == 0, paired.output
    assert "a block is one (raw_file_path, random_state, n_components)" in paired.output
    assert "fit_time_s: 10 complete blocks (2 incomplete block(s) dropped)" in paired.output


def test_where_reads_values_as_the_column_type_and_names_what_is_allowed(tmp_path):
    _sweep(tmp_path, 1, FIRST)
    _sweep(tmp_path, 1, {"infomax": FIRST["picard"]})
    two = _compare(tmp_path, "--where", "n_components=20.0", "--where", "crop_tmax=20", "--where",
                   "extended=none", "--where", "method=picard", "--by", "random_state", "--unpaired")
    assert two.exit_code == 0, two.output
    assert "5 groups" in two.output and "fastica" not in two.output
    cases = {
        "nope=1": "got 'nope=1'; allowed: COLUMN=VALUE with COLUMN a column of the runs table: ",
        "n_components=many": "a number: n_components holds numbers, e.g. n_components=20",
        "n_components=99": "a value of n_components among these runs: 20",
        "method": "got 'method'; allowed: COLUMN=VALUE, e.g. method=picard",
    }
    for where, words in cases.items():
        out = _compare(tmp_path, "--where", where)
        assert out.exit_code == 2, out.output
        assert "Invalid value for the '--where' parameter" in out.output and words in out.output
        assert out.output.count("\n") == 1
    unknown = _compare(tmp_path, "--where", "nope=1").output
    assert "n_components" in unknown and "sweep_id" in unknown and "fit_time_s" in unknown
    sweep = _compare(tmp_path, "--sweep", "sweep-x")
    assert sweep.exit_code == 2 and f"got 'sweep-x'; allowed: a sweep of these runs: local-{HOST}-1" in sweep.output
    blocks = _compare(tmp_path, "--blocks", "raw_file_path,seed")
    assert blocks.exit_code == 2 and "'--blocks' parameter: got 'raw_file_path,seed'" in blocks.output


def test_runs_made_alone_have_no_sweep(tmp_path):
    _ran(tmp_path, None, 1.0, method="picard")
    out = _compare(tmp_path, "--sweep", "s")
    assert out.exit_code == 2 and "none of these runs ran in a sweep" in out.output


def test_a_method_only_option_set_per_method_is_said_not_refused(tmp_path):
    _sweep(tmp_path, 1, {"picard": FIRST["picard"]})
    _sweep(tmp_path, 1, {"infomax": FIRST["fastica"]}, extended=True)
    out = _compare(tmp_path)
    assert out.exit_code == 0, out.output
    assert "extended goes with the method: infomax true, picard none." in out.output
    _ran(tmp_path, 1, 9.0, method="infomax", random_state=7, extended=False)  # now it varies within infomax
    mixed = _compare(tmp_path)
    assert mixed.exit_code == 2 and "extended = false (1 runs), none (5 runs), true (5 runs)" in mixed.output


def test_compare_output_fits_100_columns_and_wide_shows_every_column(tmp_path):
    for seed in range(6):
        for method, fit in (("picard", 1.0), ("fastica", 2.0), ("infomax", 3.0)):
            _ran(tmp_path, 1, fit + seed * 0.1 + (0.05 * seed if method == "infomax" else 0), method=method,
                 random_state=seed, raw_file_path="a_rather_long_recording_name_for_subject_01_session_02_raw.fif")
    out = _compare(tmp_path)
    assert out.exit_code == 0, out.output
    lines = out.lines
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert any(line.startswith("fit_time_s  Friedman") for line in lines)
    assert any(re.match(r"fit_time_s\s+fastica\s+infomax\s", line) for line in lines)  # the pairs table
    assert "Kendall's W = 1.00 (large)" in out.output
    narrow = _compare(tmp_path, columns=70)
    assert narrow.exit_code == 0 and max(map(len, narrow.lines)) <= 70
    wide = _compare(tmp_path, "--wide")
    assert wide.exit_code == 0 and "effect_measure" in wide.output and "median_difference" in wide.output


def test_runs_cuts_cells_with_a_marker_never_silently(tmp_path):
    name = "sub-01_ses-02_task-a-very-long-task-name-indeed_acq-highdensity_run-01_raw.fif"
    many = {"eog_suspects": list(range(0, 30, 2)), "ecg_suspects": [12]}
    run_id = _ran(tmp_path, None, 1.25, method="picard", raw_file_path=name, _metrics=many)
    _ran(tmp_path, None, 2.0, method="fastica", _metrics={"ecg_suspects": [12]})
    out = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path)], env={"COLUMNS": "100"})
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    long_row = next(line for line in lines if line.startswith(run_id))
    assert long_row.endswith("...") and " sub-01... " in long_row  # both cut cells say so
    short_row = next(line for line in lines if "fastica" in line)
    assert short_row.endswith("ecg:12")
    assert not re.search(r"ecg:1(?!2)", out.output)  # never "ecg:1" for ecg:12


def test_the_runs_table_names_the_sweep_each_run_ran_in(tmp_path):
    alone = _ran(tmp_path, None, 1.0, method="picard")
    swept = _ran(tmp_path, 4242, 1.0, method="fastica")
    records = json.loads(CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path), "--json"]).output)
    assert {r["run_id"]: r["sweep_id"] for r in records} == {alone: None, swept: f"local-{HOST}-4242"}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), max_size=40),
                         min_size=4, max_size=4), max_size=6),
       st.integers(32, 120))  # the kept run id (14) and three cells of at least 4 characters fit in 32
def test_fitted_columns_fit_and_mark_every_cut_cell(rows, width):
    head = ("RUN ID", "A", "B", "C")
    rows = [("run-" + "x" * 10, *r[1:]) for r in rows]
    lines = fit_columns(head, rows, width, first=(2,), keep=(0,))
    assert len(lines) == len(rows) + 1 and all(len(line) <= width for line in lines)
    for line, row in zip(lines[1:], rows, strict=True):
        assert (line + " ").startswith(row[0] + " ")  # the kept column is whole
        for cell in row[1:]:
            shown = re.split(r"\s{2,}", line)
            assert cell.strip() in line or any(c.endswith("...") and cell.startswith(c[:-3]) for c in shown)
