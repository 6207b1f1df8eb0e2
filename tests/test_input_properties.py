"""Bad input through every face ends in a labkit error naming the field, never a traceback.

Property-based (hypothesis) over parameter mappings (the Python API and HTTP bodies),
environment strings (``labkit entrypoint``), CLI arguments (click's runner and a real
process), JSON/YAML files (``--params``, ``labkit sweep``) and papermill namespaces
(``template.start``). Rejected input writes nothing; accepted input writes only inside
``base_dir``. Every command here is given a base directory without recordings, so even
a valid set stops at the recording check (exit 2) instead of starting a run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from labkit import IcaParams, ParameterError
from labkit.cli.main import main
from labkit.params import FIELD_BY_NAME, FIELDS, check_run_id, sets_from_text

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CLI = settings(FAST, max_examples=30)
PROCESS = settings(FAST, max_examples=4)

ENV_NAMES = [f.env for f in FIELDS]
FLAG_NAMES = [f.flag for f in FIELDS if f.name != "base_dir"]
#: what a labkit error line looks like; the field is captured
LABKIT_ERROR = re.compile(r"labkit: (?:sets\[\d+\]: )?Invalid value for the (.+?)(?: parameter)?: got .+; allowed: .+")
CLICK_ERROR = re.compile(r"Error: (Invalid value for '--[a-z-]+'|No such option|Got unexpected extra)")

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-10**400, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "none", "auto", "nan", "inf", "-1", "1e400", "9" * 400, "20", "picard", "meg",
                     "../x", "/etc/passwd", "\x00", "true", "0x10", "1_000", "٣"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
#: values a field might plausibly get: right-looking ones too, so valid sets are drawn as well
field_values = st.one_of(json_values, st.integers(min_value=-3, max_value=80), st.floats(-5, 200),
                         st.sampled_from(["fastica", "picard", "infomax", "eeg", "grad", "x_raw.fif", None]))
fields = st.sampled_from(list(FIELD_BY_NAME))
#: mostly real fields; sometimes a typo or a key of another type
param_dicts = st.one_of(st.dictionaries(fields, field_values, max_size=6),
                        st.dictionaries(st.one_of(fields, st.text(max_size=10), st.integers()), field_values, max_size=4))
env_text = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=30)
#: relative names only: resolved in an empty working directory, they can name nothing that exists
relative = env_text.filter(lambda s: "/" not in s and ".." not in s and not s.startswith("~"))


def _field_named(err: ParameterError, given: Any = ()) -> None:
    """The error names a field a user can find (a parameter, a given key or the document) in its message."""
    event(f"refused: {err.field if err.field in FIELD_BY_NAME else 'other'}")
    allowed = {*FIELD_BY_NAME, "params", "sets", *map(str, given)}
    assert err.field in allowed or re.fullmatch(r"sets\[\d+\]", err.field), err.field
    assert f"the {err.field!r} parameter" in str(err)
    assert len(str(err)) < 2000


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@contextmanager
def _sandbox() -> Iterator[tuple[Path, Path]]:
    """(outer, base): an empty working directory ``outer`` holding an empty ``base``; cwd is ``outer``."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="input-prop-") as tmp:
        outer = Path(tmp).resolve()
        base = outer / "base"
        base.mkdir()
        os.chdir(outer)
        try:
            yield outer, base
        finally:
            os.chdir(old)


def _assert_refused(out: Any, outer: Path) -> None:
    """Exit 2, a one-line labkit (or click usage) error, no traceback, and nothing written anywhere."""
    text = out.output
    assert out.exit_code == 2, (out.exit_code, text, out.exception)
    assert "Traceback" not in text
    assert out.exception is None or isinstance(out.exception, SystemExit), repr(out.exception)
    match = LABKIT_ERROR.search(text)
    assert match or CLICK_ERROR.search(text), text
    event(f"refused: {match.group(1) if match else 'click usage'}")
    assert _tree(outer) == ["base"], _tree(outer)


# -- the Python API and HTTP bodies: IcaParams.from_dict -------------------------------------------

@FAST
@given(param_dicts)
@example({"n_components": 10**400})
@example({"crop_tmax": "1" * 400})
@example({"method": ["picard"], "base_dir": None})
@example({1: 2})
def test_from_dict_gives_a_set_or_an_error_naming_the_field(values):
    try:
        params = IcaParams.from_dict(values)
    except ParameterError as err:
        _field_named(err, values)
    else:
        event("accepted")
        assert IcaParams.from_json(params.to_json()) == params
        assert IcaParams.from_env(params.to_env()) == params


@FAST
@given(json_values)
@example(None)
@example([1, 2, 3])
def test_any_json_body_is_a_set_or_an_error(body):
    try:
        IcaParams.from_dict(body)
    except ParameterError as err:
        _field_named(err, body if isinstance(body, dict) else ())


# -- environment strings: IcaParams.from_env and labkit entrypoint ----------------------------------

@FAST
@given(st.dictionaries(st.sampled_from(ENV_NAMES), env_text, max_size=6))
def test_env_strings_give_a_set_or_an_error_naming_the_field(env):
    try:
        IcaParams.from_env(env)
    except ParameterError as err:
        _field_named(err)


@CLI
@given(st.dictionaries(st.sampled_from([n for n in ENV_NAMES if n != "BASE_DIR"] + ["LABKIT_RUN_ID",
                                        "LABKIT_BLAS_THREADS"]), env_text, max_size=5),
       st.sampled_from(["base", "base/missing", "relative"]), relative)
@example({"ICA_COMPONENTS_COUNT": "9" * 400}, "base", "")
@example({"LABKIT_RUN_ID": "../x"}, "base", "")
@example({}, "base/missing", "")
def test_entrypoint_refuses_bad_env_with_exit_2_and_writes_nothing(env, where, name):
    with _sandbox() as (outer, base):
        base_dir = {"base": str(base), "base/missing": str(base / "missing"), "relative": name or "."}[where]
        out = CliRunner().invoke(main, ["entrypoint"], env={**env, "BASE_DIR": base_dir})
        _assert_refused(out, outer)


# -- CLI flags through click's runner ----------------------------------------------------------------

@CLI
@given(st.lists(st.tuples(st.sampled_from(FLAG_NAMES + ["--run-id", "--blas-threads"]), env_text), max_size=5),
       st.sampled_from(["base", "base/missing", "relative"]), relative)
@example([("--run-id", "../x")], "base", "")
@example([("--run-id", "x" * 300)], "base", "")
@example([("--n-components", "1" * 400)], "base", "")
@example([], "base/missing", "")
def test_run_flags_refused_with_exit_2_naming_the_field(flags, where, name):
    with _sandbox() as (outer, base):
        base_dir = {"base": str(base), "base/missing": str(base / "missing"), "relative": name or "."}[where]
        args = ["run", f"--base-dir={base_dir}", *(f"{flag}={value}" for flag, value in flags)]
        out = CliRunner().invoke(main, args)
        _assert_refused(out, outer)


# -- files: --params and labkit sweep ----------------------------------------------------------------

documents = st.one_of(
    json_values.map(json.dumps),
    json_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    param_dicts.map(lambda v: json.dumps(v, default=str)),
    st.text(max_size=200),
    st.just(json.dumps(IcaParams().to_dict())).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),
    st.sampled_from(["null", "[1, 2]", '{"method": ', '{"n_components": ' + "1" * 400 + "}", "[]", "[[[[",
                     "a: &a [1, 2]\nb: [*a, *a]", "!!python/object:os.system {}", "\ufeff{}"]),
)


@FAST
@given(documents)
@example("[" * 5000)
@example("- " * 3000 + "1")
def test_parameter_file_text_gives_sets_or_an_error_naming_the_field(text):
    for parse in (IcaParams.from_json, sets_from_text):
        try:
            parse(text)
        except ParameterError as err:
            _field_named(err, _keys_in(text))


@FAST
@given(st.binary(max_size=200))
def test_parameter_file_bytes_give_sets_or_an_error(data):
    try:
        sets_from_text(data)
    except ParameterError as err:
        _field_named(err, _keys_in(data))


def _keys_in(text: str | bytes) -> set[str]:
    """Every mapping key in the document (the error may name an unknown one), or none if it does not parse."""
    try:
        from labkit.params import read_document

        data = read_document(text)
    except ParameterError:
        return set()
    found: set[str] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(map(str, item))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@CLI
@given(documents, st.sampled_from(["run", "sweep"]))
@example("null", "run")
@example("[1, 2]", "sweep")
@example('{"method": ', "sweep")
def test_parameter_files_refused_by_run_and_sweep_with_exit_2(text, command):
    with _sandbox() as (outer, base):
        source = Path(tempfile.mkdtemp(prefix="input-prop-file-")) / "p.json"
        source.write_text(text, errors="surrogateescape")
        try:
            if command == "run":
                out = CliRunner().invoke(main, ["run", "--params", str(source), "--base-dir", str(base)])
            else:
                try:
                    sets_from_text(text)
                except ParameterError:
                    pass
                else:  # valid sets would run (in their own base_dir): not this test's business
                    return
                out = CliRunner().invoke(main, ["sweep", str(source)])
            _assert_refused(out, outer)
        finally:
            source.unlink()
            source.parent.rmdir()


# -- a real process: bytes on argv, stdin as --params -----------------------------------------------

@PROCESS
@given(st.sampled_from(FLAG_NAMES + ["--run-id"]), st.binary(min_size=1, max_size=20).filter(lambda b: b"\x00" not in b))
@example("--run-id", b"../x")
@example("--method", b"\xff\xfe")
def test_real_process_refuses_bad_bytes_with_exit_2(flag, value):
    with _sandbox() as (outer, base):
        proc = subprocess.run([sys.executable, "-m", "labkit", "run", "--base-dir", str(base),
                               flag.encode() + b"=" + value], capture_output=True, timeout=120, cwd=outer)
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == 2, err
        assert "Traceback" not in err and (LABKIT_ERROR.search(err) or CLICK_ERROR.search(err)), err
        assert _tree(outer) == ["base"]


def test_real_process_reads_a_null_parameter_file_from_stdin(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "labkit", "run", "--params", "-", "--base-dir", str(tmp_path)],
                          input="null", capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'params' parameter: got None; allowed: a mapping of parameter names to values" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- papermill parameters: template.start -------------------------------------------------------------

namespaces = st.fixed_dictionaries(
    {"raw_file_path": st.one_of(st.just("x_raw.fif"), relative.filter(lambda s: s.strip()), json_values.filter(
        lambda v: v is not None and not (isinstance(v, str) and not v.strip())))},
    optional={"method": field_values, "n_components": field_values, "crop_tmax": field_values,
              "channel_type": field_values, "random_state": field_values, "max_iter": field_values,
              "extended": field_values, "run_dir": st.one_of(json_values, st.sampled_from(
                  ["PreExperiment_ICA_r1.partial", "/tmp/PreExperiment_ICA_r1", "PreExperiment_ICA_../x"])),
              "blas_threads": field_values, "verbose": field_values, "np": st.just(object())},
)


@FAST
@given(namespaces, st.sampled_from(["base", "blank", "missing"]))
@example({"raw_file_path": "x_raw.fif", "n_components": 10**400}, "base")
@example({"raw_file_path": "x_raw.fif", "run_dir": "/tmp/PreExperiment_ICA_r1"}, "base")
@example({"raw_file_path": "x_raw.fif"}, "missing")
def test_papermill_parameters_start_a_run_or_name_the_field(namespace, where):
    from labkit.runners import template

    with _sandbox() as (outer, base):
        old_env = os.environ.get("BASE_DIR")
        os.environ["BASE_DIR"] = str(base)
        namespace = {**namespace, "base_dir": {"base": str(base), "blank": "", "missing": str(base / "no")}[where]}
        if isinstance(namespace.get("run_dir"), str) and namespace["run_dir"].startswith("PreExperiment"):
            namespace["run_dir"] = str(base / namespace["run_dir"])
        try:
            run = template.start(namespace)
        except ParameterError as err:
            _field_named(err, ["run_dir", "blas_threads", "verbose"])
            assert _tree(outer) == ["base"]
        else:
            event("accepted")
            run._close_log()
            written = _tree(outer)
            assert all(w == "base" or w.startswith("base/") for w in written), written  # only inside base_dir
            assert any(w.startswith("base/PreExperiment_ICA_") for w in written), written
        finally:
            if old_env is None:
                os.environ.pop("BASE_DIR", None)
            else:
                os.environ["BASE_DIR"] = old_env


def test_run_id_check_is_a_full_match():
    """Guard against a $-anchored pattern: a trailing newline is not a run id."""
    for bad in ("r1\n", "r1\nr2", "\nr1"):
        try:
            check_run_id(bad)
        except ParameterError as err:
            assert err.field == "run_id"
        else:
            raise AssertionError(f"{bad!r} accepted")
