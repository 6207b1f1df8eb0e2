"""labkit's ``LABKIT_*`` variables (labkit.settings): every bad value refused in words, every good one kept."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.errors import ExitCode, SettingError
from labkit.params import RUN_ID_PATTERN, RUN_ID_RESERVED_SUFFIXES
from labkit.settings import CACHE_WORDS, env
from labkit.settings.model import LabkitSettings

#: a value stands alone in the message when it is short (longer ones are shortened, see errors._shown)
SHORT = 30


def _words(draw_text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text that is not empty once stripped (empty means the default) and that fits the message whole."""
    return draw_text.filter(lambda t: t.strip() != "" and len(repr(t)) < SHORT)


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
#: text with a character no number is written with (letters other than e/E, punctuation, spaces inside)
_not_a_number = _words(st.builds(lambda a, b, c: a + b + c, st.text(string.digits, max_size=3),
                                 st.sampled_from(list("abcdfghxyz,;:/#!?%&") + ["1 2", "--1", "..", "0x10"]),
                                 st.text(string.digits, max_size=3)))


def _out_of(low: float, high: float) -> st.SearchStrategy[str]:
    return st.one_of(st.integers(max_value=int(low) - 1), st.integers(min_value=int(high) + 1)).map(str)


BAD: dict[str, st.SearchStrategy[str]] = {
    "LABKIT_CACHE": _words(_text).filter(lambda t: t.strip().lower() not in CACHE_WORDS),
    "LABKIT_CACHE_MAX_BYTES": st.one_of(_not_a_number, st.integers(max_value=-1).map(str),
                                        st.integers(1, 10**6).map(lambda n: f"{n}.5"), st.just("2G")),
    "LABKIT_HEARTBEAT_S": st.one_of(_not_a_number, st.floats(max_value=0).map(repr),
                                    st.floats(min_value=1e6).map(repr), st.sampled_from(["nan", "inf", "-inf"])),
    "LABKIT_STALE_S": st.one_of(_not_a_number, st.just("0"), st.just("-1"), st.just("1e6")),
    "LABKIT_BLAS_THREADS": st.one_of(_not_a_number, _out_of(1, 1024), st.just("2.5")),
    "LABKIT_HUB_SERVICE_PORT": st.one_of(_not_a_number, _out_of(1, 65535)),
    "LABKIT_RUN_ID": _words(_text).filter(lambda t: RUN_ID_PATTERN.fullmatch(t.strip()) is None),
    "LABKIT_HUB_SERVICE_URL": _words(_text).filter(lambda t: not t.strip().lower().startswith(("http://", "https://"))),
    "LABKIT_PAUSE_AT": _words(st.text(" /:;!?*", min_size=1, max_size=3)).map(lambda t: "step" + t + "x"),
}

_run_id = st.from_regex(RUN_ID_PATTERN, fullmatch=True).filter(lambda t: not t.endswith(RUN_ID_RESERVED_SUFFIXES))
_seconds = st.floats(min_value=1e-6, max_value=999999.0, allow_nan=False)
GOOD: dict[str, st.SearchStrategy[object]] = {
    "cache": st.booleans(),
    "cache_max_bytes": st.integers(0, 2**62),
    "heartbeat_s": _seconds,
    "stale_s": _seconds,
    "blas_threads": st.integers(1, 1024),
    "hub_service_port": st.integers(1, 65535),
    "run_id": _run_id,
    "image": st.from_regex(r"[a-z0-9.-]{1,20}(/[a-z0-9-]{1,10}){0,2}:[A-Za-z0-9._-]{1,10}", fullmatch=True),
    "user": st.from_regex(r"[A-Za-z0-9._@-]{1,20}", fullmatch=True),
    "hub_service_url": st.from_regex(r"https?://[a-z0-9.-]{1,20}(:[0-9]{2,5})?(/[a-z0-9/]{0,10})?", fullmatch=True),
    "pause_at": st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
}


def test_every_labkit_variable_is_covered() -> None:
    assert set(BAD) | {LabkitSettings.variable(f) for f in GOOD} == {
        LabkitSettings.variable(f) for f in LabkitSettings.model_fields}


@pytest.mark.parametrize("variable", sorted(BAD))
@given(data=st.data())
def test_a_bad_value_is_refused_naming_variable_value_and_what_is_allowed(variable: str, data: st.DataObject) -> None:
    value = data.draw(BAD[variable])
    with pytest.raises(SettingError) as info:
        env({variable: value})
    err = info.value
    assert (err.variable, err.value) == (variable, value)
    field = variable.removeprefix("LABKIT_").lower()
    assert str(err) == (f"Invalid value for the environment variable {variable}: got {value!r}; "
                        f"allowed: {LabkitSettings.allowed(field)}.")
    assert err.exit_code == ExitCode.BAD_INPUT and isinstance(err, ValueError)


@pytest.mark.parametrize("field", sorted(GOOD))
@given(data=st.data())
def test_a_good_value_round_trips(field: str, data: st.DataObject) -> None:
    value = data.draw(GOOD[field])
    settings = env(LabkitSettings.model_validate({field: value}).to_env())
    assert getattr(settings, field) == value
    assert env(settings.to_env()) == settings
    text = ("on" if value else "off") if isinstance(value, bool) else str(value)
    assert getattr(env({LabkitSettings.variable(field): f" {text}\t"}), field) == value  # spaces around are dropped


def test_empty_means_the_default_and_other_variables_are_not_ours() -> None:
    default = LabkitSettings()
    assert env({}) == default and default.cache is True and default.heartbeat_s == 5.0 and default.blas_threads == 1
    assert env({LabkitSettings.variable(f): "" for f in LabkitSettings.model_fields}) == default
    # the cluster's variables, and names labkit does not know, are left to their owners
    assert env({"LABKIT_CLUSTER_NAMESPACE": "x y", "LABKIT_CHROMIUM": "/usr/bin/chromium"}) == default


@pytest.mark.parametrize(("text", "on"), sorted(CACHE_WORDS.items()) + [("OFF", False), ("Yes", True)])
def test_the_cache_words(text: str, on: bool) -> None:
    assert env({"LABKIT_CACHE": text}).cache is on


def test_the_environment_is_read_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HEARTBEAT_S", "0.5")
    assert env().heartbeat_s == 0.5
    monkeypatch.setenv("LABKIT_HEARTBEAT_S", "2")
    assert env().heartbeat_s == 2.0
    monkeypatch.setenv("LABKIT_CACHE", "of")
    with pytest.raises(SettingError, match="LABKIT_CACHE: got 'of'"):
        env()
    monkeypatch.delenv("LABKIT_CACHE")
    monkeypatch.delenv("LABKIT_HEARTBEAT_S")
    assert env().heartbeat_s == 5.0
