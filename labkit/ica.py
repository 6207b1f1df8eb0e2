"""The analysis: small named steps from a parameter set to a fitted ICA, scores, figures and a report.

Each step is a plain function that logs what it did and how long it took, so the
notebook template, the widgets and benchmarks call the same code. :func:`run`
chains them and writes everything into a :class:`~labkit.results.RunFolder`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import signal
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import matplotlib.pyplot as plt
import mne
import numpy as np
from threadpoolctl import threadpool_limits

from . import cache, recording, results
from .errors import ParameterError
from .params import IcaParams, recording_problems

logger = logging.getLogger(__name__)

#: the steps of a run, in order, for progress displays
STEPS = ("load", "filter", "fit", "score", "plot", "report")
#: BLAS threads per fit: one thread measured fastest for picard on 2 cores (benchmarks/)
DEFAULT_BLAS_THREADS = 1


@contextlib.contextmanager
def step(name: str, folder: results.RunFolder | None = None,
         progress: Callable[[str], None] | None = None) -> Iterator[dict[str, float]]:
    """Time and log one named step; tell the folder and any progress callback it started."""
    if folder is not None:
        folder.step(name)
    if progress is not None:
        progress(name)
    logger.info("%s: started", name)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    yield timing
    timing["seconds"] = time.perf_counter() - t0
    logger.info("%s: done in %.2f s", name, timing["seconds"])


def load(params: IcaParams, *, verbose: bool | str | None = None) -> mne.io.BaseRaw:
    """Read the recording, check the set against its header, crop (clamping the end) and load it."""
    raw = recording.read_raw(params.raw_path(), preload=False, verbose=verbose)
    info = recording.info_of(raw, params.raw_path())
    problems = recording_problems(params, info)
    if problems:
        raise problems[0]
    tmax = params.crop_tmax
    last = raw.times[-1]
    if tmax is None or tmax > last:
        if tmax is not None:
            logger.warning("crop_tmax %.3g s is past the end of the recording; using its end (%.3f s)", tmax, last)
            warnings.warn(f"crop_tmax {tmax:g} s is past the recording's end; clamped to {last:.3f} s", stacklevel=2)
        tmax = last
    raw.crop(tmin=params.crop_tmin, tmax=tmax)
    raw.load_data(verbose=verbose)
    logger.info("loaded %s: %d channels, %.1f s at %g Hz", params.raw_path().name, len(raw.ch_names),
                raw.times[-1], raw.info["sfreq"])
    return raw


def preprocess(raw: mne.io.BaseRaw, params: IcaParams, *, verbose: bool | str | None = None) -> mne.io.BaseRaw:
    """Band-pass the analysed channels (and EOG/ECG, so scores compare like with like) in place."""
    types = {params.channel_type, "eog", "ecg"} & set(raw.get_channel_types())
    picks = mne.pick_types(raw.info, **{_pick_kw(t): _pick_val(t) for t in types}, exclude=[])
    raw.filter(params.filter_fmin, params.filter_fmax, picks=picks, n_jobs=1, verbose=verbose)
    return raw


def _pick_kw(channel_type: str) -> str:
    return "meg" if channel_type in ("meg", "mag", "grad") else channel_type


def _pick_val(channel_type: str) -> bool | str:
    return channel_type if channel_type in ("mag", "grad") else True


def fit(raw: mne.io.BaseRaw, params: IcaParams, *, blas_threads: int = DEFAULT_BLAS_THREADS,
        verbose: bool | str | None = None) -> mne.preprocessing.ICA:
    """Fit ICA on the analysed channels; refuse more components than the data's rank."""
    rank = mne.compute_rank(raw, rank=None, verbose="error")  # estimated from the data: catches re-referencing
    type_rank = sum(v for k, v in rank.items() if k == params.channel_type or
                    (params.channel_type == "meg" and k in ("meg", "mag", "grad")))
    if type_rank and params.n_components > type_rank:
        raise ParameterError("n_components", params.n_components,
                             f"at most the rank of the {params.channel_type} data ({type_rank})")
    ica = mne.preprocessing.ICA(
        n_components=params.n_components, method=params.method, fit_params=params.mne_fit_params or None,
        max_iter=params.max_iter, random_state=params.random_state, verbose=verbose,
    )
    with threadpool_limits(limits=blas_threads), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ica.fit(raw, picks=params.channel_type, verbose=verbose)
    for w in caught:
        logger.warning("ICA fit: %s", w.message)
    ica.labkit_fit_warnings = [str(w.message) for w in caught]  # type: ignore[attr-defined]
    return ica


def score(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, *, verbose: bool | str | None = None) -> dict[str, Any]:
    """Correlate components with EOG/ECG channels when they exist; MNE flags the suspects."""
    out: dict[str, Any] = {}
    types = set(raw.get_channel_types())
    if "eog" in types:
        idx, scores = ica.find_bads_eog(raw, verbose=verbose)
        out["eog_suspects"] = [int(i) for i in idx]
        out["eog_scores"] = np.atleast_2d(scores).tolist()
    if "ecg" in types:
        idx, scores = ica.find_bads_ecg(raw, method="correlation", threshold="auto", verbose=verbose)
        out["ecg_suspects"] = [int(i) for i in idx]
        out["ecg_scores"] = np.asarray(scores).tolist()
    if not out:
        logger.info("no EOG or ECG channels: components are not scored")
    return out


def plot(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, out_dir: Path, suspects: list[int],
         no_positions: str | None = None) -> dict[str, Any]:
    """Topomaps (unless ``no_positions`` says why not), source time courses and suspect properties, as PNG.

    The topomaps are drawn in a forked child on the second core while this process
    draws the rest: the fit is pinned to one BLAS thread and matplotlib uses one core.
    """
    out: dict[str, Any] = {"figures": []}
    join = None
    t0 = time.perf_counter()
    if no_positions is None:
        join = _in_child(lambda: _draw_topomaps(ica, out_dir))
        if join is None:
            _draw_topomaps(ica, out_dir)
    else:
        out["topomaps_skipped"] = no_positions
        logger.warning("topomaps skipped: %s", no_positions)
    fig = ica.plot_sources(raw, show=False, show_scrollbars=False, start=0, stop=min(10.0, raw.times[-1]))
    out["figures"].append(_save(fig, out_dir / "sources.png"))
    if no_positions is None and suspects:  # one call: MNE segments the data and computes spectra once
        figs = ica.plot_properties(raw, picks=suspects, show=False, verbose="error")
        for idx, fig in zip(suspects, figs, strict=True):
            out["figures"].append(_save(fig, out_dir / f"properties_{idx:03d}.png"))
    if join is not None:
        t1 = time.perf_counter()
        if not join():
            logger.warning("drawing topomaps in a child process failed; drawing them here")
            _draw_topomaps(ica, out_dir)
        logger.info("plot: sources and properties drawn here in %.2f s, then %.2f s more for the topomaps' "
                    "child", t1 - t0, time.perf_counter() - t1)
    out["figures"] = sorted(p.name for p in out_dir.glob(results.TOPOMAP_GLOB)) + out["figures"]
    return out


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


def _draw_topomaps(ica: mne.preprocessing.ICA, out_dir: Path) -> None:
    figs = ica.plot_components(show=False, verbose="error")
    figs = figs if isinstance(figs, list) else [figs]
    for i, fig in enumerate(figs):
        name = "topomaps.png" if len(figs) == 1 else f"topomaps_{i + 1:02d}.png"
        _save(fig, out_dir / name)


def _in_child(work: Callable[[], None], timeout: float = 300.0) -> Callable[[], bool] | None:
    """Run ``work`` in a forked child; return a join that says whether it succeeded (None: no fork here)."""
    if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
        return None
    pid = os.fork()
    if pid == 0:  # child: draw, then leave without running the parent's exit handlers
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)

    def join() -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return False

    return join


def build_report(params: IcaParams, metrics: dict[str, Any], out_dir: Path, figures: list[str]) -> Path:
    """An HTML ``mne.Report`` of the run, from the PNGs already drawn (no second rendering)."""
    report = mne.Report(title=f"labkit ICA {params.method}, {params.n_components} components", verbose="error")
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in metrics.items() if not isinstance(v, (list, dict)))
    report.add_html(f"<table>{rows}</table>", title="Metrics")
    report.add_html(f"<pre>{params.to_json()}</pre>", title="Parameters")
    for name in figures:
        report.add_image(out_dir / name, title=name.rsplit(".", 1)[0].replace("_", " "))
    path = out_dir / results.REPORT_FILE
    report.save(path, open_browser=False, overwrite=True, verbose="error")
    return path


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "mne": mne.__version__}
    for dist in ("python-picard", "labkit", "scikit-learn", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class AnalysisResult:
    """What :func:`run` produced in memory (the folder holds the same on disk)."""

    ica: mne.preprocessing.ICA
    raw: mne.io.BaseRaw
    metrics: dict[str, Any]
    folder: Path
    figures: list[str] = field(default_factory=list)


def run(params: IcaParams, out_dir: str | os.PathLike, *, folder: results.RunFolder | None = None,
        blas_threads: int = DEFAULT_BLAS_THREADS, progress: Callable[[str], None] | None = None,
        verbose: bool | str | None = None) -> AnalysisResult:
    """Run every step and write params, metrics, figures, the ICA and the report into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with step("load", folder, progress) as t:
        raw = load(params, verbose=verbose)
        no_positions = recording.ensure_positions(raw, params.channel_type)
    timings["load_s"] = t["seconds"]
    with step("filter", folder, progress) as t:
        raw = cache.preprocessed(raw, params, preprocess, verbose=verbose)  # shared by a sweep's runs
    timings["filter_s"] = t["seconds"]
    with step("fit", folder, progress) as t:
        ica = fit(raw, params, blas_threads=blas_threads, verbose=verbose)
    timings["fit_s"] = t["seconds"]
    with step("score", folder, progress) as t:
        scores = score(ica, raw, verbose=verbose)
    timings["score_s"] = t["seconds"]
    ica.exclude = sorted(set(scores.get("eog_suspects", [])) | set(scores.get("ecg_suspects", [])))
    ica.save(out / results.ICA_FILE, overwrite=True, verbose="error")
    with step("plot", folder, progress) as t:
        drawn = plot(ica, raw, out, ica.exclude, no_positions)
    timings["plot_s"] = t["seconds"]
    max_iter = ica.max_iter if isinstance(ica.max_iter, int) else None
    metrics: dict[str, Any] = {
        "method": params.method,
        "n_components": int(ica.n_components_),
        "fit_time_s": round(timings["fit_s"], 3),
        "n_iter": int(ica.n_iter_),
        "max_iter": max_iter,
        # MNE's infomax reports n_iter_ == max_iter whether or not it converged: no signal there
        "converged": None if params.method == "infomax" else bool(max_iter is None or ica.n_iter_ < max_iter),
        "fit_warnings": getattr(ica, "labkit_fit_warnings", []),
        "explained_variance": float(ica.get_explained_variance_ratio(raw, ch_type=_var_type(params))
                                    .get(_var_type(params), float("nan"))),
        "n_channels": len(ica.ch_names),
        "n_samples": int(raw.n_times),
        "sfreq": float(raw.info["sfreq"]),
        "duration_s": float(raw.times[-1]),
        "blas_threads": blas_threads,
        "exclude": list(ica.exclude),
        "steps_s": {k: round(v, 3) for k, v in timings.items()},
        "versions": versions(),
        "host": socket.gethostname(),
        **scores,
        **{k: v for k, v in drawn.items() if k != "figures"},
    }
    with step("report", folder, progress) as t:
        build_report(params, metrics, out, drawn["figures"])
    metrics["steps_s"]["report_s"] = round(t["seconds"], 3)
    (out / results.METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str))
    return AnalysisResult(ica=ica, raw=raw, metrics=metrics, folder=out, figures=drawn["figures"])


def _var_type(params: IcaParams) -> str:
    return "mag" if params.channel_type == "meg" else params.channel_type
