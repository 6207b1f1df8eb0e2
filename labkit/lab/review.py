"""What the run view draws of one finished run, computed on the server: each component's own topomap,
its properties figure (MNE's ``plot_properties``) and the EOG/ECG scores with the channels' names.

A run draws each component's own map itself (``maps/ICA000.png``, cut from its topomaps' grid), so a run
view's maps are files read as they are asked for. Anything else is drawn off-screen (matplotlib's Agg) on
the handlers' worker threads, never on the event loop, and kept in memory per run (the run's folder is never
written to): a finished run's folder never changes, so a figure is drawn once. A run from before labkit drew
its own maps has them drawn here, all in one pass over one read of its ICA file.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np

from labkit.errors import LabkitError, ParameterError
from labkit.lab.kept import Kept
from labkit.results.reading import RunResult

#: figures kept in memory (each a few tens of kB): a screenful of maps for several runs
KEPT_FIGURES = 512
_draw_lock = threading.Lock()  # pyplot's figure manager is not thread-safe


def component_of(result: RunResult, value: Any) -> int:
    """``value`` (a path part or a number) as a component number of this run, or an error naming it."""
    from labkit.analysis.exclusions import n_components

    n = n_components(result)
    text = str(value)
    if not text.isdigit() or not 0 <= int(text) < n:
        raise ParameterError("component", value, f"a component number from 0 to {n - 1}")
    return int(text)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


class Figures:
    """Per-component figures of finished runs, drawn once and kept (least recently used dropped)."""

    def __init__(self) -> None:
        self._kept: Kept[bytes] = Kept(KEPT_FIGURES)
        self._scores: Kept[dict[str, Any]] = Kept(KEPT_FIGURES)
        self._lock = threading.Lock()
        self._drawing: dict[str, threading.Lock] = {}  # one pass of a run's maps at a time

    def topomap(self, result: RunResult, component: int) -> bytes:
        """One component's scalp map, titled with its name: the one the run drew, else drawn here (the first asked
        of a run draws every one of its maps)."""
        _finished(result)
        own = result.component_map(component)
        if own is not None:
            return own.read_bytes()
        run = str(result.path)
        key = (run, "topomap", component)
        png = self._kept.get(key)
        if png is not None:
            return png
        with self._lock:
            drawing = self._drawing.setdefault(run, threading.Lock())
        with drawing:  # the grid's other requests wait for this pass instead of reading the ICA again
            png = self._kept.get(key)
            if png is not None:
                return png
            try:
                pngs = _draw_topomaps(result)
                for number, drawn in enumerate(pngs):
                    self._kept.put((run, "topomap", number), drawn)
            finally:  # a failed pass is tried again by the next request
                with self._lock:
                    self._drawing.pop(run, None)
        if component >= len(pngs):
            raise LabkitError(f"Run {result.run_id} has {len(pngs)} components in its ICA file, not {component + 1}")
        return pngs[component]

    def prepare(self, result: RunResult) -> None:
        """Start drawing a succeeded run's maps on a thread, so they are ready when its run view asks for them."""
        if result.state != "succeeded" or result.component_map(0) is not None:
            return
        run = str(result.path)
        with self._lock:
            drawing = run in self._drawing
        if drawing or (run, "topomap", 0) in self._kept:
            return
        threading.Thread(target=self._draw_quietly, args=(result,), name="labkit-maps", daemon=True).start()

    def _draw_quietly(self, result: RunResult) -> None:
        try:
            self.topomap(result, 0)
        except Exception:  # noqa: BLE001 - the run view's own request for the map answers the problem
            pass

    def scores(self, result: RunResult) -> dict[str, Any]:
        """:func:`scores` of a finished run, read once (its recording's header is read for the names)."""
        if result.state != "succeeded":
            return scores(result)
        return self._scores.get_or_make(str(result.path), lambda: scores(result))

    def properties(self, result: RunResult, component: int) -> bytes:
        """MNE's properties figure of one component (map, spectrum, epochs image, variance) over the analysed data."""
        _finished(result)
        return self._kept.get_or_make((str(result.path), "properties", component),
                                      lambda: _draw_properties(result, component))


def _finished(result: RunResult) -> None:
    if result.state != "succeeded":
        raise LabkitError(f"Run {result.run_id} is {result.state}: only a succeeded run has components to draw")


def _draw_topomaps(result: RunResult) -> list[bytes]:
    """Every component's own scalp map, in component order, from one read of the run's ICA file (as a run cuts
    them from its grid of maps: :func:`labkit.analysis.figures.topomap_pixels`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from labkit.analysis.figures import topomap_pixels

    ica = result.read_ica()
    with _draw_lock:
        maps = topomap_pixels(ica, verbose="error")[1]
    return [maps[c] for c in sorted(maps)]


def _draw_properties(result: RunResult, component: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from labkit.analysis import ica as analysis
    from labkit.analysis import recording

    params = result.params
    if params is None:
        raise LabkitError(f"Run {result.run_id} has no readable params.json")
    params = params.replace(base_dir=str(result.path.parent))  # where the recording is now
    ica = result.read_ica()
    raw = analysis.load(params, verbose="error")
    analysis.preprocess(raw, params, verbose="error")
    recording.ensure_positions(raw, params.channel_type)
    with _draw_lock:
        figs = ica.plot_properties(raw, picks=[component], show=False, verbose="error")
        return _png(figs[0])


def scores(result: RunResult) -> dict[str, Any]:
    """The EOG/ECG correlation of each component, a column per channel named as in the recording."""
    m = result.metrics
    columns: list[str] = []
    values: list[np.ndarray] = []
    eog = m.get("eog_scores")
    if eog:
        eog = np.atleast_2d(np.asarray(eog, dtype=float))
        names = _channels(result, "eog")
        for j, row in enumerate(eog):
            columns.append(names[j] if len(names) == len(eog) else f"EOG {j + 1}")
            values.append(row)
    if m.get("ecg_scores"):
        names = _channels(result, "ecg")
        columns.append(names[0] if len(names) == 1 else "ECG")
        values.append(np.asarray(m["ecg_scores"], dtype=float))
    rows = [{"component": i, "name": f"ICA{i:03d}",
             "values": [None if not np.isfinite(v[i]) else round(float(v[i]), 4) for v in values]}
            for i in range(len(values[0]) if values else 0)]
    return {"columns": columns, "rows": rows}


def _channels(result: RunResult, kind: str) -> list[str]:
    """The names of the recording's channels of one type (its header only; none when it cannot be read)."""
    from labkit.analysis import recording

    if result.params is None:
        return []
    try:
        raw = recording.read_raw(result.params.replace(base_dir=str(result.path.parent)).raw_path(),
                                 preload=False, verbose="error")
    except (LabkitError, OSError, ValueError):
        return []
    return [name for name, t in zip(raw.ch_names, raw.get_channel_types(), strict=True)
            if t == kind and name not in raw.info["bads"]]
