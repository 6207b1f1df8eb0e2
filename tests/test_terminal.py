"""labkit in a terminal (a pseudo-terminal, through pexpect): progress while a run works, a sweep's table that
fits 100 columns, and Ctrl-C / SIGTERM that stop a run or a sweep, record its runs cancelled and exit 130."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pexpect
import pytest
from test_sweeps import _succeeded as _complete

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.errors import ExitCode
from labkit.results.folder import RunFolder
from labkit.results.reading import list_runs, load_run
from labkit.study.sweeps import plan

#: the terminal's width in these tests: every line labkit prints must fit it
WIDTH = 100
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """labkit running in a pseudo-terminal ``WIDTH`` columns wide; ``text`` is everything it printed so far."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "COLUMNS": str(WIDTH), "MPLBACKEND": "Agg"}
        self.child = pexpect.spawn(sys.executable, ["-m", "labkit", *args], env=env, dimensions=(40, WIDTH),
                                   encoding="utf-8", codec_errors="replace", timeout=180)
        self.text = ""

    def read_until(self, predicate, timeout: float = 180.0) -> None:
        """Read what labkit prints until ``predicate(text)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.text):
            assert self.child.isalive() and time.monotonic() < deadline, self.text
            try:
                self.text += self.child.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                pass

    def finish(self, timeout: float) -> float:
        """Read to labkit's exit (at most ``timeout`` s, else it is killed and the test fails); how long it took."""
        t0 = time.monotonic()
        while True:
            try:
                self.text += self.child.read_nonblocking(65536, timeout=max(timeout - (time.monotonic() - t0), 0.1))
            except pexpect.EOF:
                break
            except pexpect.TIMEOUT:
                self.child.kill(signal.SIGKILL)
                raise AssertionError(f"still running {timeout} s on:\n{self.text}") from None
        self.child.close()
        return time.monotonic() - t0

    def lines(self) -> list[str]:
        """What the terminal showed line by line: a carriage return starts the line over (a bar redrawing)."""
        text = self.text.replace("\r\n", "\n").replace("^C", "")  # a pty ends lines with both; ^C is its echo
        return [ANSI.sub("", part) for line in text.split("\n") for part in line.split("\r")]


def _tiny(base_dir: Path, **kw) -> IcaParams:
    return IcaParams(**{"base_dir": str(base_dir), "raw_file_path": DEMO_FILENAME, "n_components": 5,
                        "crop_tmax": 10.0, **kw})


def test_run_says_where_it_goes_shows_its_steps_and_ctrl_c_cancels_it(demo_dir):
    # a long fit (fastica, many iterations, two minutes of data): the run surely still works when it is stopped
    term = Terminal("run", "--base-dir", str(demo_dir), "--raw-file-path", DEMO_FILENAME, "--method", "fastica",
                    "--max-iter", "100000", "--crop-tmax", "120", "--run-id", "tty-1")
    folder = RunFolder(demo_dir, "tty-1")
    term.read_until(lambda text: "run tty-1: fit |" in text)  # the bar shows the step the kernel is in
    assert folder.path.name.endswith(".partial")  # ... while the run works, not at its end
    assert f"run tty-1: started, folder {demo_dir / folder.name}\r\n" in term.text
    term.child.sendintr()  # Ctrl-C, as the terminal sends it
    took = term.finish(timeout=10)
    assert term.child.exitstatus == ExitCode.CANCELLED, term.text
    assert took < 10 and "Traceback" not in term.text
    assert "labkit: run cancelled: received SIGINT" in term.text
    found = load_run(folder.path)
    assert found.state == "cancelled" and "SIGINT" in found.error and found.path.name.endswith(".failed")
    assert not [p for p in demo_dir.iterdir() if p.name.endswith(".partial")]


def _sweep_file(tmp_path: Path, demo_dir: Path, seeds: int) -> tuple[Path, list[IcaParams]]:
    sets = [_tiny(demo_dir, random_state=s) for s in range(seeds)]
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps([p.to_dict() for p in sets]))
    return f, sets


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_sweep_cancels_its_running_sets_says_how_to_resume_and_exits_130(demo_dir, tmp_path, stop):
    f, sets = _sweep_file(tmp_path, demo_dir, seeds=5)
    term = Terminal("sweep", str(f), "--workers", "2")
    # stopped while two sets run (their kernels are up): neither may end failed or partial
    term.read_until(lambda text: sum(r.state == "running" for r in list_runs(demo_dir)) == 2)
    if stop == "ctrl-c":
        term.child.sendintr()
    else:
        term.child.kill(signal.SIGTERM)
    took = term.finish(timeout=10)
    assert term.child.exitstatus == ExitCode.CANCELLED, term.text
    assert took < 10 and "Traceback" not in term.text and "Kernel died" not in term.text
    runs = list_runs(demo_dir)
    assert not [p for p in demo_dir.iterdir() if p.name.endswith(".partial")]
    assert {r.state for r in runs} <= {"succeeded", "cancelled"} and sum(r.state == "cancelled" for r in runs) >= 2
    lines = [line.rstrip() for line in term.lines()]
    cancelled = sum(r.state == "cancelled" for r in runs)
    done = sum(r.state == "succeeded" for r in runs)
    assert f"interrupted: {done} ran, 0 reused, 0 failed, {cancelled} cancelled, {5 - len(runs)} not started" in lines
    resume = "\n".join(lines[lines.index(next(line for line in lines if line.startswith("resume with: "))):])
    assert resume.strip().replace(" \\\n    ", " ") == f"resume with: labkit sweep {f} --workers 2"  # a shell continues it
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    for run in runs:  # each is a row of the table, the cancelled ones with why
        assert any(line.startswith(run.run_id) and f" {run.state} " in line for line in lines)
    # resuming reuses what finished and runs the cancelled and the never started sets again
    decisions = plan(sets)
    assert sum(d.action == "reuse" for d in decisions) == done
    assert all("was cancelled" in d.reason for d in decisions if d.action == "run" and d.reason != "no result yet")


def test_a_sweep_table_fits_100_columns_keeps_why_and_counts_and_wide_shows_every_column(demo_dir, tmp_path):
    deep = demo_dir / "a-rather-long-folder-name-for-the-recordings" / "sub-01" / "eeg"
    deep.mkdir(parents=True)
    (deep / "sub-01_task-rest_acq-long_run-01_raw.fif").symlink_to(demo_dir / DEMO_FILENAME)
    recording = str((deep / "sub-01_task-rest_acq-long_run-01_raw.fif").relative_to(demo_dir))
    sets = [_tiny(demo_dir, raw_file_path=r, method=m) for r in (recording, DEMO_FILENAME) for m in ("picard", "fastica")]
    kept = [_complete(p) for p in sets]  # every set is done: the sweep reuses them and runs nothing
    refused = _tiny(demo_dir, filter_fmax=200.0, random_state=1)  # refused before any work: a failed row
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps([p.to_dict() for p in [*sets, refused]]))
    term = Terminal("sweep", str(f))
    term.finish(timeout=120)
    assert term.child.exitstatus == ExitCode.RUN_FAILED, term.text
    lines = [line.rstrip() for line in term.lines()]
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    assert lines[-2] == "0 ran, 4 reused, 1 failed, 0 cancelled", lines
    head = next(line for line in lines if line.startswith("run_id")).split()
    assert head[:3] == ["run_id", "state", "action"] and head[-1] == "reason"
    note = next((line for line in lines if line.startswith("(left out to fit 100 columns: ")), "")
    for name, short in [("raw_file_path", "recording"), ("method", "method"), ("filter_fmax", "fmax"),
                        ("random_state", "seed")]:  # each varying parameter: a column, or said to be left out
        assert short in head or name in note, (head, note)
    assert note.endswith("; --wide shows every column)")
    for folder, params in zip(kept, sets, strict=True):  # why each was reused, cut with a marker if it does not fit
        row = next(line for line in lines if line.startswith(folder.run_id))
        assert " reused " in row and "complete result" in row and row.endswith(("...", "provenance")), row
        if "recording" in head and params.raw_file_path == recording:
            assert re.search(r" \.\.\.\S*run-01_raw\.fif ", row), row  # a long path keeps its end: the file's name
    why = next(line for line in lines if line.startswith("    why: "))
    assert "filter_fmax" in why
    wide = Terminal("sweep", str(f), "--wide")
    wide.finish(timeout=120)
    shown = [line.rstrip() for line in wide.lines()]
    assert any(len(line) > WIDTH and "explained_variance" in line for line in shown)
    assert any(recording in line for line in shown)  # nothing cut


def test_the_bar_knows_the_analysis_steps():
    from labkit.analysis.ica import STEPS
    from labkit.cli.progress import STEPS as SHOWN

    assert SHOWN == STEPS


def test_ctrl_c_on_logs_follow_stops_following_and_exits_130_leaving_the_run_alone(demo_dir):
    folder = RunFolder.create(_tiny(demo_dir), "followed")
    folder.start()  # running, owned by this test's process: its log is followed until it ends
    (folder.path / "run.log").write_text("step load\n")
    term = Terminal("logs", "-f", "followed", "--base-dir", str(demo_dir))
    term.read_until(lambda text: "step load" in text)
    term.child.kill(signal.SIGINT)
    assert term.finish(timeout=10) < 10
    assert term.child.exitstatus == ExitCode.CANCELLED, term.text
    assert "labkit: interrupted" in term.text and "Traceback" not in term.text
    assert load_run(folder.path).state == "running"  # following is not cancelling
    folder.stop_heartbeat()
