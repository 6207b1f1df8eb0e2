"""The run's labelling step: a copy of the recording for the network, in the run or in a worker beside it.

Labels exclude nothing without ``label_threshold``: then they can be computed beside the plots
(a short recording, in a worker of :mod:`labkit.analysis.beside`) or after them (a long one:
its labelling copy is never held beside the plots' epochs). With a threshold they come before
the plots, which show what they excluded.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import Future
from typing import Any

import mne

from labkit.analysis import beside, labels, recording
from labkit.analysis.figures import saved_ica
from labkit.analysis.loading import analysed_types, load
from labkit.analysis.mnelog import quiet
from labkit.analysis.outcome import WarningLog
from labkit.params import IcaParams

logger = logging.getLogger("labkit.analysis.ica")  # the run's log names the analysis, as it did


def label_here(ica: mne.preprocessing.ICA, params: IcaParams, network: str | None) -> dict[str, Any] | None:
    """Labels from the network, or None with a warning saying why there are none.

    The network's copy is read again from the file (analysed channels only, unfiltered) rather
    than kept from before the filter: a long recording is never held twice during the fit.
    """
    if network is None:
        logger.info("labels: no labelling network for channel type %s", params.channel_type)
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same reading warnings were captured by the load step
            unfiltered = load(params, verbose="error", scoring=False)  # no EOG/ECG: never loaded to be dropped
        if set(unfiltered.get_channel_types()) - set(analysed_types(params.channel_type)):  # MEG reference channels
            with quiet():
                unfiltered.pick(list(analysed_types(params.channel_type)))  # (a pick copies the data)
        no_positions = recording.ensure_positions(unfiltered, params.channel_type)
        if no_positions:
            raise labels.LabelsUnavailable(f"{network} reads the components' maps, and {no_positions}")
        return labels.label(ica, unfiltered, network)
    except labels.LabelsUnavailable as err:
        warnings.warn(f"components not labelled: {err}", stacklevel=2)
    except ImportError as err:
        warnings.warn(f"components not labelled: {network} needs the package {err.name!r} (pip install mne-icalabel "
                      "onnxruntime)", stacklevel=2)
    return None


def label_in_worker(ica_file: str, params_json: str, network: str) -> tuple[dict[str, Any] | None, list[str]]:
    """In a worker process: label the saved ICA; return the labels and the warnings raised meanwhile."""
    params = IcaParams.from_json(params_json)
    caught = WarningLog()
    with caught.capturing(), mne.use_log_level("warning"):
        found = label_here(saved_ica(ica_file), params, network)
    return found, caught.messages


def labels_from_worker(labelling: "Future[Any]", caught: WarningLog, ica: mne.preprocessing.ICA,
                       params: IcaParams, network: str) -> dict[str, Any] | None:
    """The worker's labels and warnings; if the worker failed, label here instead."""
    got = beside.result(labelling, "labelling", timeout=600)
    if got is None:
        return label_here(ica, params, network)
    found, messages = got
    for message in messages:
        caught.add(message)
    return found


def log_labels(found: dict[str, Any] | None) -> None:
    if found:
        by = found.get("labeller") or {}
        logger.info("labels: %s on a copy of the data (%s), for labelling only (%s %s); %s", found["network"],
                    found["preprocessing"], by.get("package"), by.get("version"),
                    ", ".join(f"ICA{r['component']:03d} {r['label']} {r['probability']:.2f}" for r in found["labels"]))
