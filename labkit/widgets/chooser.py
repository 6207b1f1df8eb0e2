"""The recording chooser: folders and recordings inside ``base_dir``, nothing else (no result folders, no ICA files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ipywidgets as W
import traitlets

from labkit.analysis import recording
from labkit.errors import ParameterError
from labkit.results.layout import FOLDER_PREFIX, cache_dir

from .common import esc

#: the label of the entry that goes one folder up
UP = ".."


def _is_ica_file(name: str) -> bool:
    """An ICA decomposition saved by MNE (``components-ica.fif``, ``*_ica.fif``): data about a recording, not one."""
    lower = name.lower()
    return lower.endswith(("-ica.fif", "_ica.fif", "-ica.fif.gz", "_ica.fif.gz"))


class RecordingBrowser(W.VBox):
    """Browse ``base_dir`` for recordings: only readable formats, only inside it (symlinks included).

    Each entry is a button with a folder or file icon (an icon font, so it renders without emoji
    fonts): a folder opens, a recording is chosen and sets :attr:`value` (its path relative to
    ``base_dir``); ``observe(..., names="value")``.
    """

    UP = UP
    #: the chosen recording, relative to base_dir ("" until one is chosen)
    value = traitlets.Unicode("")

    def __init__(self, base_dir: str | os.PathLike, **kwargs: Any) -> None:
        self.base = Path(base_dir).resolve()
        self.cwd = self.base
        self.where = W.HTML()
        self.listing = W.VBox(layout=W.Layout(max_height="220px", overflow="auto", width="98%"))
        self.refresh_button = W.Button(description="Refresh", icon="rotate", layout=W.Layout(width="auto"),
                                       tooltip="list this folder again")
        self.chosen = W.HTML()
        #: label -> path of the entries listed now
        self.paths: dict[str, Path] = {}
        #: label -> the entry's button
        self.buttons: dict[str, W.Button] = {}
        super().__init__([W.HBox([self.where, self.refresh_button]), self.listing, self.chosen], **kwargs)
        self.add_class("lk-chooser")
        self.refresh_button.on_click(lambda _: self.browse(self.cwd))
        self.browse(self.base)

    @property
    def options(self) -> tuple[str, ...]:
        """The labels listed now: ``..``, folders (ending in ``/``), then recordings."""
        return tuple(self.paths)

    def inside(self, path: Path) -> Path | None:
        """``path`` resolved, or None when it (or a symlink on the way) leaves ``base_dir``."""
        try:
            real = path.resolve()
            real.relative_to(self.base)
        except (OSError, ValueError, RuntimeError):
            return None
        return real

    def _hidden(self, child: Path, real: Path) -> bool:
        """Dot files, result folders, labkit's cache and ICA files are never offered."""
        name = child.name
        return (name.startswith(".") or name.startswith(FOLDER_PREFIX) or _is_ica_file(name)
                or real == cache_dir(self.base).resolve())

    def entries(self, folder: Path) -> dict[str, Path]:
        """Label -> path for the folders and recordings directly in ``folder``."""
        out: dict[str, Path] = {}
        if folder != self.base:
            out[UP] = folder.parent
        try:
            children = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        except OSError:
            return out
        for child in children:
            real = self.inside(child)
            if real is None or self._hidden(child, real):
                continue
            if recording.is_recording(child):
                out[child.name] = child
            elif real.is_dir():
                out[f"{child.name}/"] = child
        return out

    def browse(self, folder: Path) -> None:
        real = self.inside(folder)
        if real is None or not real.is_dir():
            real = self.base
        self.cwd = real
        self.paths = self.entries(real)
        rel = real.relative_to(self.base).as_posix()
        self.where.value = f"<b>{esc(self.base)}</b>/{esc('' if rel == '.' else rel)}"
        self.buttons = {}
        for label in self.paths:
            icon = "arrow-up" if label == UP else "folder" if label.endswith("/") else "file"
            button = W.Button(description=label, icon=icon, tooltip=label,
                              layout=W.Layout(width="auto", min_width="40%"))
            button.add_class("lk-entry")
            button.on_click(lambda _, label=label: self.enter(label))
            self.buttons[label] = button
        self.listing.children = tuple(self.buttons.values()) or (
            W.HTML("<i>No recordings or folders here.</i>"),)

    def enter(self, label: str) -> None:
        """What a click on an entry does: open a folder, or choose a recording."""
        path = self.paths[label]
        if label == UP or label.endswith("/"):
            self.browse(path)
            return
        real = self.inside(path)
        if real is None or not recording.is_recording(path):  # changed on disk since listing
            self.browse(self.cwd)
            return
        rel = path.relative_to(self.base).as_posix() if path.is_relative_to(self.base) else \
            real.relative_to(self.base).as_posix()
        for name, button in self.buttons.items():
            button.button_style = "info" if name == label else ""
        self.chosen.value = f"Recording: <code>{esc(rel)}</code>"
        self.value = rel

    def choose(self, rel_path: str) -> None:
        """Choose a recording by its path relative to ``base_dir`` (opens its folder)."""
        path = self.base / rel_path
        real = self.inside(path)
        if real is None or not recording.is_recording(path):
            raise ParameterError("raw_file_path", rel_path, f"a recording file inside base_dir {str(self.base)!r}")
        self.browse(path.parent)
        self.enter(path.name)
