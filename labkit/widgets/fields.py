"""The form's fields in the researcher's words: on-screen labels, the range each allows for the chosen
recording, messages that name the label and the typed value, and what the header already predicts.

Every rule comes from :func:`labkit.schema.check_draft` (the one source every face asks); this module
only says it with the form's labels.
"""

from __future__ import annotations

import re
from typing import Any

import ipywidgets as W
import traitlets

from labkit.analysis.labels import MEGNET_MIN_SAMPLES, MEGNET_SFREQ, network_for
from labkit.analysis.outcome import outcome_warnings
from labkit.analysis.recording import RecordingInfo
from labkit.errors import ParameterError
from labkit.params import IcaParams

#: field -> the label shown beside its control (messages use these, never the parameter names)
LABELS = {
    "raw_file_path": "Recording", "method": "Method", "extended": "Extended", "ortho": "Orthogonal",
    "channel_type": "Channel type", "n_components": "Components", "crop_tmin": "Crop start (s)",
    "crop_tmax": "Crop end (s)", "filter_fmin": "High-pass (Hz)", "filter_fmax": "Low-pass (Hz)",
    "random_state": "Random seed", "max_iter": "Max iterations", "label_threshold": "Label threshold",
}
#: the sections of the form and their fields, in order (Advanced folds away)
SECTIONS = {
    "Filter": ("filter_fmin", "filter_fmax"),
    "ICA": ("method", "channel_type", "n_components", "crop_tmin", "crop_tmax"),
    "Advanced": ("extended", "ortho", "random_state", "max_iter", "label_threshold"),
}
#: field -> the fields whose rules depend on it: touching one shows their problems too
RELATED = {"channel_type": ("n_components",), "filter_fmin": ("filter_fmax",), "filter_fmax": ("filter_fmin",),
           "crop_tmin": ("crop_tmax",), "crop_tmax": ("crop_tmin",), "method": ("extended", "ortho")}
#: the prototype's analysed span (crop end) when the recording is longer
DEFAULT_CROP_END = IcaParams.__dataclass_fields__["crop_tmax"].default
_NAMES = re.compile(r"\b(" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")\b")


class TypedText(W.Text):
    """A text box that keeps exactly what was typed; a number set from code is shown as its text."""

    value = traitlets.CUnicode("", help="what the user typed").tag(sync=True)


def in_words(text: str) -> str:
    """``text`` with parameter names replaced by their on-screen labels ("greater than High-pass (Hz) (1.0 Hz)")."""
    return _NAMES.sub(lambda m: LABELS[m.group(1)], text)


def typed_text(value: Any) -> str:
    return "nothing" if value in (None, "") else f"{value}"


def message(err: ParameterError, typed: Any) -> str:
    """One problem as the form says it: the label, what the user typed, what is allowed."""
    label = LABELS.get(err.field, err.field)
    allowed = err.allowed if isinstance(err.allowed, str) else ", ".join(map(str, err.allowed))
    return f"{label}: got {typed_text(typed)}; allowed: {in_words(allowed)}."


def hints(info: RecordingInfo | None, channel_type: str) -> dict[str, str]:
    """Field -> the range it allows for this recording, shown under the field ("1 to 124.9 Hz")."""
    out = {"random_state": "0 to 4294967295; empty: a random seed", "max_iter": "auto, or a whole number from 1",
           "label_threshold": "above 0, up to 1; empty: labels only advise",
           "extended": "picard and infomax only", "ortho": "picard only"}
    if info is None:
        return out
    rank = info.rank(channel_type) if channel_type else 0
    out.update({
        "n_components": f"2 to {rank} (the rank of the good {channel_type} channels)" if rank >= 2 else "",
        "crop_tmin": f"0 to below {info.end:.3f} s",
        "crop_tmax": f"after the start, up to {info.end:.3f} s (the recording's end); empty: to the end",
        "filter_fmin": "above 0 Hz, below the low-pass",
        "filter_fmax": f"above the high-pass, below {info.nyquist:g} Hz (the Nyquist frequency)",
    })
    return out


def span_end(params: Any, info: RecordingInfo) -> float:
    """Where the analysed span ends: the crop end, or the recording's end when it is earlier or empty."""
    return info.end if params.crop_tmax is None else min(params.crop_tmax, info.end)


def predicted_warnings(params: Any, info: RecordingInfo) -> list[str]:
    """What a run of ``params`` would warn about, known from the header alone (before any run)."""
    out = []
    end = span_end(params, info)
    if params.crop_tmax is not None and params.crop_tmax > info.end:
        out.append(f"Crop end (s) {params.crop_tmax:g} is past the recording's end: the run analyses up to "
                   f"{info.end:.3f} s")
    n_samples = max(0, int(round((end - params.crop_tmin) * info.sfreq)) + 1)
    out += outcome_warnings(params, {"n_components": params.n_components, "n_samples": n_samples})
    min_s = MEGNET_MIN_SAMPLES / MEGNET_SFREQ
    if network_for(params.channel_type) == "megnet" and end - params.crop_tmin < min_s:
        out.append(f"MEGnet labels components only with at least {min_s:g} s of data; the analysed span is "
                   f"{end - params.crop_tmin:.1f} s, so components will not be labelled")
    return [in_words(w) for w in out]


def recording_defaults(info: RecordingInfo, current: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The header-dependent values for a newly chosen recording, and one sentence per value set.

    Nothing carries over from the previous recording: the crop is the prototype's span or the whole
    recording when it is shorter, the channel type one the recording has, the components at most its rank.
    """
    counts = {t: n for t, n in info.ica_types.items()}
    preferred = [t for t in (current.get("channel_type"), "eeg", "meg", "mag", "grad") if t in counts]
    channel_type = preferred[0] if preferred else (next(iter(counts)) if counts else "")
    values: dict[str, Any] = {"channel_type": channel_type, "crop_tmin": "0"}
    said = []
    if info.end <= DEFAULT_CROP_END:
        values["crop_tmax"] = f"{info.end:g}"
        said.append(f"Crop end set to {info.end:g} s, the recording's end (it is shorter than the "
                    f"{DEFAULT_CROP_END:g} s default span).")
    else:
        values["crop_tmax"] = f"{DEFAULT_CROP_END:g}"
        said.append(f"Crop end set to {DEFAULT_CROP_END:g} s, the default span (the recording lasts "
                    f"{info.duration:.1f} s; empty the field to analyse all of it).")
    rank = info.rank(channel_type) if channel_type else 0
    try:
        wanted = int(str(current.get("n_components", "")).strip())
    except ValueError:
        wanted = IcaParams.__dataclass_fields__["n_components"].default
    if 2 <= rank < wanted:
        values["n_components"] = str(rank)
        said.append(f"Components set to {rank}, the most the {channel_type} channels allow.")
    try:
        fmax = float(str(current.get("filter_fmax", "")).strip())
    except ValueError:
        fmax = None
    if fmax is not None and fmax >= info.nyquist:
        new = IcaParams.__dataclass_fields__["filter_fmax"].default
        new = new if new < info.nyquist else round(info.nyquist * 0.9, 1)
        values["filter_fmax"] = f"{new:g}"
        said.append(f"Low-pass set to {new:g} Hz, below this recording's Nyquist frequency ({info.nyquist:g} Hz).")
    return values, said
