"""What the terminal shows while runs go on, and how a sweep stops: a run's steps as they happen, a sweep's
summary and table, the signals that stop a sweep and the command that resumes it.

A run's step is read from its folder's ``status.json`` (the kernel records each step there), so the
watcher needs nothing from the runner but the folder. On a terminal the steps are a tqdm bar on stderr and
every log message or warning is written above it (never through it); piped, or with ``--json``, each step
is one plain line on stderr. stdout keeps the outcome only (scripts read its last line).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import click

from labkit.cli.options import cut

#: a run's steps in order (mirrors labkit.analysis.ica.STEPS without importing MNE; checked in tests)
STEPS = ("load", "filter", "fit", "score", "plot", "label", "report")
#: the sweep table's width without ``--wide``: it fits a 100-column terminal
TABLE_WIDTH = 100
#: the narrowest the reason column gets before parameter columns are left out
REASON_MIN = 16
#: short headers for the parameters in the narrow table (the CSV and ``--wide`` keep the full names)
SHORT = {"raw_file_path": "recording", "n_components": "comp", "crop_tmin": "tmin", "crop_tmax": "tmax",
         "channel_type": "ch_type", "filter_fmin": "fmin", "filter_fmax": "fmax", "random_state": "seed",
         "label_threshold": "label_thr"}
#: the recording column's width at most (its path is cut at the start: the file's name stays)
RECORDING_MAX = 22


class RunWatch:
    """Shows one run's progress on stderr: where it goes at once, then each step as the kernel records it."""

    def __init__(self, *, bar: bool, interval: float = 0.2) -> None:
        self.bar_wanted = bar
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None

    def started(self, folder: Any) -> None:
        """The runner made the folder: say where the run goes and follow its steps."""
        final = Path(folder.base_dir) / folder.name
        click.echo(f"run {folder.run_id}: started, folder {final}", err=True)
        if self.bar_wanted:
            from tqdm import tqdm

            self._bar = tqdm(total=len(STEPS), desc=f"run {folder.run_id}: start", file=sys.stderr, leave=False,
                             bar_format="{desc} |{bar}| {n}/{total} [{elapsed}]")
        self._thread = threading.Thread(target=self._follow, args=(folder,), name="labkit-progress", daemon=True)
        self._thread.start()

    def _follow(self, folder: Any) -> None:
        last = None
        while not self._stop.wait(self.interval):
            try:
                step = folder.status.get("step")
            except OSError:  # the folder is being renamed
                continue
            if step and step != last:
                last = step
                self._show(folder.run_id, str(step))
            elif self._bar is not None:
                self._bar.refresh()  # the elapsed time goes on

    def _show(self, run_id: str, step: str) -> None:
        if self._bar is None:
            click.echo(f"run {run_id}: {step}", err=True)
            return
        self._bar.set_description_str(f"run {run_id}: {step}", refresh=False)
        if step in STEPS:
            self._bar.n = STEPS.index(step)
        self._bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def above_bars() -> Iterator[None]:
    """Log messages (labkit's, MNE's, any library's) and warnings are written above a tqdm bar, not through it,
    wrapped to the terminal's width (``COLUMNS``) rather than cut."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with contextlib.suppress(ImportError):  # MNE gives its logger its own handler when imported: before the redirect
        import mne.utils  # noqa: F401 - the runs import it anyway (their checks read the recording's header)
    own = [lg for lg in logging.root.manager.loggerDict.values()  # a console handler of its own, records kept
           if isinstance(lg, logging.Logger) and not lg.propagate and _console(lg.handlers)]
    loggers = [logging.root, *own]
    before = {id(lg): list(lg.handlers) for lg in loggers}
    # MNE's handler writes to a wrapper of stdout that tqdm does not take for the console: it writes above too
    wrapped = [h for lg in [logging.root, *logging.root.manager.loggerDict.values()] if isinstance(lg, logging.Logger)
               for h in lg.handlers if isinstance(h, logging.StreamHandler) and type(h.stream).__name__ == "WrapStdOut"]
    streams = {h: h.setStream(_AboveBars(sys.stdout)) for h in wrapped}  # type: ignore[arg-type]
    shown = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        tqdm.write(_wrapped(warnings.formatwarning(message, category, filename, lineno, line)), file=sys.stderr)

    warnings.showwarning = show
    try:
        with logging_redirect_tqdm(loggers):
            for lg in loggers:  # the handlers tqdm put in: same format as before, wrapped
                for handler in [h for h in lg.handlers if h not in before[id(lg)]]:
                    handler.setFormatter(_Wrapping(handler.formatter))
            yield
    finally:
        warnings.showwarning = shown
        for handler, stream in streams.items():
            handler.setStream(stream)


class _AboveBars:
    """A stream for a log handler: each message written above the bars (tqdm.write), wrapped to the width."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def write(self, text: str) -> int:
        if text.strip():
            from tqdm import tqdm

            tqdm.write(_wrapped(text), file=self.file)
        return len(text)

    def flush(self) -> None:
        self.file.flush()


class _Wrapping(logging.Formatter):
    """A log line as its own formatter makes it, wrapped to the terminal's width."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return _wrapped(self.inner.format(record))


def _wrapped(text: str) -> str:
    import textwrap

    width = shutil.get_terminal_size((TABLE_WIDTH, 24)).columns
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False,
                                    break_long_words=True) if len(line) > width else line
                      for line in text.rstrip().splitlines())


def _console(handlers: Sequence[logging.Handler]) -> bool:
    return any(isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stdout, sys.stderr)
               for h in handlers)


@contextlib.contextmanager
def sweep_stops_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM both stop a sweep the same way: the first raises :class:`KeyboardInterrupt` (the
    sweep starts nothing more and cancels its running sets); any later one only says that is under way, so
    the cancelled runs are always recorded and nothing is left partial. The handlers before are restored after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return

    def again(signum: int, frame: Any) -> None:
        os.write(2, b"labkit: already stopping: the running sets are being recorded as cancelled\n")

    def first(signum: int, frame: Any) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, again)
        # the kernels of the running sets are killed on purpose: papermill's "Kernel died" would only alarm
        logging.getLogger("papermill").addFilter(_killed_on_purpose)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    before = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        logging.getLogger("papermill").removeFilter(_killed_on_purpose)


def _killed_on_purpose(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Kernel died")


def counts(frame: Any) -> str:
    """``N ran, N reused, N failed, N cancelled`` for a sweep's table."""
    if not len(frame):
        return "0 ran, 0 reused, 0 failed, 0 cancelled"
    state, action = frame["state"], frame["action"]
    reused = action == "reused"
    ran = int(((~reused) & (state == "succeeded")).sum())
    cancelled = int((state == "cancelled").sum())
    failed = int(((~reused) & ~state.isin(["succeeded", "cancelled"])).sum())
    return f"{ran} ran, {int(reused.sum())} reused, {failed} failed, {cancelled} cancelled"


def table(frame: Any, *, wide: bool = False, width: int = TABLE_WIDTH) -> str:
    """The sweep's table: every column with ``wide``; else one line per set of at most ``width`` characters
    (run id, state, action, the parameters that differ between the sets, the reason it ran or was reused),
    and why a set failed or was cancelled on an indented line below it. A cut value ends in ``...``."""
    if not len(frame):
        return "(no sets)"
    if wide:
        return str(frame.drop(columns=[c for c in ("path", "base_dir") if c in frame]).to_string())
    from labkit.params import FIELD_BY_NAME
    from labkit.results.table import varying

    differ = varying(frame, [c for c in FIELD_BY_NAME if c != "base_dir"]) or \
        [c for c in ("raw_file_path", "method") if c in frame]
    ids = [cut(str(v), 40) for v in frame.index]
    head = ["run_id", "state", "action"]
    fixed = [ids, _texts(frame, "state"), _texts(frame, "action")]
    shown, left_out = list(differ), []
    while True:
        columns = fixed + [_texts(frame, c) for c in shown]
        names = head + [SHORT.get(c, c) for c in shown]
        widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(names, columns, strict=True)]
        if "raw_file_path" in shown:
            k = len(fixed) + shown.index("raw_file_path")
            widths[k] = min(widths[k], RECORDING_MAX)
        room = width - sum(widths) - 2 * len(widths)
        if room >= REASON_MIN or not shown:
            break
        left_out.insert(0, shown.pop())
    # a reused result's reason names its run id, which is the row's own: said once
    reasons = [r.replace(f"complete result {i}:", "complete result:") for r, i in zip(_texts(frame, "reason"), ids,
                                                                                      strict=True)]
    widths.append(max(min(max(len("reason"), *(len(r) for r in reasons)), room), 6))
    columns.append(reasons)
    path_at = len(fixed) + shown.index("raw_file_path") if "raw_file_path" in shown else None
    lines = [_line([*names, "reason"], widths)]
    errors = _texts(frame, "error") if "error" in frame else ["-"] * len(frame)
    for i, error in enumerate(errors):
        lines.append(_line([col[i] for col in columns], widths, path_at))
        if error != "-":
            lines.append(cut("    why: " + error.replace("\n", " "), width))
    if left_out:
        lines.append(cut(f"(left out to fit {width} columns: {', '.join(left_out)}; --wide shows every column)",
                          width))
    return "\n".join(lines)


def _texts(frame: Any, column: str) -> list[str]:
    return ["-" if v is None or (isinstance(v, float) and v != v) else str(v) for v in frame[column]]


def _line(cells: Sequence[str], widths: Sequence[int], path_at: int | None = None) -> str:
    """One table line; the recording's path (column ``path_at``) is cut at its start, the rest at their end."""
    out = [(_cut_start(cell, w) if k == path_at else cut(cell, w)).ljust(w)
           for k, (cell, w) in enumerate(zip(cells, widths, strict=True))]
    return "  ".join(out).rstrip()



def _cut_start(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[len(text) - max(width - 3, 0):]


def resume_command(args: Sequence[str], width: int | None = None) -> str:
    """``resume with: CMD``, CMD the same sweep without ``--force`` (which would rerun what finished). With
    ``width``, CMD goes on over lines ended by backslashes (still one shell command) to stay within it."""
    words = [shlex.quote(a) for a in ["labkit", *(a for a in args if a != "--force")]]
    lines, line = [], "resume with:"
    for word in words:
        if width is not None and len(line) + 1 + len(word) + 2 > width and line.strip() != "resume with:":
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}"
    return "\n".join([*lines, line])
