"""The demo recording's model: a known linear mixture of brain and artifact sources, made deterministically.

:mod:`labkit.analysis.datasets` writes it to disk with its ground truth; the model itself is described there.
"""

from __future__ import annotations

from typing import Any

import mne
import numpy as np
from mne.utils import verbose as mne_verbose

#: the classic 10-10 cap without AFz (the ground electrode on many caps): 60 channels
EEG_CH_NAMES: tuple[str, ...] = (
    "Fp1", "Fpz", "Fp2",
    "AF7", "AF3", "AF4", "AF8",
    "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8",
    "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8",
    "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8",
    "PO7", "PO3", "POz", "PO4", "PO8",
    "O1", "Oz", "O2",
)
EOG_CH_NAMES = ("EOG1", "EOG2")  # vertical, horizontal
ECG_CH_NAME = "ECG"
#: the EEG channel carrying the slow random-walk drift
DRIFT_CHANNEL = "T7"
LINE_FREQ = 50.0
ARTIFACT_NAMES = ("blink", "saccade", "heartbeat", "line", "drift")

# Brain rhythms: (name, electrode the dipole sits under, depth as a fraction of the
# head radius from the sphere's centre, orientation, centre Hz, bandwidth Hz,
# burstiness, std in volts at the channel where it is largest).
# Orientation "radial" points at the electrode; a 3-vector is a fixed tangential tilt.
_RHYTHMS: tuple[tuple[str, str, float, Any, float, float, float, float], ...] = (
    ("alpha_left", "PO3", 0.70, "radial", 10.0, 1.2, 0.6, 12e-6),
    ("alpha_right", "PO4", 0.70, "radial", 10.4, 1.2, 0.6, 11e-6),
    ("mu_left", "C3", 0.72, (0.0, 1.0, 0.3), 11.5, 1.0, 0.8, 4e-6),
    ("beta_left", "C3", 0.72, "radial", 20.0, 4.0, 1.0, 3e-6),
    ("beta_right", "C4", 0.72, "radial", 22.0, 4.0, 1.0, 3e-6),
    ("theta_frontal", "Fz", 0.55, "radial", 6.0, 1.2, 0.7, 5e-6),
)
_N_BACKGROUND = 24
_BACKGROUND_STD = 5e-6  # each 1/f dipole, at its largest channel
_BACKGROUND_BURST = 0.5  # slow amplitude modulation: real EEG is not stationary Gaussian noise

# Eye model, relative to the nasion in MNE's head frame (x right, y front, z up; metres):
# eyeball centres, and the EOG electrode sites (above/below the left eye; outer canthi).
_EYES = np.array([[-0.032, -0.022, -0.008], [0.032, -0.022, -0.008]])
_VEOG_SITES = np.array([[-0.032, -0.008, 0.016], [-0.032, -0.012, -0.036]])
_HEOG_SITES = np.array([[0.066, -0.034, -0.008], [-0.066, -0.034, -0.008]])
_BLINK_AT_FP = 100e-6  # typical blink peak at Fp1/Fp2
_SACCADE_AT_F78 = 25e-6  # a unit (~15 degree) gaze shift at F7/F8
# Heart, as the cap sees it: the cardiac currents reach the head through the neck, so the scalp field
# is modelled as an equivalent dipole at the base of the neck (head frame, origin between the ears).
# Only the horizontal part of the QRS axis is kept (left, slightly posterior, as V1-negative/V6-positive
# chest leads show): the head-foot part mostly shifts the whole head's potential, which the reference
# removes, and in this infinite-medium model it would instead draw a central bullseye that real
# cardiac field artifacts do not show. The result is a broad diagonal gradient with its extremes at
# the lower edge of the cap (P7/T7/TP7 vs F8/FT8/T8), the map of ECG components in real EEG.
_HEART_POS = np.array([-0.02, 0.0, -0.18])
_HEART_AXIS = np.array([-1.0, -0.3, 0.0])
# R peak at the most affected channel: cardiac field artifacts are ~5-20 uV, most at the sites nearest the neck;
# 25 uV keeps ICA's recovery of this diagonal map at |r| ~0.94 (20 uV gave 0.90-0.91)
_HEART_EEG_MAX = 25e-6
_ECG_R_PEAK = 1e-3
_SENSOR_NOISE = {"eeg": 1.0e-6, "eog": 5e-6, "ecg": 20e-6}

# Independent random streams per ingredient, so changing one leaves the others as they were.
_STREAMS = {name: i for i, name in enumerate(
    ("blink", "saccade", "heartbeat", "line", "drift", "rhythms", "background", "noise", "geometry",
     "line_topography"))}


@mne_verbose
def make_demo_raw(duration: float = 120.0, sfreq: float = 250.0, random_state: int = 42,
                  verbose: bool | str | int | None = "WARNING") -> tuple[mne.io.RawArray, dict[str, Any]]:
    """Return ``(raw, truth)``: a demo EEG recording and the sources and mixing behind it.

    Deterministic: the same arguments give bit-identical data. ``verbose`` (MNE's, default WARNING)
    keeps MNE's internals (forward model, RawArray) quiet, since they are not the user's business
    here; pass a level to see them.
    """
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration!r}")
    if not sfreq > 2 * LINE_FREQ:
        raise ValueError(f"sfreq must exceed {2 * LINE_FREQ:g} Hz to hold {LINE_FREQ:g} Hz line noise, got {sfreq!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative int, got {random_state!r}")
    n_times = int(round(duration * sfreq))
    if n_times < int(2 * sfreq):
        raise ValueError(f"duration must be at least 2 s, got {duration!r}")

    def rng(stream: str) -> np.random.Generator:
        return np.random.default_rng([int(random_state), _STREAMS[stream]])

    info = _make_info(sfreq)
    eeg_pos = np.array([info["chs"][i]["loc"][:3] for i in range(len(EEG_CH_NAMES))])
    brain_names, brain_mixing, brain_sources = _brain(info, eeg_pos, n_times, sfreq, rng)

    blink, blink_peaks = _blinks(rng("blink"), n_times, sfreq)
    gaze, saccade_times = _gaze(rng("saccade"), n_times, sfreq)
    heart, r_peaks = _heartbeat(rng("heartbeat"), n_times, sfreq)
    line = _line(rng("line"), n_times, sfreq)
    drift = _random_walk(rng("drift"), n_times, sfreq)

    # Topographies in volts per unit of the raw (not yet standardised) source.
    nasion = _nasion(info)
    eyes = nasion + _EYES
    up, right = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    vert, horiz = _eye_field(eeg_pos, eyes, up), _eye_field(eeg_pos, eyes, right)
    fp = [EEG_CH_NAMES.index("Fp1"), EEG_CH_NAMES.index("Fp2")]
    f78 = [EEG_CH_NAMES.index("F7"), EEG_CH_NAMES.index("F8")]
    blink_scale = _BLINK_AT_FP / vert[fp].mean()
    saccade_scale = _SACCADE_AT_F78 / np.abs(horiz[f78]).mean()
    heart_topo = _dipole_field(eeg_pos, _HEART_POS, _HEART_AXIS)
    heart_topo -= heart_topo.mean()  # only the spatial gradient survives referencing
    heart_scale = _HEART_EEG_MAX / np.abs(heart_topo).max()
    line_topo = _line_topography(rng("line_topography"), eeg_pos)
    drift_topo = np.zeros(len(EEG_CH_NAMES))
    drift_topo[EEG_CH_NAMES.index(DRIFT_CHANNEL)] = 50e-6

    artifacts = np.array([blink, gaze, heart, line, drift])
    art_mixing = np.column_stack([vert * blink_scale, horiz * saccade_scale, heart_topo * heart_scale,
                                  line_topo, drift_topo])
    # Standardise every source; move its scale into the mixing so the data do not change.
    art_std = artifacts.std(axis=1)
    artifacts /= art_std[:, None]
    art_mixing *= art_std[None, :]

    sources = np.concatenate([artifacts, brain_sources])
    mixing = np.concatenate([art_mixing, brain_mixing], axis=1)
    source_names = np.array(list(ARTIFACT_NAMES) + brain_names)

    noise_rng = rng("noise")
    eeg = mixing @ sources + _SENSOR_NOISE["eeg"] * noise_rng.standard_normal((len(EEG_CH_NAMES), n_times))

    # EOG/ECG: the same sources seen by electrodes next to the eyes and on the chest.
    veog, heog = nasion + _VEOG_SITES, nasion + _HEOG_SITES
    eog_v = (_bipolar(veog, eyes, up) * blink_scale * blink
             + _bipolar(veog, eyes, right) * saccade_scale * gaze)
    eog_h = (_bipolar(heog, eyes, right) * saccade_scale * gaze
             + _bipolar(heog, eyes, up) * blink_scale * blink)
    ecg = _ECG_R_PEAK * heart
    extra = np.array([eog_v, eog_h, ecg]) + np.array([3e-6, 3e-6, 10e-6])[:, None] * line  # mains pick-up
    extra += np.array([_SENSOR_NOISE["eog"], _SENSOR_NOISE["eog"], _SENSOR_NOISE["ecg"]])[:, None] \
        * noise_rng.standard_normal((3, n_times))

    raw = mne.io.RawArray(np.concatenate([eeg, extra]), info)

    truth: dict[str, Any] = {
        "mixing": mixing,
        "sources": sources,
        "source_names": source_names,
        "ch_names": np.array(EEG_CH_NAMES),
        "sfreq": float(sfreq),
        # extras, for checks beyond correlation: event times in seconds
        "blink_peaks": blink_peaks,
        "saccade_times": saccade_times,
        "r_peaks": r_peaks,
        "drift_channel": DRIFT_CHANNEL,
    }
    return raw, truth


# --------------------------------------------------------------------------- helpers


def _montage() -> mne.channels.DigMontage:
    """MNE's standard 10-05 positions; MNE 1.13 renamed them ``colin27_1005`` (same positions)."""
    name = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    return mne.channels.make_standard_montage(name)


def _make_info(sfreq: float) -> mne.Info:
    names = list(EEG_CH_NAMES) + list(EOG_CH_NAMES) + [ECG_CH_NAME]
    types = ["eeg"] * len(EEG_CH_NAMES) + ["eog"] * len(EOG_CH_NAMES) + ["ecg"]
    info = mne.create_info(names, sfreq, types)
    info.set_montage(_montage())
    info["line_freq"] = LINE_FREQ
    info["description"] = "labkit synthetic demo EEG (labkit.analysis.datasets); ground truth in *_truth.npz"
    return info


def _brain(info: mne.Info, eeg_pos: np.ndarray, n_times: int, sfreq: float, rng) -> tuple[
        list[str], np.ndarray, np.ndarray]:
    """Brain sources: rhythm and 1/f dipoles through a sphere-model forward solution."""
    eeg_info = mne.pick_info(info, mne.pick_types(info, eeg=True))
    radius, origin, _ = mne.bem.fit_sphere_to_headshape(eeg_info, dig_kinds=("eeg",), units="m")
    sphere = mne.make_sphere_model(origin, radius, eeg_info)

    positions, orientations, names = [], [], []
    for name, site, depth, ori, *_ in _RHYTHMS:
        direction = eeg_pos[EEG_CH_NAMES.index(site)] - origin
        direction /= np.linalg.norm(direction)
        positions.append(origin + depth * radius * direction)
        orientations.append(direction if isinstance(ori, str) else np.asarray(ori, float))
        names.append(name)
    geo = rng("geometry")
    for k in range(_N_BACKGROUND):
        direction = geo.standard_normal(3)
        direction[2] = abs(direction[2]) * 0.8 + 0.2  # upper half: under the cap
        direction /= np.linalg.norm(direction)
        positions.append(origin + geo.uniform(0.35, 0.75) * radius * direction)
        orientations.append(geo.standard_normal(3))
        names.append(f"background_{k + 1:02d}")
    rr = np.array(positions)
    nn = np.array([o / np.linalg.norm(o) for o in orientations])

    src = mne.setup_volume_source_space(pos={"rr": rr, "nn": nn}, sphere=sphere)
    fwd = mne.make_forward_solution(eeg_info, trans=None, src=src, bem=sphere, meg=False, eeg=True)
    gain = fwd["sol"]["data"].reshape(len(EEG_CH_NAMES), len(rr), 3)  # free orientation: x, y, z per dipole
    topo = np.einsum("cdk,dk->cd", gain, nn)

    target = np.array([r[-1] for r in _RHYTHMS] + [_BACKGROUND_STD] * _N_BACKGROUND)
    mixing = topo * (target / np.abs(topo).max(axis=0))[None, :]

    rhythm_rng, background_rng = rng("rhythms"), rng("background")
    series = []
    for _, _, _, _, f0, bandwidth, burst, _ in _RHYTHMS:
        carrier = _narrowband(rhythm_rng, n_times, sfreq, f0, bandwidth)
        series.append(carrier * np.exp(burst * _smooth_noise(rhythm_rng, n_times, sfreq, 0.4)))
    for _ in range(_N_BACKGROUND):
        series.append(_pink(background_rng, n_times, sfreq)
                      * np.exp(_BACKGROUND_BURST * _smooth_noise(background_rng, n_times, sfreq, 1.0)))
    sources = np.array(series)
    sources -= sources.mean(axis=1, keepdims=True)
    sources /= sources.std(axis=1, keepdims=True)
    return names, mixing, sources


def _dipole_field(points: np.ndarray, pos: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """Potential (arbitrary units) of a current dipole in an infinite homogeneous medium."""
    d = np.atleast_2d(points) - pos
    return d @ moment / np.linalg.norm(d, axis=1) ** 3


def _eye_field(points: np.ndarray, eyes: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """Both eyes rotating together (or the lid sliding): two parallel corneo-retinal dipoles."""
    return sum(_dipole_field(points, eye, moment) for eye in eyes)


def _bipolar(sites: np.ndarray, eyes: np.ndarray, moment: np.ndarray) -> float:
    """A bipolar EOG derivation: the eye field at the first site minus the second."""
    field = _eye_field(sites, eyes, moment)
    return float(field[0] - field[1])


def _nasion(info: mne.Info) -> np.ndarray:
    """The nasion in head coordinates (the montage's fiducials define the head frame)."""
    for dig in info["dig"] or []:
        if dig["kind"] == mne.io.constants.FIFF.FIFFV_POINT_CARDINAL and \
                dig["ident"] == mne.io.constants.FIFF.FIFFV_POINT_NASION:
            return np.array(dig["r"], float)
    raise RuntimeError("the montage has no nasion")  # pragma: no cover - MNE's standard montages do


def _line_topography(rng: np.random.Generator, eeg_pos: np.ndarray) -> np.ndarray:
    """Mains pick-up: a smooth spatial gradient times per-electrode impedance (lognormal), ~1 uV.

    ~1 uV is a quiet lab with good electrode contact; at 2 uV, the 50 Hz that leaks into the weak
    heartbeat component (fitted at 1-30 Hz, labelled at 1-100 Hz) made ICLabel call it line noise.
    """
    gradient = 1.0 + 0.4 * (eeg_pos - eeg_pos.mean(axis=0)) @ rng.standard_normal(3) / 0.08
    impedance = rng.lognormal(0.0, 0.5, len(eeg_pos))
    topo = np.abs(gradient) * impedance
    return 1e-6 * topo / np.median(topo)


def _spectral(rng: np.random.Generator, n_times: int, sfreq: float, shape) -> np.ndarray:
    """White Gaussian noise shaped in the frequency domain by ``shape(freqs)`` (an amplitude)."""
    spectrum = np.fft.rfft(rng.standard_normal(n_times))
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    return np.fft.irfft(spectrum * shape(freqs), n=n_times)


def _narrowband(rng, n_times: int, sfreq: float, f0: float, bandwidth: float) -> np.ndarray:
    return _spectral(rng, n_times, sfreq, lambda f: np.exp(-0.5 * ((f - f0) / (bandwidth / 2)) ** 2))


def _pink(rng, n_times: int, sfreq: float, fmin: float = 0.5) -> np.ndarray:
    """1/f power (1/sqrt(f) amplitude), flat below ``fmin`` and without DC."""
    return _spectral(rng, n_times, sfreq, lambda f: np.where(f > 0, 1.0 / np.sqrt(np.maximum(f, fmin)), 0.0))


def _smooth_noise(rng, n_times: int, sfreq: float, timescale: float) -> np.ndarray:
    """Unit-std Gaussian noise varying over ~``timescale`` seconds (for burst envelopes)."""
    x = _spectral(rng, n_times, sfreq, lambda f: np.exp(-0.5 * (f * timescale * 2 * np.pi) ** 2))
    return (x - x.mean()) / x.std()


def _events(duration: float, first: float, gap) -> np.ndarray:
    """Event times from ``first`` on, separated by ``gap()`` seconds, up to ``duration``."""
    times, t = [], first
    while t < duration:
        times.append(t)
        t += gap()
    return np.array(times)


def _blinks(rng: np.random.Generator, n_times: int, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Blinks ~15/min: asymmetric 0.2-0.4 s bumps (fast closing, slower opening), peak ~1."""
    out = np.zeros(n_times)
    t = np.arange(n_times) / sfreq
    peaks = _events(n_times / sfreq - 0.5, rng.uniform(0.5, 2.0), lambda: 1.2 + rng.exponential(2.8))
    for peak in peaks:
        length, amp = rng.uniform(0.2, 0.4), rng.uniform(0.7, 1.3)
        rise, fall = 0.4 * length, 0.6 * length
        dt = t - peak
        up = (dt > -rise) & (dt <= 0)
        down = (dt > 0) & (dt < fall)
        out[up] += amp * 0.5 * (1 + np.cos(np.pi * dt[up] / rise))
        out[down] += amp * 0.5 * (1 + np.cos(np.pi * dt[down] / fall))
    return out, peaks


def _gaze(rng: np.random.Generator, n_times: int, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal gaze (1 ~ 15 degrees right): fixations of 0.4-3 s joined by 30-60 ms saccades."""
    out = np.zeros(n_times)
    t = np.arange(n_times) / sfreq
    times = _events(n_times / sfreq - 0.1, rng.uniform(0.3, 1.5), lambda: 0.4 + rng.exponential(1.2))
    position = 0.0
    for onset in times:
        target = 0.0 if (position != 0.0 and rng.random() < 0.35) else rng.uniform(-1.0, 1.0)
        length = rng.uniform(0.03, 0.06)
        ramp = np.clip((t - onset) / length, 0.0, 1.0)
        out += (target - position) * 0.5 * (1 - np.cos(np.pi * ramp))
        position = target
    return out, times


def _heartbeat(rng: np.random.Generator, n_times: int, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """PQRST complexes (R = 1) at ~1.1 Hz with respiratory sinus arrhythmia and jitter."""
    waves = ((-0.20, 0.025, 0.12), (-0.025, 0.008, -0.12), (0.0, 0.010, 1.0),
             (0.025, 0.010, -0.25), (0.26, 0.040, 0.30))  # (offset s, width s, amplitude): P Q R S T
    r_peaks, t = [], rng.uniform(0.3, 0.9)
    while t < n_times / sfreq:
        r_peaks.append(t)
        t += 0.9 + 0.04 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0.0, 0.015)
    r_peaks = np.array(r_peaks)
    out = np.zeros(n_times)
    half = int(0.5 * sfreq)
    for r in r_peaks:
        centre = int(round(r * sfreq))
        lo, hi = max(centre - half, 0), min(centre + half, n_times)
        dt = np.arange(lo, hi) / sfreq - r
        for offset, width, amp in waves:
            out[lo:hi] += amp * np.exp(-0.5 * ((dt - offset) / width) ** 2)
    return out, r_peaks


def _line(rng: np.random.Generator, n_times: int, sfreq: float) -> np.ndarray:
    """50 Hz mains with a weaker 100 Hz harmonic (if below Nyquist) and slow amplitude wobble."""
    t = np.arange(n_times) / sfreq
    out = np.sin(2 * np.pi * LINE_FREQ * t + rng.uniform(0, 2 * np.pi))
    if 2 * LINE_FREQ < sfreq / 2 * 0.9:
        out += 0.2 * np.sin(2 * np.pi * 2 * LINE_FREQ * t + rng.uniform(0, 2 * np.pi))
    return out * (1.0 + 0.1 * _smooth_noise(rng, n_times, sfreq, 5.0))


def _random_walk(rng: np.random.Generator, n_times: int, sfreq: float) -> np.ndarray:
    """A slow electrode drift: a random walk smoothed over 1 s, starting at zero, unit std."""
    walk = np.cumsum(rng.standard_normal(n_times))
    width = max(int(sfreq), 1)
    padded = np.concatenate([np.full(width, walk[0]), walk])
    smooth = np.convolve(padded, np.ones(width) / width, mode="full")[width:width + n_times]
    smooth -= smooth[0]
    return smooth / smooth.std()
