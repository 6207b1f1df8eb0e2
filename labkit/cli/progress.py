"""What the terminal shows while runs go on: a run's steps as they happen, a sweep's summary and table.

A run's step is read from its folder's ``status.json`` (the runner records each step there), so the
watcher needs nothing from the runner but the folder's name.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from typing import Any, Iterator

import click

#: the sweep table's columns by default (``--wide``: every column)
NARROW = ("state", "raw_file_path", "method", "random_state", "action")


@contextlib.contextmanager
def watching(base_dir: str, run_id: str, *, interval: float = 0.2) -> Iterator[None]:
    """Show the run's steps on stderr while the block runs: a tqdm bar on a terminal, plain lines when piped."""
    from labkit.results.folder import RunFolder

    folder = RunFolder(base_dir, run_id)
    stop = threading.Event()
    tty = sys.stderr.isatty()
    bar = None
    if tty:
        from tqdm import tqdm

        bar = tqdm(desc=f"run {run_id}", bar_format="{desc} [{elapsed}]", file=sys.stderr, leave=False)

    def show(step: str) -> None:
        if bar is not None:
            bar.set_description_str(f"run {run_id}: {step}")
        else:
            click.echo(f"run {run_id}: step {step}", err=True)

    def poll() -> None:
        last = None
        while not stop.wait(interval):
            try:
                step = folder.status.get("step")
            except OSError:  # the folder is being renamed
                continue
            if step and step != last:
                last = step
                show(str(step))
            elif bar is not None:
                bar.refresh()

    thread = threading.Thread(target=poll, name="labkit-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if bar is not None:
            bar.close()


def interrupts_as_keyboard() -> None:
    """SIGTERM ends a sweep as Ctrl-C does: stop starting runs, cancel the running ones."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)


def counts(frame: Any) -> str:
    """``N ran, N reused, N failed, N cancelled`` for a sweep's table."""
    if not len(frame):
        return "0 ran, 0 reused, 0 failed, 0 cancelled"
    state, action = frame["state"], frame["action"]
    ran = int(((action == "ran") & (state == "succeeded")).sum())
    return (f"{ran} ran, {int((action == 'reused').sum())} reused, {int((state == 'failed').sum())} failed, "
            f"{int((state == 'cancelled').sum())} cancelled")


def table(frame: Any, *, wide: bool = False) -> str:
    """The sweep's table: every column with ``wide``, else the few that fit a 100-column terminal."""
    if not len(frame):
        return "(no sets)"
    if wide:
        return frame.drop(columns=[c for c in ("path", "base_dir") if c in frame]).to_string()
    shown = frame[[c for c in NARROW if c in frame]].rename(columns={"raw_file_path": "recording",
                                                                     "random_state": "seed"})
    if "recording" in shown:
        shown = shown.assign(recording=[_clip(str(v), 30) for v in shown["recording"]])
    shown.index = [_clip(str(v), 40) for v in shown.index]
    shown.index.name = "run_id"
    return shown.to_string()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def resume_command() -> str:
    """The command that resumes this sweep: the same one (a rerun skips what finished)."""
    return " ".join(shlex.quote(a) for a in ["labkit", *sys.argv[1:]])
