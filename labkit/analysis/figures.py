"""The run's figures (topomaps, source time courses, suspects' properties) and the jobs a worker draws.

The topomaps and MNE's ICA section of the report need only the saved ICA file, so a worker
process (:mod:`labkit.analysis.beside`) draws them while the run draws the rest; everything
here is bookkeeping for MNE's log (:func:`labkit.analysis.mnelog.quietly`).
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mne
import numpy as np

from labkit.analysis.mnelog import quiet, quietly
from labkit.results.layout import MAPS_DIR, TOPOMAP_GLOB, component_map

logger = logging.getLogger("labkit.analysis.ica")  # the run's log names the analysis, as it did


def plot(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, out_dir: Path, suspects: list[int],
         no_positions: str | None = None, topomaps: "Future[None] | None" = None) -> dict[str, Any]:
    """Topomaps (unless ``no_positions`` says why not), source time courses and suspect properties, as PNG.

    ``topomaps`` is the worker's drawing of the saved ICA (:func:`draw_topomaps_from_file`),
    running on the second core while this process draws the rest; without one, they are drawn here.
    """
    out: dict[str, Any] = {"figures": []}
    t0 = time.perf_counter()
    if no_positions is not None:
        out["topomaps_skipped"] = no_positions
        warnings.warn(f"topomaps skipped: {no_positions}", stacklevel=2)
    elif topomaps is None:
        draw_topomaps(ica, out_dir)
    fig = ica.plot_sources(raw, show=False, show_scrollbars=False, start=0, stop=min(10.0, raw.times[-1]))
    out["figures"].append(save(fig, out_dir / "sources.png"))
    if no_positions is None and suspects:  # one call: MNE segments the data and computes spectra once
        with quiet():  # (plot_sources above talks at the run's level, as it always did)
            figs = ica.plot_properties(raw, picks=suspects, show=False)
        for idx, fig in zip(suspects, figs, strict=True):
            out["figures"].append(save(fig, out_dir / f"properties_{idx:03d}.png"))
    if no_positions is None and topomaps is not None:
        t1 = time.perf_counter()
        try:
            topomaps.result(timeout=300)
        except Exception as err:  # a dead or stuck worker: draw them here rather than lose them
            logger.warning("drawing topomaps in a worker process failed (%s: %s); drawing them here",
                           type(err).__name__, err)
            draw_topomaps(ica, out_dir)
        logger.info("plot: sources and properties drawn here in %.2f s, then %.2f s more waiting for the "
                    "topomaps' worker", t1 - t0, time.perf_counter() - t1)
    out["figures"] = sorted(p.name for p in out_dir.glob(TOPOMAP_GLOB)) + out["figures"]
    return out


def save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


@quietly
def draw_topomaps(ica: mne.preprocessing.ICA, out_dir: Path) -> None:
    """The grid of every component's map (``topomaps.png``; ``topomaps_01.png``... past MNE's 20 a figure) and,
    cut from the same pixels, each component's own map (``maps/ICA000.png``...): JupyterLab's run view shows
    those, and needs no second drawing."""
    (out_dir / MAPS_DIR).mkdir(exist_ok=True)
    grids, maps = topomap_pixels(ica)
    for i, png in enumerate(grids):
        (out_dir / ("topomaps.png" if len(grids) == 1 else f"topomaps_{i + 1:02d}.png")).write_bytes(png)
    for component, png in maps.items():
        (out_dir / component_map(component)).write_bytes(png)


def topomap_pixels(ica: mne.preprocessing.ICA, dpi: int = 80,
                   verbose: str | None = None) -> tuple[list[bytes], dict[int, bytes]]:
    """MNE's grids of component maps as PNG, and each component's cell of them (its map and its name) as PNG."""
    figs = ica.plot_components(show=False, verbose=verbose)
    grids, maps = [], {}
    for fig in figs if isinstance(figs, list) else [figs]:
        fig.set_dpi(dpi)
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())
        grids.append(_png(pixels))
        renderer, height = fig.canvas.get_renderer(), pixels.shape[0]
        for ax in fig.axes:
            name = ax.get_title().split(" ")[0]  # "ICA003", "ICA003 (mag)", "ICA003 [x]": the first cell of each
            if name not in ica._ica_names or ica._ica_names.index(name) in maps:
                continue
            box = ax.get_tightbbox(renderer).padded(2)
            top, bottom = max(0, height - int(np.ceil(box.y1))), min(height, height - int(box.y0))
            maps[ica._ica_names.index(name)] = _png(pixels[top:bottom, max(0, int(box.x0)):int(np.ceil(box.x1))])
        plt.close(fig)
    return grids, maps


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="png")
    return out.getvalue()


@quietly
def saved_ica(ica_file: str) -> mne.preprocessing.ICA:
    """In a worker process: the run's saved ICA, with figures drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    return mne.preprocessing.read_ica(ica_file)


@quietly
def save_ica(ica: mne.preprocessing.ICA, path: Path) -> None:
    """Write the run's ICA (what the workers read, and the result folder keeps)."""
    ica.save(path, overwrite=True)


def draw_topomaps_from_file(ica_file: str, out_dir: str) -> None:
    """In a worker process: draw the saved ICA's topomaps (positions are in the saved info)."""
    draw_topomaps(saved_ica(ica_file), Path(out_dir))


def report_section_from_file(ica_file: str, report_title: str, facts: dict[str, Any]) -> mne.Report:
    """In a worker process: MNE's ICA section of the report for the saved ICA (:func:`report.ica_section`)."""
    from labkit.analysis import report

    return report.ica_section(saved_ica(ica_file), report_title, facts)
