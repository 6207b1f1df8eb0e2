"""The analysis: small named steps from a parameter set to a fitted ICA, scores, figures and a report.

Each step is a plain function that logs what it did and how long it took, so the
notebook template, the widgets and benchmarks call the same code. :func:`run`
chains them and writes everything into a :class:`~labkit.results.folder.RunFolder`;
the work beside its fit and plots goes through one executor, :mod:`labkit.analysis.beside`.
The steps live in their own modules (:mod:`~labkit.analysis.loading`, :mod:`~labkit.analysis.figures`,
:mod:`~labkit.analysis.labelling`, :mod:`~labkit.analysis.outcome`) and are named here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import mne
import numpy as np
from mne.utils import verbose as mne_verbose
from threadpoolctl import threadpool_limits

from labkit.analysis import beside as beside_mod
from labkit.analysis import cache, labelling, memory, recording
from labkit.analysis import labels as labels_mod
from labkit.analysis import report as report_mod
from labkit.analysis.figures import draw_topomaps_from_file, plot, report_section_from_file, save_ica
from labkit.analysis.loading import (  # noqa: F401  (the steps, by the names callers know)
    analysed_types,
    check_against,
    check_finite,
    kept_channels,
    load,
    load_checked,
    preprocess,
)
from labkit.analysis.memory import YOUNG_COLLECTION_ALLOCATIONS  # noqa: F401
from labkit.analysis.mnelog import quiet
from labkit.analysis.outcome import (  # noqa: F401  (MIN_SAMPLES_...: where callers know it)
    MIN_SAMPLES_PER_COMPONENT_SQUARED,
    WarningLog,
    bad_reasons,
    outcome_warnings,
)
from labkit.analysis.variance import explained_variance
from labkit.errors import ParameterError
from labkit.params import IcaParams
from labkit.results.components import write_components_tsv
from labkit.results.folder import RunFolder
from labkit.results.layout import COMPONENTS_TSV, ICA_FILE, METRICS_FILE, write_json

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
def step(name: str, folder: RunFolder | None = None,
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
    return raw if stride == 1 else mne.io.RawArray(raw._data[:, ::stride], raw.info)


@mne_verbose
def fit(raw: mne.io.BaseRaw, params: IcaParams, *, blas_threads: int = DEFAULT_BLAS_THREADS,
        verbose: bool | str | None = None) -> mne.preprocessing.ICA:
    """Fit ICA on the analysed channels; refuse more components than the data's rank."""
    types = analysed_types(params.channel_type)
    with quiet():  # from the data: catches re-referencing
        rank = mne.compute_rank(_rank_sample(raw), rank=None)
    type_rank = sum(v for k, v in rank.items() if k in types or (k == "meg" and params.channel_type in ("meg", "mag", "grad")))
    if type_rank and params.n_components > type_rank:
        raise ParameterError("n_components", params.n_components,
                             f"at most the rank of the {params.channel_type} data ({type_rank})")
    ica = mne.preprocessing.ICA(
        n_components=params.n_components, method=params.method, fit_params=params.mne_fit_params or None,
        max_iter=params.max_iter, random_state=params.random_state,
    )
    with threadpool_limits(limits=blas_threads_for(raw, blas_threads)):
        ica.fit(raw, picks=list(types))
    return ica


@mne_verbose
def score(ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, *, verbose: bool | str | None = None) -> dict[str, Any]:
    """Correlate components with EOG/ECG channels when they exist; MNE flags the suspects."""
    out: dict[str, Any] = {}
    types = set(raw.get_channel_types())
    if "eog" in types:
        idx, scores = ica.find_bads_eog(raw)
        out["eog_suspects"] = [int(i) for i in idx]
        out["eog_scores"] = np.atleast_2d(scores).tolist()
    if "ecg" in types:
        idx, scores = ica.find_bads_ecg(raw, method="correlation", threshold="auto")
        out["ecg_suspects"] = [int(i) for i in idx]
        out["ecg_scores"] = np.asarray(scores).tolist()
    if not out:
        logger.info("no EOG or ECG channels: components are not scored")
    return out


def versions() -> dict[str, str]:
    from labkit.results.provenance import package_version

    return {"python": platform.python_version(), "mne": mne.__version__,
            **{dist: package_version(dist) for dist in ("python-picard", "labkit", "scikit-learn", "numpy")}}


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


@mne_verbose
def run(params: IcaParams, out_dir: str | os.PathLike, *, folder: RunFolder | None = None,
        blas_threads: int = DEFAULT_BLAS_THREADS, progress: Callable[[str], None] | None = None,
        beside: str | None = None, verbose: bool | str | None = None) -> AnalysisResult:
    """Run every step and write params, metrics, figures, labels, the ICA and the report into ``out_dir``.

    Every warning (MNE's, the fit's, labkit's own) is captured into ``run.log``, ``metrics.json``
    and ``status.json``: a run with warnings is ``succeeded with warnings``, never plain ``succeeded``.
    ``verbose`` is MNE's level for the whole run (:mod:`labkit.analysis.mnelog`); ``beside`` is where
    the topomaps, the report's ICA section and a short recording's labels are made
    (:mod:`labkit.analysis.beside`: ``process`` or ``inline``; default :func:`~labkit.analysis.beside.default_policy`).
    """
    steps = _Run(params, Path(out_dir), folder, progress, blas_threads, beside)
    try:
        with steps.caught.capturing(), memory.rare_full_collections():
            with cache.slot(params) as prepared:  # a sweep's runs that share the preprocessing load and filter once
                raw, no_positions = steps.load(prepared)
                steps.filter(raw, prepared)  # the cache's write runs beside the fit
                steps.start_workers(raw, before_fit=True)
                ica = steps.fit(raw)
            steps.start_workers(raw, before_fit=False, no_positions=no_positions)
            with steps.one_blas_thread():
                scores = steps.score(ica, raw)
                side = steps.start_side_work(ica, scores, no_positions)
                drawn, section = steps.plot(ica, raw, no_positions, side)
            explained = explained_variance(ica, raw, params)
            labels = steps.labels_after_plots(ica, side)
            metrics = steps.metrics(ica, raw, scores, drawn, explained, labels, prepared.source)
            steps.report(metrics, drawn, ica, section)
    finally:
        steps.close()
    steps.write(metrics, ica, labels)
    return AnalysisResult(ica=ica, raw=raw, metrics=metrics, folder=steps.out, figures=drawn["figures"])


@dataclass
class _SideWork:
    """What was handed to the executor beside the plots, and the labels if they came before them."""

    topomaps: Any = None
    labelling: Any = None
    section: Any = None
    labels: dict[str, Any] | None = None
    by_label: list[int] = field(default_factory=list)
    labelled: bool = False


class _Run:
    """One run's steps and what they share (the folder, timings, warnings, the executor beside them)."""

    def __init__(self, params: IcaParams, out: Path, folder: RunFolder | None,
                 progress: Callable[[str], None] | None, blas_threads: int, policy: str | None) -> None:
        self.params, self.out, self.folder, self.progress = params, out, folder, progress
        self.blas_threads, self.policy = blas_threads, policy
        out.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.caught = WarningLog()
        self.workers: beside_mod.Beside | None = None
        self.long = False
        self.network = labels_mod.network_for(params.channel_type)
        #: labels exclude nothing without a threshold: then they may wait until the plots are drawn
        self.later = self.network is not None and params.label_threshold is None

    @contextlib.contextmanager
    def step(self, name: str, key: str | None = None) -> Iterator[None]:
        with step(name, self.folder, self.progress) as t:
            yield
        self.timings[key or f"{name}_s"] = t["seconds"]

    def load(self, prepared: cache.Slot) -> tuple[mne.io.BaseRaw, str | None]:
        """The recording, from the cache (checked and told as the run that computed it was) or read and checked."""
        self._first_warning = len(self.caught.messages)
        with self.step("load"):
            if prepared.hit:
                raw, self.header = prepared.raw, recording.RecordingInfo(**prepared.notes["header"])
                prepared.raw = None  # the run holds the one reference: it may let the data go
                check_against(self.params, self.header)
                for text in prepared.notes["warnings"]:
                    self.caught.add(text)
            else:
                raw, self.header = load_checked(self.params)
                check_finite(raw)
            no_positions = recording.ensure_positions(raw, self.params.channel_type)
        self.long = raw._data.nbytes > LONG_RECORDING_BYTES
        return raw, no_positions

    def filter(self, raw: mne.io.BaseRaw, prepared: cache.Slot) -> None:
        with self.step("filter"):
            if not prepared.hit:
                preprocess(raw, self.params)
                prepared.store(raw, {"warnings": self.caught.messages[self._first_warning:],
                                     "header": dataclasses.asdict(self.header)})

    def start_workers(self, raw: mne.io.BaseRaw, *, before_fit: bool, no_positions: str | None = None) -> None:
        """The executor beside the plots. A short recording's starts before the fit (its start-up overlaps it);
        a long recording's fit wants every core and the memory its copies take, so its executor (one worker, the
        topomaps only: it never holds the recording) starts after the fit, and only when its labels wait."""
        if before_fit and not self.long:
            self.workers = beside_mod.Beside(self.policy)
        elif not before_fit and self.long and self.later and no_positions is None:
            self.workers = beside_mod.Beside(self.policy, workers=1, preload=("labkit.analysis.ica",))

    @contextlib.contextmanager
    def one_blas_thread(self) -> Iterator[None]:
        """Beside an executor, the score and plots keep one BLAS thread (idle BLAS threads spin on busy cores);
        a long recording's executor closes at the end of the block, before its labelling copy is read."""
        if self.workers is None:
            yield
            return
        with threadpool_limits(limits=1):
            yield
        if self.long:
            self.workers.close()

    def fit(self, raw: mne.io.BaseRaw) -> mne.preprocessing.ICA:
        with self.step("fit"):
            return fit(raw, self.params, blas_threads=self.blas_threads)

    def score(self, ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw) -> dict[str, Any]:
        with self.step("score"):
            scores = score(ica, raw)
        ica.exclude = sorted(set(scores.get("eog_suspects", [])) | set(scores.get("ecg_suspects", [])))
        save_ica(ica, self.out / ICA_FILE)
        return scores

    def start_side_work(self, ica: mne.preprocessing.ICA, scores: dict[str, Any],
                        no_positions: str | None) -> _SideWork:
        """Hand the topomaps, a short recording's labels and the report's ICA section to the executor;
        labels with a threshold come first, here (they decide what is excluded, which the plots show)."""
        side, ica_file, workers = _SideWork(), str(self.out / ICA_FILE), self.workers
        if workers is not None and no_positions is None:
            side.topomaps = workers.submit(draw_topomaps_from_file, ica_file, str(self.out))
        if workers is not None and self.later and not self.long:
            params = self.params.replace(base_dir=os.path.abspath(self.params.base_dir))
            side.labelling = workers.submit(labelling.label_in_worker, ica_file, params.to_json(), self.network)
        if not self.later:
            with self.step("label"):
                side.labels = labelling.label_here(ica, self.params, self.network)
            side.labelled = True
            side.by_label = labels_mod.excluded_by(side.labels, self.params.label_threshold)
            if side.by_label:
                ica.exclude = sorted(set(ica.exclude) | set(side.by_label))
                save_ica(ica, self.out / ICA_FILE)
        if workers is not None:  # MNE's ICA section of the report (0.5 s of drawing), from the saved ICA
            side.section = workers.submit(report_section_from_file, ica_file, report_mod.title(self.params),
                                          {"exclude": list(ica.exclude), "topomaps_skipped": no_positions, **scores})
        self.by_label = side.by_label
        return side

    def plot(self, ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, no_positions: str | None,
             side: _SideWork) -> tuple[dict[str, Any], mne.Report | None]:
        with self.step("plot"):
            drawn = plot(ica, raw, self.out, list(ica.exclude), no_positions, side.topomaps)
            section = beside_mod.result(side.section, "the report's ICA section")
        return drawn, section

    def labels_after_plots(self, ica: mne.preprocessing.ICA, side: _SideWork) -> dict[str, Any] | None:
        """The labels: the executor's (waited for), or computed now, after the plots' memory is freed."""
        found = side.labels
        if side.labelling is not None:
            with self.step("label", "label_wait_s"):
                found = labelling.labels_from_worker(side.labelling, self.caught, ica, self.params, self.network)
        elif not side.labelled:
            with self.step("label"):
                memory.release_memory()  # the plots' epochs and figures: gone before the labelling copy is read
                found = labelling.label_here(ica, self.params, self.network)
        labelling.log_labels(found)
        return found

    def metrics(self, ica: mne.preprocessing.ICA, raw: mne.io.BaseRaw, scores: dict[str, Any],
                drawn: dict[str, Any], explained: float, labels: dict[str, Any] | None, source: str) -> dict[str, Any]:
        params = self.params
        max_iter = ica.max_iter if isinstance(ica.max_iter, int) else None
        metrics: dict[str, Any] = {
            "method": params.method,
            "n_components": int(ica.n_components_),
            "fit_time_s": round(self.timings["fit_s"], 3),
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
            "blas_threads": blas_threads_for(raw, self.blas_threads),
            "exclude": [int(i) for i in ica.exclude],
            "excluded_by_labels": self.by_label,
            "labels": labels,
            "steps_s": {k: round(v, 3) for k, v in self.timings.items()},
            "preprocessing": source,
            "versions": versions(),
            "host": socket.gethostname(),
            **scores,
            **{k: v for k, v in drawn.items() if k != "figures"},
        }
        for text in outcome_warnings(params, metrics):
            self.caught.add(text)
        metrics["warnings"] = self.caught.messages
        return metrics

    def report(self, metrics: dict[str, Any], drawn: dict[str, Any], ica: mne.preprocessing.ICA,
               section: mne.Report | None) -> None:
        with step("report", self.folder, self.progress) as t:
            report_mod.build(self.params, metrics, self.out, drawn["figures"], ica, ica_section=section)
        metrics["steps_s"]["report_s"] = round(t["seconds"], 3)

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()

    def write(self, metrics: dict[str, Any], ica: mne.preprocessing.ICA, labels: dict[str, Any] | None) -> None:
        """metrics.json (atomic: a cut write never leaves half a file), the folder's status, components.tsv."""
        metrics["warnings"] = self.caught.messages
        metrics["outcome"] = "succeeded with warnings" if self.caught.messages else "succeeded"
        write_json(self.out / METRICS_FILE, metrics)
        if self.folder is not None:
            self.folder.set_status(self.folder.status.get("state", "running"), warnings=self.caught.messages)
        if self.params.channel_type in ("eeg", "meg", "mag", "grad") or labels:
            write_components_tsv(self.out / COMPONENTS_TSV, int(ica.n_components_), bad_reasons(metrics), labels=labels)
