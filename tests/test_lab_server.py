"""The Jupyter server extension's REST API, against a real jupyter_server (pytest-jupyter's fixtures).

The server runs under a hub-like base URL (``/user/alice/``) with a base directory holding a
failed and a cancelled run; real runs are started through the API and followed to their end.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the server fixtures, their autouse ones scoped to this module
from tornado.httpclient import HTTPClientError

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.lab import handlers
from labkit.lab.runs import LabRuns
from labkit.params import FIELDS
from labkit.results.folder import RunFolder
from labkit.results.layout import COMPONENTS_TSV, ICA_FILE, MAPS_DIR, component_map

pytestmark = pytest.mark.slow
QUICK = {"raw_file_path": DEMO_FILENAME, "n_components": 5, "crop_tmax": 8, "method": "picard"}


@pytest.fixture
def jp_asyncio_loop():
    """A fresh event loop per test, set as the current one (a test module before this one may leave none set)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()  # as pytest-jupyter's own fixture leaves it


@pytest.fixture
def jp_base_url() -> str:
    return "/user/alice/"


@pytest.fixture
def jp_root_dir(tmp_path: Path, demo_source: Path) -> Path:
    base = tmp_path / "alice"
    shutil.copytree(demo_source, base)
    params = IcaParams(base_dir=str(base), **QUICK)
    RunFolder.create(params, "old-failed").fail("the recording was too short")
    RunFolder.create(params, "old-cancelled").finish_cancelled("cancelled: stopped by its owner")
    (tmp_path / "bob").mkdir()
    RunFolder.create(params.replace(base_dir=str(tmp_path / "bob")), "bobs-run").fail("bob's")
    return base


@pytest.fixture
def jp_server_config():
    from traitlets.config import Config

    return Config({"ServerApp": {"jpserver_extensions": {"labkit.lab": True}},
                   "LabkitApp": {"use_remote": "no", "activity_interval": 0.2}})


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    """``api(method, *path, body=None, **query) -> (status, json or text)``, errors returned, not raised."""

    def call(method: str, /, *path: str, body=None, raw: bytes | None = None, headers=None, **query):
        kwargs = {"method": method, "params": query, "request_timeout": 180, "headers": headers}
        if method in ("POST", "PUT"):
            kwargs["body"] = raw if raw is not None else json.dumps(body if body is not None else {})
        try:
            response = jp_asyncio_loop.run_until_complete(jp_fetch("labkit", *path, **kwargs))
        except HTTPClientError as err:
            response = err.response
        kind = response.headers.get("Content-Type", "")
        if kind.startswith("application/json"):
            return response.code, json.loads(response.body)
        return response.code, response.body.decode() if kind.startswith("text/") else response.body

    return call


def wait_done(api, run_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, doc = api("GET", "runs", run_id)
        if code == 200 and doc["run"]["done"]:
            return doc
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not end: {doc}")


def test_requests_without_the_servers_token_are_refused(api):
    for auth in ("", "token not-the-servers-token"):
        for method, path in (("GET", "runs"), ("POST", "runs"), ("GET", "schema")):
            code, _ = api(method, path, headers={"Authorization": auth})
            assert code == 403, (auth, method, path)


def test_a_cookie_session_must_send_the_xsrf_token(jp_serverapp, http_server_client, jp_asyncio_loop):
    """A browser session (cookie, no token) may read, but a POST without the XSRF token is refused."""
    fetch = http_server_client.fetch
    token = jp_serverapp.identity_provider.token
    login = jp_asyncio_loop.run_until_complete(fetch("/user/alice/login"))
    xsrf = next(c.split(";")[0].split("=", 1)[1] for c in login.headers.get_list("Set-Cookie") if c.startswith("_xsrf"))
    form = urllib.parse.urlencode({"password": token, "_xsrf": xsrf})
    with pytest.raises(HTTPClientError) as redirect:
        jp_asyncio_loop.run_until_complete(fetch("/user/alice/login", method="POST", body=form, follow_redirects=False,
                                                 headers={"Cookie": f"_xsrf={xsrf}"}))
    cookies = "; ".join(c.split(";")[0] for c in redirect.value.response.headers.get_list("Set-Cookie"))
    cookies += f"; _xsrf={xsrf}"
    listed = jp_asyncio_loop.run_until_complete(fetch("/user/alice/labkit/runs", headers={"Cookie": cookies}))
    assert listed.code == 200
    body = json.dumps({"params": QUICK})
    with pytest.raises(HTTPClientError) as refused:
        jp_asyncio_loop.run_until_complete(fetch("/user/alice/labkit/validate", method="POST", body=body,
                                                 headers={"Cookie": cookies}))
    assert refused.value.code == 403
    checked = jp_asyncio_loop.run_until_complete(fetch("/user/alice/labkit/validate", method="POST", body=body,
                                                       headers={"Cookie": cookies, "X-XSRFToken": xsrf}))
    assert json.loads(checked.body)["ok"] is True


def test_the_list_holds_my_runs_only_in_their_states_with_filters_and_pages(api):
    code, doc = api("GET", "runs")
    assert code == 200
    states = {r["run_id"]: r["state"] for r in doc["runs"]}
    assert states == {"old-failed": "failed", "old-cancelled": "cancelled"}  # bob's run is in bob's directory
    failed = next(r for r in doc["runs"] if r["run_id"] == "old-failed")
    assert failed["reason"] == "the recording was too short" and failed["recording"] == DEMO_FILENAME
    assert [r["run_id"] for r in api("GET", "runs", state="cancelled")[1]["runs"]] == ["old-cancelled"]
    assert api("GET", "runs", q="FAILED")[1]["total"] == 1
    page = api("GET", "runs", per_page="1", page="2")[1]
    assert (page["total"], page["pages"], len(page["runs"])) == (2, 2, 1)
    code, err = api("GET", "runs", state="done")
    assert code == 400 and err["field"] == "state" and err["value"] == "done" and "cancelled" in err["allowed"]
    code, err = api("GET", "runs", colour="red")
    assert code == 400 and err["field"] == "colour"
    code, err = api("GET", "runs", per_page="100000")
    assert code == 400 and err["field"] == "per_page" and "500" in err["message"]


@pytest.mark.parametrize("run_id", ["bobs-run", "no-such-run", "..", "%2E%2E%2Fbob", "a" * 80])
def test_other_users_runs_and_path_tricks_are_not_found(api, run_id):
    code, err = api("GET", "runs", run_id)
    assert code in (400, 404), err
    assert "message" in err and "bob's" not in json.dumps(err)


def test_a_run_is_told_whole_from_its_start_to_its_end_however_often_it_is_asked(demo_dir):
    """The run view asks every half second: the moment before a run has a folder, and the moment its folder is
    renamed as it ends, are answered like any other (a refusal there made the view wait four times longer)."""
    runs = LabRuns(demo_dir)
    try:
        run = runs.start({"params": QUICK})
        assert runs.detail(run.run_id)["run"]["state"] in ("queued", "running")
        seen, asked = [], 0
        while True:
            doc = runs.detail(run.run_id)  # as fast as it answers: every moment of the run's end is asked
            asked += 1
            seen.append(doc["run"]["state"])
            if doc["run"]["done"]:
                break
        assert seen[-1] in ("succeeded", "succeeded with warnings") and asked > 100, (asked, seen[-1])
        assert doc["report"] and "metrics.json" in doc["files"] and not doc["folder"].endswith(".partial")
    finally:
        runs.close()


def test_following_logs_past_the_most_at_once_is_refused_and_each_follow_gives_its_place_back(api):
    """Each followed log holds a thread while it waits for lines: past MAX_FOLLOWS the server says so (429)."""
    held = 0
    for _ in range(handlers.MAX_FOLLOWS):  # as many followers as the server takes, mid-stream
        held += handlers._FOLLOWS.acquire(blocking=False)
    try:
        assert held == handlers.MAX_FOLLOWS, "every place was free before"
        code, err = api("GET", "runs", "old-failed", "log", follow="1")
        assert code == 429 and "16 logs are being followed" in err["message"] and "tail" in err["message"]
        assert api("GET", "runs", "old-failed", "log", tail="5")[0] == 200, "the tail is always answered"
    finally:
        for _ in range(held):
            handlers._FOLLOWS.release()
    for _ in range(3 * handlers.MAX_FOLLOWS):  # an ended run's follow ends at once, and gives its place back
        assert api("GET", "runs", "old-failed", "log", follow="1")[0] == 200


def test_a_run_started_here_is_followed_to_its_end_with_its_log_results_and_review(api, jp_serverapp, jp_root_dir):
    code, started = api("POST", "runs", body={"params": QUICK})
    assert code == 201 and started["state"] in ("queued", "running"), started
    run_id = started["run_id"]
    assert api("GET", "runs", state="failed")[1]["total"] == 1  # listing works while it runs
    code, log = api("GET", "runs", run_id, "log", follow="1")  # streamed until the run ends
    assert code == 200 and "picard" in log
    doc = wait_done(api, run_id)
    assert doc["run"]["state"] in ("succeeded", "succeeded with warnings"), doc["run"]
    assert doc["params"]["n_components"] == 5 and doc["metrics"]["method"] == "picard"
    assert "topomaps.png" in doc["figures"] and doc["report"].endswith("/report.html")
    assert [c["name"] for c in doc["components"]] == [f"ICA{i:03d}" for i in range(5)]
    assert api("GET", "runs", run_id, "log", tail="2")[1].count("\n") == 2
    assert jp_serverapp.web_app.settings["last_activity_times"].get("labkit") is not None  # the hub saw activity

    check_each_component_has_its_own_map_properties_and_scores(api, jp_root_dir, run_id, doc)
    code, png = api("GET", "runs", run_id, "files", "topomaps.png")
    assert code == 200 and png.startswith(b"\x89PNG")
    for name in ("..%2Fold-failed", ".runner-heartbeat.json", "nothing.png"):
        assert api("GET", "runs", run_id, "files", name)[0] in (400, 404)

    code, saved = api("PUT", "runs", run_id, "components", body={"exclude": [1, 3]})
    assert code == 200 and [c["component"] for c in saved["components"] if c["excluded"]] == [1, 3]
    tsv = next(jp_root_dir.glob(f"*{run_id}")) / COMPONENTS_TSV
    assert [line.split("\t")[3] for line in tsv.read_text().splitlines()[1:]] == ["good", "bad", "good", "bad", "good"]
    for bad in ({"exclude": [7]}, {"exclude": "1"}, {"exclude": [True]}, {}):
        code, err = api("PUT", "runs", run_id, "components", body=bad)
        assert code == 400 and err["field"] == "exclude", (bad, err)
    code, err = api("POST", "runs", run_id, "cancel")
    assert code == 409 and "already" in err["message"]


def test_a_running_run_cancelled_from_the_api_is_cancelled(api):
    run_id = api("POST", "runs", body={"params": {**QUICK, "n_components": 20, "crop_tmax": None}})[1]["run_id"]
    code, run = api("POST", "runs", run_id, "cancel")
    assert code == 200 and run["state"] == "cancelled", run
    assert api("GET", "runs", state="cancelled")[1]["total"] == 2


@pytest.mark.parametrize("body, field", [
    ({"params": {**QUICK, "method": "pca"}}, "method"),
    ({"params": {**QUICK, "methd": "picard"}}, "methd"),
    ({"params": {**QUICK, "raw_file_path": "../bob/x.fif"}}, "raw_file_path"),
    ({"params": {**QUICK, "base_dir": "/"}}, "base_dir"),
    ({"params": {**QUICK, "raw_file_path": "missing.fif"}}, "raw_file_path"),
    ({"params": {**QUICK, "filter_fmax": 400}}, "filter_fmax"),  # above the demo's Nyquist (125 Hz)
    ({"params": QUICK, "backend": "cluster"}, "backend"),
    ([1, 2], "params"),
])
def test_a_bad_start_is_refused_naming_the_field(api, body, field):
    code, err = api("POST", "runs", body=body)
    assert code == 400 and err["field"] == field, err
    assert str(err["value"]) in err["message"] or err["field"] == "params"


def test_malformed_bodies_name_the_body(api):
    code, err = api("POST", "runs", raw=b"{not json")
    assert code == 400 and err["field"] == "body"
    code, err = api("POST", "sweeps", body={"sets": []})
    assert code == 400 and err["field"] == "sets"


def test_the_schema_is_the_parameter_sets_and_validation_speaks_the_clis_words(api):
    code, schema = api("GET", "schema")
    assert code == 200 and list(schema["properties"]) == [f.name for f in FIELDS]
    assert schema["properties"]["method"]["enum"] == ["fastica", "picard", "infomax"]
    assert schema["properties"]["n_components"]["default"] == 30
    code, doc = api("POST", "validate", body={"params": {**QUICK, "method": "pca", "n_components": "many",
                                                         "crop_tmin": 500, "crop_tmax": None}})
    fields = {p["field"]: p for p in doc["problems"]}
    assert code == 200 and doc["ok"] is False and set(fields) == {"method", "n_components", "crop_tmin"}
    with pytest.raises(Exception) as cli_error:
        IcaParams(method="pca")
    assert fields["method"]["message"] == str(cli_error.value)
    assert "500" in fields["crop_tmin"]["message"]  # past the recording's end, which the header knows
    assert api("POST", "validate", body={"params": QUICK})[1] == {"ok": True, "problems": []}


def test_a_recordings_header_bounds_the_dialog(api):
    code, head = api("GET", "recording", path=DEMO_FILENAME)
    assert code == 200 and head["nyquist"] == head["sfreq"] / 2 and head["channel_counts"]["eeg"] > 0
    assert head["duration"] > 10
    for path in ("../bob", "/etc/passwd", "", "missing.fif"):
        code, err = api("GET", "recording", path=path)
        assert code == 400 and err["field"] in ("path", "raw_file_path"), (path, err)


def test_a_recordings_header_is_read_again_when_the_file_changes(api, jp_root_dir):
    from test_widgets_form import write_recording

    write_recording(jp_root_dir / "short_raw.fif", 6.0)
    first = api("GET", "recording", path="short_raw.fif")[1]
    assert api("GET", "recording", path="short_raw.fif")[1] == first and round(first["duration"]) == 6
    draft = {**QUICK, "raw_file_path": "short_raw.fif", "crop_tmin": 7, "crop_tmax": None, "n_components": 3}
    assert [p["field"] for p in api("POST", "validate", body={"params": draft})[1]["problems"]] == ["crop_tmin"]
    (jp_root_dir / "short_raw.fif").unlink()
    write_recording(jp_root_dir / "short_raw.fif", 9.0, n=4)  # another recording under the same name
    again = api("GET", "recording", path="short_raw.fif")[1]
    assert round(again["duration"]) == 9 and again["channel_counts"] == {"eeg": 4}
    problems = api("POST", "validate", body={"params": draft})[1]
    assert problems["ok"], problems  # validation reads the header as it is now: 7 s is inside 9 s


def test_the_extension_is_enabled_by_its_config_file():
    config = json.loads((Path(__file__).parents[1] / "jupyter-config" / "jupyter_server_config.d"
                         / "labkit.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"labkit.lab": True}


def test_the_openapi_description_lists_every_route_and_method():
    import re

    import yaml


    spec = yaml.safe_load((Path(handlers.__file__).parent / "openapi.yaml").read_text())
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}
    served = set()
    for pattern, handler in handlers.routes():
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.removeprefix("/labkit"))
        actions = re.search(r"\{action\}", path)
        for method in ("get", "post", "put", "delete"):
            if method.upper() in handler.__dict__ or method in handler.__dict__:
                for p in ([path.replace("{action}", a) for a in ("cancel", "rerun", "apply")] if actions else [path]):
                    served.add((p, method))
    assert served == described


def test_a_sweep_fills_its_matrix_and_its_runs_compare_with_matched_maps(api, jp_root_dir):
    sets = [{**QUICK, "random_state": seed} for seed in (1, 2)]
    code, started = api("POST", "sweeps", body={"sets": sets, "sweep_id": "two-seeds"})
    assert code == 201 and started["sweep_id"] == "two-seeds" and len(started["runs"]) == 2
    code, matrix = api("GET", "sweeps", "two-seeds")
    assert code == 200 and (matrix["recordings"], matrix["methods"], matrix["seeds"]) == ([DEMO_FILENAME], ["picard"],
                                                                                         [1, 2])
    assert matrix["complete"] is False and matrix["compare_command"] is None
    for run in started["runs"]:
        wait_done(api, run["run_id"], timeout=240)
    matrix = api("GET", "sweeps", "two-seeds")[1]
    assert matrix["complete"] is True and sum(matrix["counts"].values()) == 2, matrix
    assert {c["seed"]: c["run"]["run_id"] for c in matrix["cells"]} == {1: started["runs"][0]["run_id"],
                                                                       2: started["runs"][1]["run_id"]}
    assert matrix["compare_command"].endswith("--sweep two-seeds") and str(jp_root_dir) in matrix["compare_command"]
    code, err = api("POST", "sweeps", "two-seeds", "rerun-failed")
    assert code == 409 and "no failed" in err["message"]
    assert api("GET", "sweeps", "no-such-sweep")[0] == 404

    a, b = (r["run_id"] for r in started["runs"])
    code, doc = api("GET", "compare", runs=f"{a},{b}")
    assert code == 200 and doc["reference"] == a and [r["run_id"] for r in doc["runs"]] == [a, b]
    partners = [m["matched"][0]["component"] for m in doc["matches"]]
    assert sorted(partners) == list(range(5))  # one-to-one
    assert all(abs(m["matched"][0]["r"]) <= 1 for m in doc["matches"])
    assert sum(abs(m["matched"][0]["r"]) > 0.9 for m in doc["matches"]) >= 3  # same data, another seed: same maps
    back = api("GET", "compare", runs=f"{b},{a}")[1]  # the matching is one-to-one: reversed, it is the inverse
    assert {m["matched"][0]["component"]: m["component"] for m in back["matches"]} == dict(enumerate(partners))
    assert {m["key"] for m in doc["metrics"]} >= {"method", "n_components", "fit_time_s"}
    for runs in (a, f"{a},{a}", f"{a},old-failed", f"{a},bobs-run"):
        code, err = api("GET", "compare", runs=runs)
        assert code in (400, 404, 409) and "message" in err, (runs, err)
    assert api("GET", "compare", runs=a)[1]["field"] == "runs"


def check_each_component_has_its_own_map_properties_and_scores(api, jp_root_dir, run_id: str, doc: dict) -> None:
    """The run view's parts of a succeeded run: maps, properties, scores with channel names, the form's cell."""
    assert doc["scores"]["columns"] == ["EOG1", "EOG2", "ECG"]  # the demo's channels, by their names
    assert [r["name"] for r in doc["scores"]["rows"]] == [f"ICA{i:03d}" for i in range(5)]
    assert all(len(r["values"]) == 3 and all(-1 <= v <= 1 for v in r["values"]) for r in doc["scores"]["rows"])
    folder = next(jp_root_dir.glob(f"*{run_id}"))
    drawn_by_the_run = [api("GET", "runs", run_id, "components", str(i), "topomap.png") for i in range(5)]
    assert [png for _, png in drawn_by_the_run] == [(folder / component_map(i)).read_bytes() for i in range(5)]
    shutil.rmtree(folder / MAPS_DIR)  # a run from before runs drew their own maps: the server draws them
    maps = [api("GET", "runs", run_id, "components", "0", "topomap.png")]
    aside = (folder / ICA_FILE).rename(folder / "aside.fif")  # the first map drew them all from one read
    try:
        maps += [api("GET", "runs", run_id, "components", str(i), "topomap.png") for i in range(1, 5)]
    finally:
        aside.rename(folder / ICA_FILE)
    assert all(code == 200 and png.startswith(b"\x89PNG") for code, png in maps), [c for c, _ in maps]
    assert len({png for _, png in maps}) == 5  # each component its own map
    assert [png for _, png in maps] == [png for _, png in drawn_by_the_run], "drawn here as the run draws them"
    code, props = api("GET", "runs", run_id, "components", "1", "properties.png")
    assert code == 200 and props.startswith(b"\x89PNG") and len(props) > len(maps[1][1])
    for bad in ("5", "-1", "x", "01x"):
        code, err = api("GET", "runs", run_id, "components", bad, "topomap.png")
        assert code == 400 and err["field"] == "component" and "0 to 4" in err["allowed"], (bad, err)
    code, err = api("GET", "runs", "old-failed", "components", "0", "topomap.png")
    assert code == 409 and "failed" in err["message"]

    code, form = api("GET", "runs", run_id, "form")
    assert code == 200 and form["path"] == f"ica-form-{run_id}.ipynb"
    tree = ast.parse(form["source"])
    assert ast.unparse(tree.body[0]) == "from labkit.widgets import IcaForm"
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert len(calls) == 1 and calls[0].func.id == "IcaForm"  # one call, as the form's constructor takes it
    assert [ast.literal_eval(a) for a in calls[0].args] == [str(jp_root_dir)]
    assert {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords} == {"raw_file_path": DEMO_FILENAME}


def test_a_body_over_two_mib_is_refused_with_a_json_error(api):
    code, err = api("POST", "validate", raw=b'{"params": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert code == 400 and err["field"] == "body" and str(2 * 1024 * 1024) in err["allowed"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=10)
FIELD_VALUES = st.fixed_dictionaries({}, optional={f.name: JSON for f in FIELDS if f.name != "base_dir"})
PROPERTIES = settings(max_examples=40, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_named_refusal(code: int, doc, allowed: tuple[int, ...] = (400,)) -> None:
    assert code in allowed, (code, doc)
    if code == 400:
        assert isinstance(doc, dict) and isinstance(doc.get("field"), str), doc
        assert repr(doc["field"]) in doc["message"], doc  # named as given (an unknown key may be any text)


@PROPERTIES
@given(body=JSON | st.builds(lambda p: {"params": p}, FIELD_VALUES))
def test_any_start_body_that_is_not_a_set_is_refused_naming_its_field(api, body):
    if isinstance(body, dict) and isinstance(body.get("params"), dict):
        body["params"]["raw_file_path"] = "no-such-recording.fif"  # never a valid set: nothing starts
    code, doc = api("POST", "runs", body=body)
    assert_named_refusal(code, doc)


@PROPERTIES
@given(values=FIELD_VALUES | JSON)
def test_validation_of_any_draft_answers_its_problems_by_field(api, values):
    code, doc = api("POST", "validate", body={"params": values})
    assert_named_refusal(code, doc, (200, 400))
    if code == 200:
        assert all(repr(p["field"]) in p["message"] for p in doc["problems"]), doc


@PROPERTIES
@given(query=st.dictionaries(st.sampled_from(["state", "method", "page", "per_page", "q", "sweep", "tail", "x"]),
                             st.text(max_size=12), max_size=3),
       body=JSON)
def test_any_query_or_body_of_the_other_routes_is_answered_or_refused_by_field(api, query, body):
    code, doc = api("GET", "runs", **query)
    assert_named_refusal(code, doc, (200, 400))
    code, doc = api("POST", "sweeps", body=body if not isinstance(body, dict) else {**body, "sets": [body]})
    assert_named_refusal(code, doc)
    code, doc = api("GET", "compare", runs=query.get("q", ""))
    assert_named_refusal(code, doc, (400, 404))
    code, doc = api("GET", "recording", path=query.get("q", "") or "x")
    assert_named_refusal(code, doc)
    code, doc = api("PUT", "runs", "old-failed", "components", body=body)
    assert_named_refusal(code, doc, (400, 409))
    code, doc = api("GET", "runs", "old-failed", "log", tail=query.get("tail", "3"))
    assert_named_refusal(code, doc, (200, 400))


def test_what_the_server_keeps_drops_the_least_recently_used_first() -> None:
    from labkit.lab.kept import Kept

    kept: Kept[int] = Kept(2)
    made = []
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # "a" used last: "b" goes first
    assert kept.get_or_make("c", lambda: made.append("c") or 3) == 3
    assert "b" not in kept and "a" in kept and kept.get("c") == 3
    assert kept.get_or_make("c", lambda: made.append("again") or 0) == 3 and made == ["c"]
