"""The analysis: small named steps from a parameter set to a fitted ICA, scores, figures and a report.

Each step is a plain function that logs what it did and how long it took, so the
notebook template, the widgets and benchmarks call the same code. :func:`run`
chains them and writes everything into a :class:`~labkit.results.folder.RunFolder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import platform
import socket
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import matplotlib.pyplot as plt
import mne
import numpy as np
from threadpoolctl import threadpool_limits

from labkit.analysis import cache
from labkit.analysis import recording
from labkit.results import folder as results
from labkit.errors import ParameterError, RecordingError
from labkit.params import IcaParams, recording_problems

logger = logging.getLogger(__name__)

#: the steps of a run, in order, for progress displays
STEPS = ("load", "filter", "fit", "score", "plot", "label", "report")
#: BLAS threads per fit; 0: automatic (see :func:`blas_threads_for`)
DEFAULT_BLAS_THREADS = 0
#: loaded samples above which labels are computed after the plots, in the run's process, not beside them in a
#: worker: two processes each holding a copy of a long recording cost more memory than the naive script
#: (benchmarks/README.md, bench_long); 64 MiB is about 9 minutes of 64 channels at 250 Hz
LONG_RECORDING_BYTES = 64 << 20


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


def load(params: IcaParams, *, verbose: bool | str | None = None, scoring: bool = True) -> mne.io.BaseRaw:
    """Read the recording, check the set against its header, crop (clamping the end), keep what the analysis uses, load.

    Only the analysed channels (and EOG/ECG, for ``scoring``) are loaded: a 64-channel
    recording with stimulus or auxiliary channels never holds those in memory.
    """
    return load_checked(params, verbose=verbose, scoring=scoring)[0]


def load_checked(params: IcaParams, *, verbose: bool | str | None = None, scoring: bool = True
                 ) -> tuple[mne.io.BaseRaw, recording.RecordingInfo]:
    """:func:`load`, and the header the set was checked against."""
    raw = recording.read_raw(params.raw_path(), preload=False, verbose=verbose)
    info = recording.info_of(raw, params.raw_path())
    check_against(params, info)
    tmax = params.crop_tmax
    last = raw.times[-1]
    if tmax is None or tmax > last:
        if tmax is not None:
            warnings.warn(f"crop_tmax {tmax:g} s is past the recording's end; clamped to {last:.3f} s", stacklevel=2)
        tmax = last
    raw.crop(tmin=params.crop_tmin, tmax=tmax)
    raw.pick(kept_channels(raw.info, params.channel_type, scoring=scoring), verbose="error")
    raw.load_data(verbose=verbose)
    logger.info("loaded %s: %d channels (%s), %.1f s at %g Hz", params.raw_path().name, len(raw.ch_names),
                ", ".join(f"{t} {n}" for t, n in sorted(Counter(raw.get_channel_types()).items())),
                raw.times[-1], raw.info["sfreq"])
    return raw, info


def check_against(params: IcaParams, header: recording.RecordingInfo) -> None:
    """Raise the first reason the recording cannot take ``params`` (crop, Nyquist, channel type, rank)."""
    problems = recording_problems(params, header)
    if problems:
        raise problems[0]


def analysed_types(channel_type: str) -> tuple[str, ...]:
    """The channel types one ICA fits: ``meg`` is magnetometers and gradiometers, whitened together."""
    return ("mag", "grad") if channel_type == "meg" else (channel_type,)


def kept_channels(info: mne.Info, channel_type: str, *, scoring: bool = True) -> list[str]:
    """The good channels of the analysed types, EOG and ECG (if ``scoring``), and MEG reference channels if the
    recording's compensation needs them; everything else is dropped before loading."""
    types = set(analysed_types(channel_type)) | ({"eog", "ecg"} if scoring else set())
    if info["comps"]:
        types.add("ref_meg")
    bads = set(info["bads"])
    return [name for name, kind in zip(info["ch_names"], info.get_channel_types(), strict=True) if kind in types and name not in bads]


def preprocess(raw: mne.io.BaseRaw, params: IcaParams, *, verbose: bool | str | None = None) -> mne.io.BaseRaw:
    """Band-pass every kept channel in place, so the header (and the saved ICA) records the filter the ICA saw."""
    raw.filter(params.filter_fmin, params.filter_fmax, picks="all", n_jobs=1, verbose=verbose)
    return raw


def check_finite(raw: mne.io.BaseRaw) -> None:
    """Refuse NaN or infinite samples before the fit, naming the channel and the time (MNE names neither)."""
    data = raw._data  # the loaded array itself: no copy of a long recording
    for i, row in enumerate(data):
        bad = ~np.isfinite(row)
        if bad.any():
            first = int(np.argmax(bad))
            raise RecordingError(
                f"channel {raw.ch_names[i]!r} holds {int(bad.sum())} NaN/infinite sample(s), the first at "
                f"{raw.times[first] + raw.first_time:.3f} s (value {row[first]}): mark the channel bad or crop around it")


def blas_threads_for(raw: mne.io.BaseRaw, requested: int = DEFAULT_BLAS_THREADS) -> int:
    """``requested``, or automatically (0): one thread for a short recording (measured fastest for picard on
    2 cores, the same for fastica and infomax), every core for a long one (a 30-minute 64-channel fastica fit:
    4.8 s on two threads, 6.6 s on one; benchmarks/README.md)."""
    if requested > 0:
        return requested
    return 1 if raw._data.nbytes <= LONG_RECORDING_BYTES else (os.cpu_count() or 1)


#: samples the rank check reads at most: a structural deficiency (a reference, a projection) is in every sample
RANK_SAMPLES = 50_000


def _rank_sample(raw: mne.io.BaseRaw) -> mne.io.BaseRaw:
    """Every k-th sample of a long recording, as a Raw of the same channels: its SVD takes 0.1 s, not 1.5 s."""
    stride = raw.n_times // RANK_SAMPLES + 1
    return raw if stride == 1 else mne.io.RawArray(raw._data[:, ::stride], raw.info, verbose="error")


def fit(raw: mne.io.BaseRaw, params: IcaParams, *, blas_threads: int = DEFAULT_BLAS_THREADS,
        verbose: bool | str | None = None) -> mne.preprocessing.ICA:
    """Fit ICA on the analysed channels; refuse more components than the data's rank."""
    types = analysed_types(params.channel_type)
    rank = mne.compute_rank(_rank_sample(raw), rank=None, verbose="error")  # from the data: catches re-referencing
    type_rank = sum(v for k, v in rank.items() if k in types or (k == "meg" and params.channel_type in ("meg", "mag", "grad")))
    if type_rank and params.n_components > type_rank:
        raise ParameterError("n_components", params.n_components,
                             f"at most the rank of the {params.channel_type} data ({type_rank})")
    ica = mne.preprocessing.ICA(
        n_components=params.n_components, method=params.method, fit_params=params.mne_fit_params or None,
        max_iter=params.max_iter, random_state=params.random_state, verbose=verbose,
    )
    with threadpool_limits(limits=blas_threads_for(raw, blas_threads)):
        ica.fit(raw, picks=list(types), verbose=verbose)
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
         no_positions: str | None = None, topomaps: "Future[None] | None" = None) -> dict[str, Any]:
    """Topomaps (unless ``no_positions`` says why not), source time courses and suspect properties, as PNG.

    ``topomaps`` is the worker's drawing of the saved ICA (:func:`draw_topomaps_elsewhere`),
    running on the second core while this process draws the rest; without one, they are drawn here.
    """
    out: dict[str, Any] = {"figures": []}
    t0 = time.perf_counter()
    if no_positions is not None:
        out["topomaps_skipped"] = no_positions
        warnings.warn(f"topomaps skipped: {no_positions}", stacklevel=2)
    elif topomaps is None:
        _draw_topomaps(ica, out_dir)
    fig = ica.plot_sources(raw, show=False, show_scrollbars=False, start=0, stop=min(10.0, raw.times[-1]))
    out["figures"].append(_save(fig, out_dir / "sources.png"))
    if no_positions is None and suspects:  # one call: MNE segments the data and computes spectra once
        figs = ica.plot_properties(raw, picks=suspects, show=False, verbose="error")
        for idx, fig in zip(suspects, figs, strict=True):
            out["figures"].append(_save(fig, out_dir / f"properties_{idx:03d}.png"))
    if no_positions is None and topomaps is not None:
        t1 = time.perf_counter()
        try:
            topomaps.result(timeout=300)
        except Exception as err:  # a dead or stuck worker: draw them here rather than lose them
            logger.warning("drawing topomaps in a worker process failed (%s: %s); drawing them here",
                           type(err).__name__, err)
            _draw_topomaps(ica, out_dir)
        logger.info("plot: sources and properties drawn here in %.2f s, then %.2f s more waiting for the "
                    "topomaps' worker", t1 - t0, time.perf_counter() - t1)
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


def _saved(ica_file: str) -> mne.preprocessing.ICA:
    """In a worker process: the run's saved ICA, with figures drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    return mne.preprocessing.read_ica(ica_file, verbose="error")


def draw_topomaps_from_file(ica_file: str, out_dir: str) -> None:
    """In a worker process: draw the saved ICA's topomaps (positions are in the saved info)."""
    _draw_topomaps(_saved(ica_file), Path(out_dir))


def report_section_from_file(ica_file: str, report_title: str, facts: dict[str, Any]) -> mne.Report:
    """In a worker process: MNE's ICA section of the report for the saved ICA (:func:`report.ica_section`)."""
    from labkit.analysis import report

    return report.ica_section(_saved(ica_file), report_title, facts)


def label_in_worker(ica_file: str, params_json: str, network: str) -> tuple[dict[str, Any] | None, list[str]]:
    """In a worker process: label the saved ICA; return the labels and the warnings raised meanwhile."""
    params = IcaParams.from_json(params_json)
    caught = WarningLog()
    with caught.capturing():
        found = _label(_saved(ica_file), params, network, "warning")
    return found, caught.messages


def _one_blas_thread() -> None:
    """A worker's BLAS keeps one thread: it shares the cores with the run, where idle BLAS threads spin
    (the topomaps and properties took 1.1-1.2 s of CPU for 0.75 s of drawing on two threads, 0.75 s on one)."""
    threadpool_limits(limits=1)


def _warm() -> None:
    """A no-op a worker runs first, so its start-up (imports) overlaps the fit."""


class TopomapWorker:
    """Worker processes beside the plots (topomaps, MNE's ICA section of the report, a short recording's labels),
    started from a clean forkserver (never a fork of the live kernel).

    Forking a process with live threads (the kernel's, BLAS's) can deadlock the child and
    is deprecated on Python 3.12+; a forkserver starts from a fresh interpreter that has
    imported labkit.analysis.ica, so a worker only has to read the saved ICA file and draw or label.
    """

    def __init__(self, workers: int = 2, preload: tuple[str, ...] = ("labkit.analysis.ica",)) -> None:
        import multiprocessing as mp
        import sys

        self.pool: ProcessPoolExecutor | None = None
        self._starting: threading.Thread | None = None
        # one core: drawing here is as fast and starts nothing; a sweep's warm kernel: its cores are the pool's
        warm_kernel = bool(getattr(sys.modules.get("labkit.runners.pool"), "_baseline_handlers", None))
        if (os.cpu_count() or 1) < 2 or warm_kernel:
            return
        main = sys.modules.get("__main__")
        if main is not None and not hasattr(main, "__spec__"):  # a kernel whose namespace was reset
            main.__spec__ = None  # type: ignore[attr-defined]  # what multiprocessing reads to prepare a worker
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(list(preload))
        # the first worker waits for the forkserver's imports (0.5 s): started in a thread, the run goes on meanwhile
        self._starting = threading.Thread(target=self._start, args=(workers, ctx), name="labkit-worker-start",
                                          daemon=True)
        self._starting.start()

    def _start(self, workers: int, ctx: Any) -> None:
        try:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,  # topomaps (and labels), beside the plots
                                       initializer=_one_blas_thread)
            pool.submit(_warm)
            self.pool = pool
        except Exception as err:  # no worker here: the run draws and labels in-process
            logger.warning("no topomap worker (%s: %s); drawing here", type(err).__name__, err)

    def draw(self, ica_file: Path, out_dir: Path) -> "Future[None] | None":
        return self.submit(draw_topomaps_from_file, str(ica_file), str(out_dir))

    def submit(self, fn: Callable[..., Any], *args: Any) -> "Future[Any] | None":
        """``fn(*args)`` in a worker, or None when there is none (the caller then does it itself)."""
        pool = self.pool if self.ready() else None
        if pool is None:
            return None
        try:
            return pool.submit(fn, *args)
        except Exception as err:  # broken pool
            logger.warning("no topomap worker (%s: %s)", type(err).__name__, err)
            return None

    def ready(self) -> bool:
        """Whether a worker process runs (waiting for its start, if it is starting)."""
        if self._starting is not None:
            self._starting.join()
        return self.pool is not None

    def close(self) -> None:
        pool = self.pool if self.ready() else None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> "TopomapWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def versions() -> dict[str, str]:
    from labkit.results.provenance import package_version

    return {"python": platform.python_version(), "mne": mne.__version__,
            **{dist: package_version(dist) for dist in ("python-picard", "labkit", "scikit-learn", "numpy")}}


#: fewest samples per squared component for a trustworthy unmixing: half the 20 n^2 of Onton & Makeig's rule
#: of thumb for EEG (2006), so only clearly too short recordings are flagged
MIN_SAMPLES_PER_COMPONENT_SQUARED = 10


@dataclass
class AnalysisResult:
    """What :func:`run` produced in memory (the folder holds the same on disk)."""

    ica: mne.preprocessing.ICA
    raw: mne.io.BaseRaw
    metrics: dict[str, Any]
    folder: Path
    figures: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return list(self.metrics.get("warnings", []))


def _plain(message: Any) -> str:
    """A warning as one line of plain words (no category, no newlines)."""
    return " ".join(str(message).split())


class WarningLog:
    """Collects every warning of a run: Python warnings and the ``mne`` logger's WARNING records.

    Each is logged once (into ``run.log`` through the labkit logger) as it happens and kept in
    order, de-duplicated, for ``metrics.json`` and ``status.json``.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    #: not about the analysis: interpreter housekeeping (garbage-collected sockets, deprecations) goes to the log only
    IGNORED = (ResourceWarning, DeprecationWarning, PendingDeprecationWarning, ImportWarning)

    def add(self, message: Any) -> None:
        if isinstance(message, self.IGNORED):
            logger.debug("ignored %s: %s", type(message).__name__, message)
            return
        text = _plain(message)
        if text and text not in self.messages:
            self.messages.append(text)
            logger.warning("warning: %s", text)

    @contextlib.contextmanager
    def capturing(self) -> Iterator["WarningLog"]:
        log = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                log.add(record.getMessage())

        handler = _Handler(logging.WARNING)
        mne_logger = logging.getLogger("mne")
        mne_logger.addHandler(handler)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *args, **kwargs: self.add(message)
            try:
                yield self
            finally:
                mne_logger.removeHandler(handler)


def outcome_warnings(params: IcaParams, metrics: dict[str, Any]) -> list[str]:
    """Warnings labkit itself derives from the result: no convergence, too few samples for the components."""
    out = []
    if metrics.get("converged") is False:
        out.append(f"the {params.method} fit did not converge within max_iter={metrics.get('max_iter')} iterations: "
                   "components may be unreliable (raise max_iter or lower n_components)")
    needed = MIN_SAMPLES_PER_COMPONENT_SQUARED * metrics["n_components"] ** 2
    if metrics["n_samples"] < needed:
        out.append(f"the analysed span has {metrics['n_samples']} samples, fewer than the {needed} "
                   f"({MIN_SAMPLES_PER_COMPONENT_SQUARED} x {metrics['n_components']}^2) ICA needs for "
                   f"{metrics['n_components']} components: use a longer crop or fewer components")
    return out


def run(params: IcaParams, out_dir: str | os.PathLike, *, folder: results.RunFolder | None = None,
        blas_threads: int = DEFAULT_BLAS_THREADS, progress: Callable[[str], None] | None = None,
        verbose: bool | str | None = None) -> AnalysisResult:
    """Run every step and write params, metrics, figures, labels, the ICA and the report into ``out_dir``.

    Every warning (MNE's, the fit's, labkit's own) is captured into ``run.log``, ``metrics.json``
    and ``status.json``: a run with warnings is ``succeeded with warnings``, never plain ``succeeded``.
    """
    from labkit.analysis import labels as labels_mod
    from labkit.analysis import report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    caught = WarningLog()
    worker: TopomapWorker | None = None
    try:
        with caught.capturing(), _rare_full_collections():
            first_warning = len(caught.messages)
            with contextlib.ExitStack() as held:
                with step("load", folder, progress) as t:
                    # load and filter once for all of a sweep's runs that share them: a hit is read here
                    prepared = held.enter_context(cache.slot(params))
                    if prepared.hit:  # checked and told as the run that computed the data was
                        raw, header = prepared.raw, recording.RecordingInfo(**prepared.notes["header"])
                        prepared.raw = None  # the run holds the one reference: it may let the data go
                        check_against(params, header)
                        for text in prepared.notes["warnings"]:
                            caught.add(text)
                    else:
                        raw, header = load_checked(params, verbose=verbose)
                        check_finite(raw)
                    no_positions = recording.ensure_positions(raw, params.channel_type)
                timings["load_s"] = t["seconds"]
                with step("filter", folder, progress) as t:
                    if not prepared.hit:
                        raw = preprocess(raw, params, verbose=verbose)
                        prepared.store(raw, {"warnings": caught.messages[first_warning:],  # written beside the fit
                                             "header": dataclasses.asdict(header)})
                timings["filter_s"] = t["seconds"]
                # the worker's start-up (imports) overlaps the fit; a long recording's fit wants every core and
                # the memory its copies take, so its worker starts after the fit (below)
                long = raw._data.nbytes > LONG_RECORDING_BYTES
                # (the labelling network's packages imported by the forkserver too: 0.6 s the labels' worker saves)
                worker = None if long else TopomapWorker(preload=("labkit.analysis.ica", "mne_icalabel", "onnxruntime"))
                with step("fit", folder, progress) as t:
                    ica = fit(raw, params, blas_threads=blas_threads, verbose=verbose)
                timings["fit_s"] = t["seconds"]
            network = labels_mod.network_for(params.channel_type)
            later = network is not None and params.label_threshold is None
            with contextlib.ExitStack() as beside_plots:
                if long and later and no_positions is None:
                    # topomaps only (it never holds the recording), closed before the labelling copy is read;
                    # meanwhile this process keeps one BLAS thread, so the two never wait on each other's cores
                    worker = beside_plots.enter_context(TopomapWorker(workers=1))
                if worker is not None:  # the plots share the cores with the worker: one BLAS thread each, or
                    beside_plots.enter_context(threadpool_limits(limits=1))  # idle BLAS threads spin on busy cores
                with step("score", folder, progress) as t:
                    scores = score(ica, raw, verbose=verbose)
                timings["score_s"] = t["seconds"]
                suspects = sorted(set(scores.get("eog_suspects", [])) | set(scores.get("ecg_suspects", [])))
                ica.exclude = suspects
                ica.save(out / results.ICA_FILE, overwrite=True, verbose="error")
                topomaps = worker.draw(out / results.ICA_FILE, out) if worker and no_positions is None else None
                # labels exclude nothing without a threshold: then they are computed beside the plots in the
                # worker, or after the plots for a long recording (its labelling copy never beside the plots' epochs)
                labelling = worker.submit(label_in_worker, str(out / results.ICA_FILE),
                                          params.replace(base_dir=os.path.abspath(params.base_dir)).to_json(),
                                          network) if worker and later and not long else None
                by_label: list[int] = []
                if not later:
                    with step("label", folder, progress) as t:
                        labels = _label(ica, params, network, verbose)
                    timings["label_s"] = t["seconds"]
                    by_label = labels_mod.excluded_by(labels, params.label_threshold)
                    if by_label:
                        ica.exclude = sorted(set(suspects) | set(by_label))
                        ica.save(out / results.ICA_FILE, overwrite=True, verbose="error")
                # MNE's ICA section of the report (0.5 s of drawing) too, from the saved ICA, beside the plots
                section = worker.submit(report_section_from_file, str(out / results.ICA_FILE), report.title(params),
                                        {"exclude": list(ica.exclude), "topomaps_skipped": no_positions, **scores}
                                        ) if worker else None
                with step("plot", folder, progress) as t:
                    drawn = plot(ica, raw, out, list(ica.exclude), no_positions, topomaps)
                    ica_section = _from_worker(section, "the report's ICA section")
                timings["plot_s"] = t["seconds"]
            explained = _explained_variance(ica, raw, params)
            if labelling is not None:
                with step("label", folder, progress) as t:
                    labels = _labels_from_worker(labelling, caught, ica, params, network, verbose)
                timings["label_wait_s"] = t["seconds"]
            elif later:
                with step("label", folder, progress) as t:
                    _release_memory()  # the plots' epochs and figures: gone before the labelling copy is read
                    labels = _label(ica, params, network, verbose)
                timings["label_s"] = t["seconds"]
            _log_labels(labels)
            max_iter = ica.max_iter if isinstance(ica.max_iter, int) else None
            metrics: dict[str, Any] = {
                "method": params.method,
                "n_components": int(ica.n_components_),
                "fit_time_s": round(timings["fit_s"], 3),
                "n_iter": int(ica.n_iter_),
                "max_iter": max_iter,
                # MNE's infomax reports n_iter_ == max_iter whether or not it converged: no signal there
                "converged": None if params.method == "infomax" else bool(max_iter is None or ica.n_iter_ < max_iter),
                "explained_variance": explained,
                "channel_types": list(analysed_types(params.channel_type)),
                "filtered": {"highpass": float(raw.info["highpass"]), "lowpass": float(raw.info["lowpass"])},
                "n_channels": len(ica.ch_names),
                "n_samples": int(raw.n_times),
                "sfreq": float(raw.info["sfreq"]),
                "duration_s": float(raw.times[-1]),
                "blas_threads": blas_threads_for(raw, blas_threads),
                "exclude": [int(i) for i in ica.exclude],
                "excluded_by_labels": by_label,
                "labels": labels,
                "steps_s": {k: round(v, 3) for k, v in timings.items()},
                "preprocessing": prepared.source,
                "versions": versions(),
                "host": socket.gethostname(),
                **scores,
                **{k: v for k, v in drawn.items() if k != "figures"},
            }
            for text in outcome_warnings(params, metrics):
                caught.add(text)
            metrics["warnings"] = caught.messages
            with step("report", folder, progress) as t:
                report.build(params, metrics, out, drawn["figures"], ica, ica_section=ica_section)
            metrics["steps_s"]["report_s"] = round(t["seconds"], 3)
    finally:
        if worker is not None:
            worker.close()
    metrics["warnings"] = caught.messages
    metrics["outcome"] = "succeeded with warnings" if caught.messages else "succeeded"
    results.write_json(out / results.METRICS_FILE, metrics)  # atomic: a cut write never leaves half a file
    if folder is not None:
        folder.set_status(folder.status.get("state", "running"), warnings=caught.messages)
    if params.channel_type in ("eeg", "meg", "mag", "grad") or labels:
        results.write_components_tsv(out / results.COMPONENTS_TSV, int(ica.n_components_), _bad_reasons(metrics),
                                     labels=labels)
    return AnalysisResult(ica=ica, raw=raw, metrics=metrics, folder=out, figures=drawn["figures"])


#: a young (generation 0) collection after this many allocations during a run (Python's default: 700)
YOUNG_COLLECTION_ALLOCATIONS = 50_000


@contextlib.contextmanager
def _rare_full_collections() -> Iterator[None]:
    """Python's full (generation 2) collections walk every object the imported libraries made (about 200,000):
    seven of them cost 0.7 s of a long run. Young garbage is collected every 50,000 allocations rather than 700
    (as in a run's kernel, :mod:`labkit.runners.kernel`: 0.3 s of a long in-process run, same peak memory), a full
    collection runs where the run asks for one (:func:`_release_memory`), and the thresholds are restored
    afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_COLLECTION_ALLOCATIONS), before[1], max(before[2], 1000))
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _release_memory() -> None:
    """Collect reference cycles and hand freed heap back to the system (glibc), so a long recording's
    next copy reuses that memory instead of adding to the peak."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _label(ica: mne.preprocessing.ICA, params: IcaParams, network: str | None,
           verbose: bool | str | None) -> dict[str, Any] | None:
    """Labels from the network, or None with a warning saying why there are none.

    The network's copy is read again from the file (analysed channels only, unfiltered) rather
    than kept from before the filter: a long recording is never held twice during the fit.
    """
    from labkit.analysis import labels as labels_mod

    if network is None:
        logger.info("labels: no labelling network for channel type %s", params.channel_type)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same reading warnings were captured by the load step
            unfiltered = load(params, verbose="error", scoring=False)  # no EOG/ECG: never loaded to be dropped
        if set(unfiltered.get_channel_types()) - set(analysed_types(params.channel_type)):  # MEG reference channels
            unfiltered.pick(list(analysed_types(params.channel_type)), verbose="error")  # (a pick copies the data)
        no_positions = recording.ensure_positions(unfiltered, params.channel_type)
        if no_positions:
            raise labels_mod.LabelsUnavailable(f"{network} reads the components' maps, and {no_positions}")
        return labels_mod.label(ica, unfiltered, network, verbose=verbose)
    except labels_mod.LabelsUnavailable as err:
        warnings.warn(f"components not labelled: {err}", stacklevel=2)
    except ImportError as err:
        warnings.warn(f"components not labelled: {network} needs the package {err.name!r} (pip install mne-icalabel "
                      "onnxruntime)", stacklevel=2)
    return None


def _labels_from_worker(labelling: "Future[Any]", caught: WarningLog, ica: mne.preprocessing.ICA,
                        params: IcaParams, network: str, verbose: bool | str | None) -> dict[str, Any] | None:
    """The worker's labels and warnings; if the worker failed, label here instead."""
    got = _from_worker(labelling, "labelling", timeout=600)
    if got is None:
        return _label(ica, params, network, verbose)
    found, messages = got
    for message in messages:
        caught.add(message)
    return found


def _from_worker(job: "Future[Any] | None", what: str, timeout: float = 300) -> Any:
    """A worker's result, or None (said in the log) when there is no worker or it failed: then it is done here."""
    if job is None:
        return None
    try:
        return job.result(timeout=timeout)
    except Exception as err:
        logger.warning("%s in a worker process failed (%s: %s); done here instead", what, type(err).__name__, err)
        return None


def _log_labels(labels: dict[str, Any] | None) -> None:
    if labels:
        logger.info("labels: %s on a copy of the data (%s), for labelling only; %s", labels["network"],
                    labels["preprocessing"], ", ".join(f"ICA{r['component']:03d} {r['label']} {r['probability']:.2f}"
                                                       for r in labels["labels"]))


def _bad_reasons(metrics: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for kind in ("eog", "ecg"):
        for i in metrics.get(f"{kind}_suspects", []):
            out[int(i)] = (out[int(i)] + "+" if int(i) in out else "") + f"{kind.upper()} suspect"
    for i in metrics.get("excluded_by_labels", []):
        out.setdefault(int(i), "label at or above label_threshold")
    return out


#: samples per piece when the data's second moments are summed for the explained variance
VARIANCE_CHUNK = 50_000


def _explained_variance(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, params: IcaParams) -> float:
    """Share of the analysed data's variance the components explain (MEG: the magnetometers', MNE reports per type).

    MNE's ``get_explained_variance_ratio`` (1 - mean over samples of the across-channel variance of the
    residual, over the same of the data) back-projects a copy of the whole recording: about four copies
    of a long one at once, and 0.6 s. Its back-projection is affine per sample (x -> A x + b), so for a
    long recording MNE itself maps a basis to find A and b, and both means come from the data's mean and
    second moments, summed piece by piece: the same ratio, to rounding, in a tenth of the time and no copy.
    """
    kind = _var_type(params)
    if raw.n_times <= VARIANCE_CHUNK:
        return float(ica.get_explained_variance_ratio(raw, ch_type=kind).get(kind, float("nan")))
    n = len(raw.ch_names)
    basis = mne.io.RawArray(np.hstack([np.zeros((n, 1)), np.eye(n)]), raw.info, verbose="error")
    back = ica.apply(basis, include=list(range(ica.n_components_)), exclude=[], n_pca_components=0,
                     verbose="error").get_data()
    offset, linear = back[:, 0], back[:, 1:] - back[:, :1]
    rows = [i for i in mne.channel_indices_by_type(raw.info).get(kind, []) if raw.ch_names[i] not in raw.info["bads"]]
    if not rows:
        return float("nan")
    mean = raw._data.mean(axis=1)
    moments = np.zeros((n, n))
    for start in range(0, raw.n_times, VARIANCE_CHUNK):
        piece = raw._data[:, start:start + VARIANCE_CHUNK] - mean[:, None]
        moments += piece @ piece.T
    centre = np.eye(len(rows)) / len(rows) - 1.0 / len(rows) ** 2  # y @ centre @ y: the variance across rows

    def summed_variance(lin: np.ndarray, shift: np.ndarray) -> float:
        """Sum over samples of the across-row variance of lin @ x - shift."""
        at_mean = lin @ mean - shift
        return float(np.trace(centre @ lin @ moments @ lin.T) + raw.n_times * at_mean @ centre @ at_mean)

    total = summed_variance(np.eye(n)[rows], np.zeros(len(rows)))
    residual = summed_variance((np.eye(n) - linear)[rows], offset[rows])  # x - (A x + b)
    return 1.0 - residual / total if total else float("nan")


def _var_type(params: IcaParams) -> str:
    return "mag" if params.channel_type == "meg" else params.channel_type
