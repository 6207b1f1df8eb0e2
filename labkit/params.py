"""The ICA parameter set: one immutable, validated value that every runner and face shares.

``IcaParams`` round-trips exactly through the prototype's environment variables,
papermill parameters, JSON and CLI flags. Each field declares its environment
variable and default once, in :data:`FIELDS`; every conversion reads that table.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Literal, Mapping, Union

from labkit.errors import ParameterError

METHODS = ("fastica", "picard", "infomax")
#: channel types a researcher may analyse (MNE ``pick`` names; ``meg`` means mag + grad)
CHANNEL_TYPES = ("eeg", "meg", "mag", "grad", "eog", "ecg", "emg", "seeg", "ecog", "dbs", "misc")
#: the prototype's BASE_DIR when unset: where its container image mounts the user's data (``labkit entrypoint``)
PROTOTYPE_BASE_DIR = "/userdata"
SAMPLE_DATA_PATH = "./MNE-sample-data/MEG/sample/sample_audvis_filt-0-40_raw.fif"

MaxIter = Union[int, Literal["auto"]]

#: a run id: letters, digits, '.', '_', '-', starting and ending alphanumeric, at most 63 characters,
#: so it is a safe folder name suffix and a valid Kubernetes label value (``new_run_id`` makes 26)
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
RUN_ID_ALLOWED = ("1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit "
                  "(e.g. 20260101-120000-000-abc123)")
#: suffixes of a result folder's other states (``labkit.results.layout``): a run id ending so would name another run's folder
RUN_ID_RESERVED_SUFFIXES = (".partial", ".failed")


def default_base_dir() -> str:
    """The one default base directory of every face and file kind: ``$BASE_DIR``, else the current directory."""
    return os.environ.get("BASE_DIR") or "."


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'method'?)`` for a near miss among ``choices``, else empty: a typo's fix, in its message."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_run_id(run_id: Any, field: str = "run_id") -> str:
    """The one run-id check (CLI, result folders, cluster, hub): a full match, never a path or a label breaker."""
    if not isinstance(run_id, str) or RUN_ID_PATTERN.fullmatch(run_id) is None:
        raise ParameterError(field, run_id, RUN_ID_ALLOWED)
    if run_id.endswith(RUN_ID_RESERVED_SUFFIXES):
        raise ParameterError(field, run_id, f"a name not ending in {' or '.join(map(repr, RUN_ID_RESERVED_SUFFIXES))}")
    return run_id


@dataclass(frozen=True)
class Field:
    """How one parameter travels: its environment variable, CLI flag and help text."""

    name: str
    env: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


FIELDS: tuple[Field, ...] = (
    Field("base_dir", "BASE_DIR", "mount point of the user's data directory"),
    Field("raw_file_path", "RAW_FILE_PATH", "recording to analyse, relative to base_dir"),
    Field("method", "ICA_METHOD", "ICA algorithm: fastica, picard or infomax"),
    Field("n_components", "ICA_COMPONENTS_COUNT", "number of ICA components"),
    Field("crop_tmin", "CROP_TMIN", "start of the analysed span, seconds"),
    Field("crop_tmax", "CROP_TMAX", "end of the analysed span, seconds (clamped to the recording)"),
    Field("channel_type", "USING_CHANNEL", "channel type analysed: eeg, meg, mag, grad, ..."),
    Field("filter_fmin", "FILTER_FMIN", "band-pass low edge, Hz"),
    Field("filter_fmax", "FILTER_FMAX", "band-pass high edge, Hz (below Nyquist)"),
    Field("random_state", "ICA_RANDOM_STATE", "seed of the ICA unmixing (MNE random_state)"),
    Field("max_iter", "ICA_MAX_ITER", "iteration cap, or 'auto' for MNE's per-method default"),
    Field("extended", "ICA_EXTENDED", "extended infomax/picard (sub- and super-Gaussian sources)"),
    Field("ortho", "ICA_ORTHO", "picard only: orthogonal constraint (FastICA-like)"),
    Field("label_threshold", "ICA_LABEL_THRESHOLD",
          "exclude components whose automatic artifact label reaches this probability (empty: labels exclude nothing)"),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}
#: fields added later: left out of the digest while unset, so earlier sets keep their digest
_ADDED_FIELDS = ("label_threshold",)
#: fields that describe the analysis itself; base_dir is where it runs, not what it is
ANALYSIS_FIELDS = tuple(f.name for f in FIELDS if f.name != "base_dir")


#: the longest text a numeric field is read from (a 400-digit number is a mistake, not a value)
_MAX_NUMBER_TEXT = 40


def _number(field: str, value: Any, allowed: str) -> float | int:
    """A number from an int, a float or a short text; anything else names the field."""
    number: Any = value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)  # numpy integers too (np.arange seeds in a sweep)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT and value.isascii():
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ParameterError(field, value, allowed)
    if isinstance(number, float) and not math.isfinite(number):
        raise ParameterError(field, value, allowed.replace("a ", "a finite ", 1))
    return number


def _as_float(field: str, value: Any) -> float:
    return float(_number(field, value, "a number"))


def _as_int(field: str, value: Any) -> int:
    number = _number(field, value, "a whole number")
    if isinstance(number, float):
        if not number.is_integer():
            raise ParameterError(field, value, "a whole number")
        number = int(number)
    if abs(number) >= 2**63:
        raise ParameterError(field, value, "a whole number below 2**63")
    return number


def whole_number(field: str, value: Any, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high`` (settings beside the parameter set: BLAS threads, ...)."""
    number = _as_int(field, value)
    if not low <= number <= high:
        raise ParameterError(field, value, f"a whole number from {low} to {high}")
    return number


def _as_text(field: str, value: Any, allowed: str | Iterable[Any]) -> str:
    """Text fields take text (or a path); a list, number or None is named, not stringified."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or "\x00" in value or len(value) > 4096:
        raise ParameterError(field, value, allowed)
    return value


def _as_optional_bool(field: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        raise ParameterError(field, value, "true, false or empty for the method's default")
    text = value.strip().lower()
    if text in ("", "none", "default"):
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ParameterError(field, value, "true, false or empty for the method's default")


def _check_inside(field: str, base_dir: str, path: str) -> None:
    """Refuse paths that lexically leave ``base_dir`` (symlinks are checked on resolve)."""
    if not path or "\x00" in path:
        raise ParameterError(field, path, "a non-empty path inside base_dir")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            rel = pure.relative_to(PurePosixPath(os.path.normpath(base_dir)))
        except ValueError:
            raise ParameterError(field, path, f"a path inside base_dir {base_dir!r}") from None
    else:
        rel = pure
    if ".." in PurePosixPath(os.path.normpath(str(rel))).parts or os.path.normpath(str(rel)).startswith(".."):
        raise ParameterError(field, path, f"a path inside base_dir {base_dir!r} (no '..')")


@dataclass(frozen=True)
class IcaParams:
    """One ICA parameter set; validated at construction, before any work.

    Defaults are the prototype's (see ``origins.md``); values may arrive as
    strings (environment, CLI, widgets) and are coerced to their types.
    """

    base_dir: str = dataclasses.field(default_factory=default_base_dir)
    raw_file_path: str = SAMPLE_DATA_PATH
    method: str = "fastica"
    n_components: int = 30
    crop_tmin: float = 0.0
    crop_tmax: float | None = 60.0
    channel_type: str = "eeg"
    filter_fmin: float = 1.0
    filter_fmax: float = 30.0
    random_state: int | None = 97
    max_iter: MaxIter = "auto"
    extended: bool | None = None
    ortho: bool | None = None
    label_threshold: float | None = None

    def __post_init__(self) -> None:
        coerced = coerce_values(dataclasses.asdict(self))
        for name, value in coerced.items():
            object.__setattr__(self, name, value)
        problems = static_problems(coerced)
        if problems:
            raise problems[0]

    # -- identity ---------------------------------------------------------
    @property
    def digest(self) -> str:
        """Stable short hash of the analysis fields (not base_dir): same set, same digest."""
        payload = json.dumps({k: getattr(self, k) for k in ANALYSIS_FIELDS
                              if not (k in _ADDED_FIELDS and getattr(self, k) is None)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def replace(self, **changes: Any) -> "IcaParams":
        return dataclasses.replace(self, **changes)

    # -- paths ------------------------------------------------------------
    def base_path(self) -> Path:
        """The base directory, resolved; it must exist: labkit never creates a user's data directory."""
        return existing_directory(self.base_dir, writable=True)

    def raw_path(self) -> Path:
        """The recording's real path, refused if it (or a symlink on the way) leaves base_dir.

        Checked before any folder is made or kernel started (the header's rules: :func:`labkit.analysis.recording.header_problems`)."""
        base = self.base_path()
        candidate = Path(self.raw_file_path)
        full = (candidate if candidate.is_absolute() else base / candidate).resolve()
        try:
            full.relative_to(base)
        except ValueError:
            raise ParameterError(
                "raw_file_path", self.raw_file_path, f"a file inside base_dir {self.base_dir!r} (it resolves to {full})"
            ) from None
        if not (full.is_file() or full.is_dir()):  # folders: EGI .mff, CTF .ds
            raise ParameterError("raw_file_path", self.raw_file_path, f"an existing file inside base_dir {self.base_dir!r}")
        if not os.access(full, os.R_OK):
            raise ParameterError("raw_file_path", self.raw_file_path, "a file readable by this user")
        return full

    @property
    def mne_fit_params(self) -> dict[str, bool]:
        """Method options in the form ``mne.preprocessing.ICA(fit_params=...)`` takes."""
        opts = {"extended": self.extended, "ortho": self.ortho}
        return {k: v for k, v in opts.items() if v is not None}

    # -- conversions --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, source: str = "params") -> "IcaParams":
        """Build from a mapping (any JSON value is checked: API bodies, files); unknown keys are an
        error so typos are not silently dropped. ``source`` names the whole document in errors."""
        if not isinstance(values, Mapping):
            raise ParameterError(source, values, "a mapping of parameter names to values")
        unknown = sorted((k for k in values if k not in FIELD_BY_NAME), key=str)
        if unknown:
            key = str(unknown[0])
            raise ParameterError(key, values[unknown[0]], "a parameter name" + did_you_mean(key, FIELD_BY_NAME)
                                 + ": one of " + ", ".join(FIELD_BY_NAME))
        return cls(**values)

    @classmethod
    def from_document(cls, data: Any, source: str = "params") -> "IcaParams":
        """A parsed file: the set's fields, or ``{"params": {...}}`` as ``params.json`` holds them."""
        if isinstance(data, Mapping) and isinstance(data.get("params"), Mapping):
            data = data["params"]
        return cls.from_dict(data, source)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "params") -> "IcaParams":
        """JSON (or YAML) text of one set, as ``--params`` reads it."""
        return cls.from_document(read_document(text, source), source)

    def to_papermill(self) -> dict[str, Any]:
        """Papermill parameters: one per field, JSON-native values."""
        return self.to_dict()

    @classmethod
    def from_papermill(cls, namespace: Mapping[str, Any]) -> "IcaParams":
        """Pick this set's fields out of a notebook namespace (other names are ignored)."""
        return cls(**{k: namespace[k] for k in FIELD_BY_NAME if k in namespace})

    def to_env(self) -> dict[str, str]:
        """The prototype's environment variables (plus labkit's ``ICA_*`` extras)."""
        return {FIELD_BY_NAME[k].env: _env_text(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "IcaParams":
        """Read the prototype's contract: same names, same defaults (BASE_DIR unset is ``/userdata``,
        the image's mount); empty means default."""
        environ = os.environ if environ is None else environ
        values = {"base_dir": PROTOTYPE_BASE_DIR,
                  **{f.name: environ[f.env] for f in FIELDS if environ.get(f.env, "") != ""}}
        try:
            return cls(**values)
        except ParameterError as err:
            if err.field in values:
                raise err.tell_source(f"the environment variable {FIELD_BY_NAME[err.field].env}") from None
            raise

    def to_cli_args(self) -> list[str]:
        """Flags for ``labkit run`` that rebuild exactly this set."""
        args: list[str] = []
        for key, value in self.to_dict().items():
            args += [FIELD_BY_NAME[key].flag, _env_text(value)]
        return args


_CROP_TMAX_DEFAULT = IcaParams.__dataclass_fields__["crop_tmax"].default


def existing_directory(path: str | os.PathLike, field: str = "base_dir", *, writable: bool = False) -> Path:
    """``path`` resolved, refused (naming ``field``) unless it is an existing directory this user may use."""
    try:
        found = Path(path).resolve()
        ok = found.is_dir()
    except (OSError, ValueError):  # a NUL byte, a loop of symlinks
        ok = False
    if not ok:
        raise ParameterError(field, path, "an existing directory (labkit does not create it)")
    if not os.access(found, os.R_OK | os.X_OK | (os.W_OK if writable else 0)):
        raise ParameterError(field, path, f"a directory this user can read{' and write' if writable else ''}")
    return found


def read_document(text: str | bytes, source: str = "params") -> Any:
    """Parse a parameter file: JSON, else YAML (JSON is tried first: it is what labkit writes).

    Whatever is wrong (broken syntax, binary, nesting too deep) is a :class:`ParameterError` naming ``source``.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ParameterError(source, text[:40], "UTF-8 text (JSON or YAML)") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ParameterError(source, text, "JSON or YAML text of parameter fields (nested too deeply)") from None
    except ValueError as err:
        json_error = err
    import yaml

    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError):
        data = None
        yaml_ok = False
    else:
        yaml_ok = isinstance(data, (dict, list))  # plain words parse as YAML text: not a parameter file
    if not yaml_ok:
        where = f" ({json_error})" if isinstance(json_error, json.JSONDecodeError) else ""
        raise ParameterError(source, text, f"JSON or YAML text of parameter fields{where}")
    return data


def in_folder(base_dir: Any, folder: str | os.PathLike | None) -> Any:
    """A file's relative ``base_dir`` is relative to the file's own folder, not to where a command runs."""
    if folder is None or not isinstance(base_dir, str) or not base_dir.strip():
        return base_dir
    return base_dir if os.path.isabs(os.path.expanduser(base_dir)) else os.path.join(folder, base_dir)


def sets_from_text(text: str | bytes, source: str = "sets", folder: str | os.PathLike | None = None) -> list[IcaParams]:
    """A JSON (or YAML) list of parameter sets, or one set; errors name the item (``sets[3]``) and field.

    A set without ``base_dir`` takes the default (``$BASE_DIR``, else the current directory); with
    ``folder`` (the file's own), a relative one is taken from there."""
    data = read_document(text, source)
    items = data if isinstance(data, list) else [data]
    if folder is not None:
        items = [_base_in_folder(item, folder) for item in items]
    if not items:
        raise ParameterError(source, data, "a list of at least one parameter set")
    sets = []
    for i, item in enumerate(items):
        try:
            sets.append(IcaParams.from_document(item, f"{source}[{i}]"))
        except ParameterError as err:
            if isinstance(data, list) and not err.field.startswith(source):
                err.args = (f"{source}[{i}]: {err}",)
            raise
    return sets


def _base_in_folder(item: Any, folder: str | os.PathLike) -> Any:
    if isinstance(item, Mapping) and isinstance(item.get("params"), Mapping):
        return {**item, "params": _base_in_folder(item["params"], folder)}
    if isinstance(item, Mapping) and "base_dir" in item:
        return {**item, "base_dir": in_folder(item["base_dir"], folder)}
    return item


def _env_text(value: Any) -> str:
    if value is None:
        return "none"  # explicit: an empty variable means "the default", which may not be None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_blank(value: Any) -> bool:
    """None, empty text or 'none': the field's "no value" (crop to the end, a random seed)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def coerce_values(values: dict[str, Any]) -> dict[str, Any]:
    """Turn strings and numbers into each field's type; type errors name the field."""
    out = dict(values)
    out["base_dir"] = _as_text("base_dir", values["base_dir"], "a directory path")
    if not out["base_dir"].strip():
        raise ParameterError("base_dir", values["base_dir"], "a directory path (not empty)")
    out["raw_file_path"] = _as_text("raw_file_path", values["raw_file_path"], "a path inside base_dir")
    out["method"] = _as_text("method", values["method"], METHODS).strip().lower()
    out["channel_type"] = _as_text("channel_type", values["channel_type"], CHANNEL_TYPES).strip().lower()
    out["n_components"] = _as_int("n_components", values["n_components"])
    out["crop_tmin"] = _as_float("crop_tmin", values["crop_tmin"])
    tmax = values["crop_tmax"]
    out["crop_tmax"] = None if _is_blank(tmax) else _as_float("crop_tmax", tmax)
    out["filter_fmin"] = _as_float("filter_fmin", values["filter_fmin"])
    out["filter_fmax"] = _as_float("filter_fmax", values["filter_fmax"])
    seed = values["random_state"]
    out["random_state"] = None if _is_blank(seed) else _as_int("random_state", seed)
    max_iter = values["max_iter"]
    auto = isinstance(max_iter, str) and max_iter.strip().lower() == "auto"
    out["max_iter"] = "auto" if auto else _as_int("max_iter", max_iter)
    out["extended"] = _as_optional_bool("extended", values["extended"])
    out["ortho"] = _as_optional_bool("ortho", values["ortho"])
    threshold = values["label_threshold"]
    out["label_threshold"] = None if threshold in (None, "", "none", "None") else _as_float("label_threshold", threshold)
    return out


def static_problems(values: Mapping[str, Any]) -> list[ParameterError]:
    """Every rule that needs no recording; coerced values in, all problems out (for forms)."""
    v = values
    problems: list[ParameterError] = []

    def check(ok: bool, field: str, allowed: str | Iterable[Any]) -> None:
        if not ok:
            problems.append(ParameterError(field, v[field], allowed))

    check(v["method"] in METHODS, "method", METHODS)
    check(v["channel_type"] in CHANNEL_TYPES, "channel_type", CHANNEL_TYPES)
    check(v["n_components"] >= 2, "n_components", "a whole number of at least 2")
    check(v["crop_tmin"] >= 0, "crop_tmin", "0 s or later")
    if v["crop_tmax"] is not None and v["crop_tmax"] <= v["crop_tmin"]:
        if v["crop_tmax"] == _CROP_TMAX_DEFAULT:  # a start past the default end: the start is what was given
            check(False, "crop_tmin", f"a start before crop_tmax ({_CROP_TMAX_DEFAULT:g} s, its default; "
                  "set crop_tmax too, or 'none' to analyse to the end)")
        else:
            check(False, "crop_tmax", f"greater than crop_tmin ({v['crop_tmin']} s)")
    check(v["filter_fmin"] > 0, "filter_fmin", "a frequency above 0 Hz")
    check(
        v["filter_fmax"] > v["filter_fmin"], "filter_fmax", f"greater than filter_fmin ({v['filter_fmin']} Hz)"
    )
    if v["random_state"] is not None:
        check(0 <= v["random_state"] < 2**32, "random_state", "a seed from 0 to 2**32 - 1, or empty for random")
    if v["max_iter"] != "auto":
        check(v["max_iter"] >= 1, "max_iter", "'auto' or a positive whole number")
    if v["ortho"] is not None:
        check(v["method"] == "picard", "ortho", "empty unless method is 'picard'")
    if v["extended"] is not None:
        check(v["method"] in ("picard", "infomax"), "extended", "empty unless method is 'picard' or 'infomax'")
    if v["label_threshold"] is not None:
        check(0 < v["label_threshold"] <= 1, "label_threshold", "a probability above 0 and at most 1, or empty")
    try:
        _check_inside("raw_file_path", v["base_dir"], v["raw_file_path"])
    except ParameterError as err:
        problems.append(err)
    return problems
