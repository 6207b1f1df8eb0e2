"""The Jupyter server extension's REST API, against a real jupyter_server (pytest-jupyter's fixtures).

The server runs under a hub-like base URL (``/user/alice/``) with a base directory holding a
failed and a cancelled run; real runs are started through the API and followed to their end.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the server fixtures, their autouse ones scoped to this module
from tornado.httpclient import HTTPClientError

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.params import FIELDS
from labkit.results.folder import RunFolder
from labkit.results.layout import COMPONENTS_TSV

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

    def call(method: str, *path: str, body=None, raw: bytes | None = None, headers=None, **query):
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


def test_the_extension_is_enabled_by_its_config_file():
    config = json.loads((Path(__file__).parents[1] / "jupyter-config" / "jupyter_server_config.d"
                         / "labkit.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"labkit.lab": True}


def test_the_openapi_description_lists_every_route_and_method():
    import re

    import yaml

    from labkit.lab import handlers

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
