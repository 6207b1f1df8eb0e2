"""Stored runs through the hub service: a real JupyterHub, the real labkit service (its own process, holding
the store's credentials) and moto's S3 server on loopback. The user's side holds no store credentials."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from cluster_fixtures import Controllers
from hub_fixtures import Hub, module_emulator  # noqa: F401 (fixtures)
from s3_fixtures import ACCESS_KEY, S3, SECRET_KEY, s3_endpoint  # noqa: F401 (fixtures)
from test_store import _finished_run

from labkit.cli.main import main
from labkit.params import IcaParams
from labkit.results.layout import ICA_FILE
from labkit.results.provenance import fingerprint
from labkit.results.store import CorruptObject, NotStored, fetch_recording, push_recording, pushed_as, upload_folder
from labkit.runners.cluster.names import kubespawner_slug, store_slug
from labkit.runners.cluster.settings import StoreSettings
from labkit.runners.hub import HubBackend
from labkit.runners.listing import list_runs
from labkit.runners.machine import MachineBackend

PREFIX = "labkit/{username}"
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


class StoreHub(Hub):
    """The hub fixture's service with an artifact store in its settings and the store's credentials."""

    bucket = ""
    endpoint = ""

    def start_service(self, *args: Any, **kwargs: Any) -> None:
        doc = yaml.safe_load(self.settings_file.read_text())
        doc["cluster"]["store"] = {"kind": "s3", "bucket": self.bucket, "endpoint": self.endpoint, "prefix": PREFIX,
                                   "secret_name": "labkit-store"}
        doc["cluster"]["profiles"]["edge-store"] = {"use_store": True, "node_selector": {"node-role.kubernetes.io/edge": ""}}
        self.settings_file.write_text(yaml.safe_dump(doc))
        super().start_service(*args, **kwargs)

    def service_env(self) -> dict[str, str]:
        return {**super().service_env(), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3m(s3_endpoint: str) -> S3:  # noqa: F811
    found = S3(s3_endpoint, "labkit-hub-" + secrets.token_hex(6))
    found.client().create_bucket(Bucket=found.bucket)
    return found


@pytest.fixture(scope="module")
def store_hub(module_emulator, s3m: S3, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    if shutil.which("configurable-http-proxy") is None:
        pytest.fail("configurable-http-proxy is missing: make install-test installs it (npm)")
    cls = type("ModuleStoreHub", (StoreHub,), {"bucket": s3m.bucket, "endpoint": s3m.endpoint})
    h = cls(module_emulator, tmp_path_factory.mktemp("hub"))
    try:
        yield h
    finally:
        h.close()


def user_store(s3m: S3, user: str):
    """``user``'s part of the bucket, opened as a pod would (with the credentials the pod gets from its Secret)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return StoreSettings(kind="s3", bucket=s3m.bucket, endpoint=s3m.endpoint, prefix=PREFIX).open(user)


@pytest.fixture(scope="module")
def alices_run(s3m: S3, demo_source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run committed to alice's part of the store (as her pod uploads it) and its pod's folder."""
    pod = tmp_path_factory.mktemp("pod")
    shutil.copytree(demo_source, pod, dirs_exist_ok=True)
    folder = _finished_run(pod, "hub-stored-1")
    manifest = upload_folder(user_store(s3m, "alice"), folder)
    return {"folder": folder, "manifest": manifest, "run_id": "hub-stored-1"}


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The user's server: no store credentials anywhere boto3 looks."""
    for key in AWS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


def test_store_prefixes_are_injective_where_kubespawner_slugs_collide() -> None:
    """Names KubeSpawner's slug maps to one directory (its 8-digit hash collides) never share a store prefix."""
    # two hub names whose slugs collide: found by trying a few thousand punctuations between "a" and "b"
    first, second = "a+#!*b", "a+._@=b"
    assert first and second and kubespawner_slug(first) == kubespawner_slug(second)
    settings = StoreSettings(kind="s3", bucket="b", prefix=PREFIX)
    assert settings.url(first) != settings.url(second)
    assert store_slug(first).startswith("a-b---") and bytes.fromhex(store_slug(first).rsplit("---")[1]).decode() == first
    assert store_slug("alice") == "alice" and store_slug("alice.b@lab.org") != store_slug("alice-b-lab-org-00e968")
    with pytest.raises(Exception, match="names no user"):
        StoreSettings(kind="s3", bucket="b", prefix="labkit/shared").url("alice")


def test_alice_lists_and_fetches_her_stored_run_through_the_service(store_hub: Hub, alices_run: dict,
                                                                    no_credentials, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    alice = HubBackend(url=store_hub.service_url, token=store_hub.tokens["alice"], timeout=10.0)
    stored = {r.run_id: r for r in alice.stored()}
    assert stored["hub-stored-1"].state == "succeeded" and stored["hub-stored-1"].backend == "store"
    home = tmp_path / "home"
    home.mkdir()
    listed = [r.run_id for r in list_runs(MachineBackend(home), alice)]
    assert listed.count("hub-stored-1") == 1
    for key, value in {"LABKIT_HUB_SERVICE_URL": store_hub.service_url, "JUPYTERHUB_API_TOKEN": store_hub.tokens["alice"],
                       "JUPYTERHUB_USER": "alice"}.items():
        monkeypatch.setenv(key, value)
    # labkit runs on her server: the stored run, read through the service with no store credentials here
    listing = CliRunner().invoke(main, ["runs", "--base-dir", str(home)])
    assert listing.exit_code == 0, listing.output
    row = [line for line in listing.output.splitlines() if line.startswith("hub-stored-1 ")]
    assert len(row) == 1 and "succeeded" in row[0] and "fastica" in row[0], listing.output
    result = CliRunner().invoke(main, ["fetch", "hub-stored-1", "--base-dir", str(home)])
    assert result.exit_code == 0, result.output
    path = home / "PreExperiment_ICA_hub-stored-1"
    assert result.output.splitlines()[-1] == str(path)
    source = alices_run["folder"]
    for f in source.rglob("*"):
        if f.is_file() and not f.name.startswith("."):
            assert (path / f.relative_to(source)).read_bytes() == f.read_bytes()
    assert [p.name for p in home.iterdir()] == [path.name]  # no hidden folder left behind
    again = CliRunner().invoke(main, ["fetch", "hub-stored-1", "--base-dir", str(home)])
    assert again.exit_code == 0 and "already here" in again.output
    assert alice.fetch("hub-stored-1", home).path == path  # the runs interface: left as it is
    # fetched home, it is listed once (here), no longer as a stored run
    assert [r.backend for r in list_runs(MachineBackend(home), alice) if r.run_id == "hub-stored-1"] == ["machine"]
    for text in (result.output, again.output, (store_hub.dir / "service.log").read_text(errors="replace")):
        assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_bob_never_lists_or_fetches_alices_stored_run(store_hub: Hub, alices_run: dict, s3m: S3, tmp_path: Path,
                                                      no_credentials) -> None:
    listed = store_hub.call("bob", "GET", "api/stored")
    assert listed.status_code == 200 and listed.json()["runs"] == [], listed.text
    upload = alices_run["manifest"]["upload"]
    for path in ("manifest.json", f"uploads/{upload}/{ICA_FILE}"):
        resp = store_hub.call("bob", "GET", f"api/stored/hub-stored-1/{path}")
        assert resp.status_code == 404, resp.text
        assert upload not in resp.text and "alice" not in resp.text
    bob = HubBackend(url=store_hub.service_url, token=store_hub.tokens["bob"], timeout=10.0)
    with pytest.MonkeyPatch.context() as mp:  # labkit runs on bob's server
        for key, value in {"LABKIT_HUB_SERVICE_URL": store_hub.service_url,
                           "JUPYTERHUB_API_TOKEN": store_hub.tokens["bob"], "JUPYTERHUB_USER": "bob"}.items():
            mp.setenv(key, value)
        listing = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path)])
    assert listing.exit_code == 0 and "hub-stored-1" not in listing.output, listing.output
    with pytest.raises(NotStored) as err:
        bob.fetch("hub-stored-1", tmp_path)
    assert err.value.exit_code == 7 and list(tmp_path.iterdir()) == []
    # the squatter literally named as alice.b@lab.org's old slug sees nothing of alice.b@lab.org's
    upload_folder(user_store(s3m, "alice.b@lab.org"), _finished_run(alices_run["folder"].parent, "hub-stored-ab"))
    assert [r["run_id"] for r in store_hub.call("alice.b@lab.org", "GET", "api/stored").json()["runs"]] == ["hub-stored-ab"]
    assert store_hub.call("alice-b-lab-org-00e968", "GET", "api/stored").json()["runs"] == []
    assert store_hub.call("alice-b-lab-org-00e968", "GET", "api/stored/hub-stored-ab/manifest.json").status_code == 404


def test_a_revoked_token_reads_nothing_stored(store_hub: Hub, alices_run: dict) -> None:
    token, token_id = store_hub.new_token("alice")
    assert store_hub.call(token, "GET", "api/stored").status_code == 200
    assert store_hub.admin("DELETE", f"users/alice/tokens/{token_id}").status_code == 204
    for path in ("api/stored", "api/stored/hub-stored-1/manifest.json"):
        resp = store_hub.call(token, "GET", path)
        assert resp.status_code == 403 and "revoked" in resp.json()["error"], resp.text
    assert store_hub.call(None, "GET", "api/stored").status_code == 401
    url = f"{store_hub.service_url}api/stored?token={store_hub.tokens['alice']}"
    assert requests.get(url, timeout=20).status_code == 400  # never a token in a URL


def test_path_tricks_in_a_stored_run_request_are_refused(store_hub: Hub, alices_run: dict) -> None:
    """Through the proxy (which resolves dots) and straight to the service (which sees them decoded)."""
    upload, digest = alices_run["manifest"]["upload"], alices_run["manifest"]["files"][0]["sha256"]
    direct = f"http://127.0.0.1:{store_hub.service_port}/services/labkit/"
    headers = {"Authorization": f"token {store_hub.tokens['alice']}"}
    for base in (store_hub.service_url, direct):
        for path in ("%2E%2E/manifest.json", "hub-stored-1%2F..%2Fx/manifest.json", "..%2Fbob/manifest.json",
                     f"hub-stored-1/uploads/{upload}/%2E%2E/%2E%2E/%2E%2E/bob/runs/x/manifest.json",
                     f"hub-stored-1/uploads/{upload}/figures%2F..%2F..%2F..%2Fmanifest.json",
                     f"hub-stored-1/uploads/{upload}//{ICA_FILE}", f"hub-stored-1/uploads/{upload}/{ICA_FILE}%00",
                     f"hub-stored-1/uploads/{upload}/figures%5C{ICA_FILE}"):
            resp = requests.get(base + "api/stored/" + path, timeout=20, headers=headers)
            assert resp.status_code in (400, 404), (base, path, resp.text)
            assert digest not in resp.text and "Traceback" not in resp.text  # nothing of the manifest
            if base == direct and resp.headers.get("Content-Type") == "application/json":
                assert resp.json()["error"]
    for path in ("hub-stored-1/uploads/x/" + ICA_FILE, f"hub-stored-1/upload-{upload}.json"):
        resp = requests.get(direct + "api/stored/" + path, timeout=20, headers=headers)
        assert resp.status_code == 404 and "has no file" in resp.json()["error"], resp.text  # only committed files
    bad = requests.get(direct + "api/stored/%2E%2E/manifest.json", timeout=20, headers=headers)
    assert bad.status_code == 400 and bad.json()["field"] == "run_id", bad.text


def test_a_corrupted_stored_object_is_refused_by_name(store_hub: Hub, s3m: S3, demo_source: Path, tmp_path: Path,
                                                      no_credentials, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = tmp_path / "pod"
    shutil.copytree(demo_source, pod)
    manifest = upload_folder(user_store(s3m, "alice"), _finished_run(pod, "hub-corrupt-1"))
    key = f"runs/hub-corrupt-1/uploads/{manifest['upload']}/{ICA_FILE}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        s3m.client().put_object(Bucket=s3m.bucket, Key=f"labkit/alice/{key}", Body=b"flipped bits")
    home = tmp_path / "home"
    home.mkdir()
    alice = HubBackend(url=store_hub.service_url, token=store_hub.tokens["alice"], timeout=10.0)
    with pytest.raises(CorruptObject, match=re.escape(f"{key} is corrupted")):
        alice.fetch("hub-corrupt-1", home)
    for key_, value in {"LABKIT_HUB_SERVICE_URL": store_hub.service_url,
                        "JUPYTERHUB_API_TOKEN": store_hub.tokens["alice"], "JUPYTERHUB_USER": "alice"}.items():
        monkeypatch.setenv(key_, value)
    result = CliRunner().invoke(main, ["fetch", "hub-corrupt-1", "--base-dir", str(home)])
    assert result.exit_code == 3 and f"{key} is corrupted" in result.output, result.output
    assert list(home.iterdir()) == []  # no half folder, not even a hidden one
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") is None


def test_a_hub_submit_pins_the_recording_by_the_sha_its_server_computed(store_hub: Hub, s3m: S3, demo_dir: Path,
                                                                        tmp_path: Path, no_credentials) -> None:
    """The user's server sends the recording's SHA-256; the store-mode Job's pod fetches and verifies exactly those
    bytes, whatever was pushed under the recording's name since."""
    raw = demo_dir / "labkit-demo" / "demo_raw.fif"
    name = "labkit-demo/demo_raw.fif"
    store = user_store(s3m, "alice")
    sha = push_recording(store, raw, name=name).sha256
    alice = HubBackend(url=store_hub.service_url, token=store_hub.tokens["alice"], timeout=10.0, profile="edge-store")
    params = IcaParams(base_dir=str(demo_dir), raw_file_path=name, n_components=7)
    run = alice.submit(params)
    job = Controllers(store_hub.emulator.api_client()).wait_for_job(run.name)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["LABKIT_RECORDING_SHA256"] == sha == fingerprint(raw) and env["LABKIT_CLUSTER_USE_STORE"] == "true"
    # the same name pushed again with other bytes: the run still fetches (and verifies) what it was submitted on
    raw.write_bytes(raw.read_bytes()[:-16] + bytes(16))
    assert push_recording(store, raw, name=name).sha256 != sha and pushed_as(store, name) != sha
    original = fetch_recording(store, env["LABKIT_RECORDING_SHA256"], tmp_path / "pod")
    assert fingerprint(original) == sha
    body = {"params": IcaParams(base_dir=str(demo_dir), raw_file_path=name, n_components=6).to_dict(),
            "profile": "edge-store"}
    for recordings, field in [(None, "recordings"), ({name: "A" * 64}, f"recordings.{name}"),
                              ({name: sha[:40]}, f"recordings.{name}"), ({"other.fif": sha}, "recordings.other.fif")]:
        resp = store_hub.call("alice", "POST", "api/runs", json={**body, "recordings": recordings})
        assert resp.status_code == 400 and resp.json()["field"] == field, resp.text
    for recordings in ([sha], {name: 7}, "x" * 64):  # malformed: refused by the body's check, in one line
        resp = store_hub.call("alice", "POST", "api/runs", json={**body, "recordings": recordings})
        assert resp.status_code == 400 and resp.json()["field"].startswith("recordings"), resp.text
    sweep = store_hub.call("alice", "POST", "api/sweeps", json={"sets": [body["params"]], "profile": "edge-store"})
    assert sweep.status_code == 400 and sweep.json()["field"] == "recordings", sweep.text
    plain = store_hub.call("alice", "POST", "api/runs", json={"params": body["params"]})  # the share: none needed
    assert plain.status_code == 201, plain.text
