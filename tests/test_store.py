"""The artifact store against a real S3 server on loopback (moto's) and a directory: push by content,
sidecars, concurrent pushes, result upload and commit, fetch home verified, corruption refused, no credentials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from s3_fixtures import ACCESS_KEY, SECRET_KEY, s3, s3_endpoint  # noqa: F401 (fixtures)

from labkit.cli.main import main
from labkit.params import IcaParams
from labkit.results import provenance
from labkit.results.folder import RunFolder
from labkit.results.layout import ICA_FILE, METRICS_FILE
from labkit.results.reading import find_run
from labkit.results.s3 import open_store
from labkit.results.store import (
    AlreadyHere,
    CorruptObject,
    DirStore,
    StoreError,
    fetch_recording,
    fetch_run,
    push_recording,
    pushed_as,
    stored_results,
    upload_folder,
)

REAL = Path(__file__).resolve().parent / "data" / "real"


def _labkit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    exe = shutil.which("labkit") or str(Path(sys.executable).with_name("labkit"))
    return subprocess.Popen([exe, *args], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture
def store(s3):
    return open_store(s3.url(), endpoint=s3.endpoint)


@pytest.fixture(params=["s3", "dir"])
def any_store(request, s3, tmp_path):
    return open_store(s3.url(), endpoint=s3.endpoint) if request.param == "s3" else DirStore(tmp_path / "store")


def _keys(s3, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def test_push_twice_stores_once_with_sidecars_and_comes_back_verified(s3, tmp_path):
    base = tmp_path / "home"
    base.mkdir()
    for name in ("test.vhdr", "test.vmrk", "test.eeg", "test_raw.set", "test_raw.fdt"):
        shutil.copy(REAL / name, base / name)
    runner = CliRunner()
    args = ["push", "test.vhdr", "--base-dir", str(base), "--store", s3.url(), "--endpoint", s3.endpoint]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    sha = provenance.fingerprint(base / "test.vhdr")
    assert first.output.splitlines()[-1] == sha and "3 files" in first.output and "pushed" in first.output
    keys = _keys(s3)
    assert keys == sorted([*(f"labkit/anna/recordings/{sha}/{k}" for k in
                             ("manifest.json", "files/test.vhdr", "files/test.vmrk", "files/test.eeg")),
                           "labkit/anna/names/test.vhdr.json"])  # its name, for Jobs built without the file
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "nothing uploaded" in again.output and _keys(s3) == keys
    assert SECRET_KEY not in first.output + again.output and ACCESS_KEY not in first.output
    # EEGLAB: the .fdt goes with the .set
    eeglab = runner.invoke(main, ["push", "test_raw.set", "--base-dir", str(base), "--store", s3.url(),
                                  "--endpoint", s3.endpoint])
    assert eeglab.exit_code == 0 and "2 files" in eeglab.output
    pod = tmp_path / "pod"
    store = open_store(s3.url(), endpoint=s3.endpoint)
    assert pushed_as(store, "test.vhdr") == sha
    main_file = fetch_recording(store, sha, pod)
    assert main_file == pod / "test.vhdr"
    for name in ("test.vhdr", "test.vmrk", "test.eeg"):
        assert (pod / name).read_bytes() == (base / name).read_bytes()


def test_a_missing_recording_is_named(s3, tmp_path):
    result = CliRunner().invoke(main, ["push", "nope.fif", "--base-dir", str(tmp_path), "--store", s3.url(),
                                       "--endpoint", s3.endpoint])
    assert result.exit_code == 2 and "recording" in result.output and "nope.fif" in result.output


def test_a_recording_outside_the_base_directory_is_refused(s3, tmp_path):
    """Neither '..' nor a symlink pointing out of the user's directory reaches the store."""
    base = tmp_path / "home"
    base.mkdir()
    (tmp_path / "secret.fif").write_bytes(b"not yours")
    (base / "link.fif").symlink_to(tmp_path / "secret.fif")
    for name in ("../secret.fif", "link.fif", str(tmp_path / "secret.fif")):
        result = CliRunner().invoke(main, ["push", name, "--base-dir", str(base), "--store", s3.url(),
                                           "--endpoint", s3.endpoint])
        assert result.exit_code == 2 and "inside" in result.output and name in result.output, result.output
        assert "Traceback" not in result.output
    assert _keys(s3) == []


def test_concurrent_pushes_from_threads_and_processes_store_it_once(s3, store, demo_dir):
    raw = demo_dir / "labkit-demo" / "demo_raw.fif"
    results, errors = [], []

    def push() -> None:
        try:
            results.append(push_recording(open_store(s3.url(), endpoint=s3.endpoint), raw))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=push) for _ in range(3)]
    procs = [_labkit("push", "labkit-demo/demo_raw.fif", "--base-dir", str(demo_dir), "--store", s3.url(),
                     "--endpoint", s3.endpoint) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert not errors and all(p.returncode == 0 for p in procs), outputs
    shas = {r.sha256 for r in results} | {out.splitlines()[-1] for out, _ in outputs}
    assert len(shas) == 1
    (sha,) = shas
    files = [k for k in _keys(s3) if "/recordings/" in k]
    assert files == [f"labkit/anna/recordings/{sha}/files/demo_raw.fif", f"labkit/anna/recordings/{sha}/manifest.json"]
    manifest = json.loads(store.get_bytes(f"recordings/{sha}/manifest.json"))
    assert manifest["sha256"] == sha and [f["name"] for f in manifest["files"]] == ["demo_raw.fif"]


def test_a_corrupted_recording_object_is_refused_by_name(s3, store, demo_dir, tmp_path):
    pushed = push_recording(store, demo_dir / "labkit-demo" / "demo_raw.fif")
    key = f"labkit/anna/recordings/{pushed.sha256}/files/demo_raw.fif"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"not the recording")
    with pytest.raises(CorruptObject, match=f"{key} is corrupted") as err:
        fetch_recording(store, pushed.sha256, tmp_path / "pod")
    assert err.value.exit_code == 3
    assert not (tmp_path / "pod" / "demo_raw.fif").exists()  # never left where a run would read it


def _finished_run(base: Path, run_id: str, *, fail: bool = False) -> Path:
    """A small result folder as labkit writes one (no ICA fit: the store moves files, it does not read them)."""
    params = IcaParams(base_dir=str(base), raw_file_path="labkit-demo/demo_raw.fif", n_components=5)
    folder = RunFolder.create(params, run_id)
    folder.start()
    folder.file(ICA_FILE).write_bytes(os.urandom(200_000))
    folder.file(METRICS_FILE).write_text(json.dumps({"method": "fastica", "fit_time_s": 1.5, "n_components": 5}))
    (folder.path / "figures").mkdir()
    (folder.path / "figures" / "topomaps_0.png").write_bytes(b"\x89PNG" + os.urandom(1000))
    folder.fail("the test says so") if fail else folder.succeed()
    return folder.path


def test_a_committed_run_lists_and_fetches_home_atomically_and_verified(any_store, demo_dir, tmp_path):
    pod = tmp_path / "pod"
    shutil.copytree(demo_dir, pod)
    done = _finished_run(pod, "store-ok-1")
    failed = _finished_run(pod, "store-failed-1", fail=True)
    upload_folder(any_store, done)
    upload_folder(any_store, failed)
    listed = {r.run_id: r for r in stored_results(any_store)}
    assert listed["store-ok-1"].state == "succeeded" and listed["store-ok-1"].metrics["fit_time_s"] == 1.5
    assert listed["store-failed-1"].state == "failed" and listed["store-failed-1"].error == "the test says so"
    assert listed["store-ok-1"].params.n_components == 5
    home = tmp_path / "home"
    home.mkdir()
    path = fetch_run(any_store, "store-ok-1", home)
    assert path == home / "PreExperiment_ICA_store-ok-1"
    for f in done.rglob("*"):
        if f.is_file():
            assert (path / f.relative_to(done)).read_bytes() == f.read_bytes()
    assert find_run(home, "store-ok-1").state == "succeeded"
    assert fetch_run(any_store, "store-failed-1", home).name == "PreExperiment_ICA_store-failed-1.failed"
    assert [p.name for p in home.iterdir()] and not [p for p in home.iterdir() if p.name.startswith(".")]


def test_labkit_fetch_never_overwrites_and_refuses_a_corrupted_result(s3, store, demo_dir, tmp_path):
    pod = tmp_path / "pod"
    shutil.copytree(demo_dir, pod)
    manifest = upload_folder(store, _finished_run(pod, "store-cli-1"))
    home = tmp_path / "home"
    home.mkdir()
    args = ["fetch", "store-cli-1", "--base-dir", str(home), "--store", s3.url(), "--endpoint", s3.endpoint]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == str(home / "PreExperiment_ICA_store-cli-1")
    marker = home / "PreExperiment_ICA_store-cli-1" / "mine.txt"
    marker.write_text("kept")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "already here" in again.output and marker.read_text() == "kept"
    shutil.rmtree(home / "PreExperiment_ICA_store-cli-1")
    key = f"labkit/anna/runs/store-cli-1/uploads/{manifest['upload']}/{ICA_FILE}"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"flipped bits")
    corrupt = CliRunner().invoke(main, args)
    assert corrupt.exit_code == 3 and f"{key} is corrupted" in corrupt.output
    assert list(home.iterdir()) == []  # no half folder, not even a hidden one
    missing = CliRunner().invoke(main, ["fetch", "no-such-run", "--base-dir", str(home), "--store", s3.url(),
                                        "--endpoint", s3.endpoint])
    assert missing.exit_code == 7 and "no-such-run" in missing.output


def test_an_upload_killed_midway_reads_failed_and_a_resubmit_starts_clean(s3, store, demo_dir, tmp_path,
                                                                          monkeypatch):
    pod = tmp_path / "pod"
    shutil.copytree(demo_dir, pod)
    folder = _finished_run(pod, "store-killed-1")
    code = ("import sys; from pathlib import Path; from labkit.results.s3 import open_store; from labkit.results.store import upload_folder; "
            f"upload_folder(open_store({s3.url()!r}, endpoint={s3.endpoint!r}), Path({str(folder)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "LABKIT_PAUSE_AT": "store-upload"})
    deadline = time.monotonic() + 60
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        assert proc.poll() is None and time.monotonic() < deadline, "the upload never reached its pause point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # killed mid-upload: one file stored, no manifest
    proc.wait(10)
    assert not store.exists("runs/store-killed-1/manifest.json")
    (run,) = [r for r in stored_results(store) if r.run_id == "store-killed-1"]
    assert run.state == "running"  # its heartbeat is fresh: it may still be uploading
    monkeypatch.setenv("LABKIT_STALE_S", "0.5")
    time.sleep(0.6)
    (run,) = [r for r in stored_results(store) if r.run_id == "store-killed-1"]
    assert run.state == "failed" and "cut short (1 of" in run.error and "killed mid-upload" in run.error
    with pytest.raises(StoreError, match="is failed: its upload was cut short"):
        fetch_run(store, "store-killed-1", tmp_path)
    monkeypatch.delenv("LABKIT_STALE_S")
    manifest = upload_folder(store, folder)  # the resubmitted pod's upload
    keys = store.keys("runs/store-killed-1/")
    assert keys == sorted(["runs/store-killed-1/manifest.json",
                           *(f"runs/store-killed-1/uploads/{manifest['upload']}/{f['name']}" for f in manifest["files"])])
    (run,) = [r for r in stored_results(store) if r.run_id == "store-killed-1"]
    assert run.state == "succeeded"


def test_the_runs_interface_lists_stored_runs_and_fetches_them_home(any_store, demo_dir, tmp_path):
    from labkit.runners.cluster.submission import stored_runs
    from labkit.runners.machine import MachineBackend

    pod = tmp_path / "pod"
    shutil.copytree(demo_dir, pod)
    upload_folder(any_store, _finished_run(pod, "store-iface-1"))
    upload_folder(any_store, _finished_run(pod, "store-iface-2", fail=True))
    told = {r.run_id: r for r in stored_runs(any_store)}
    assert {k: (r.state, r.backend) for k, r in told.items()} == {"store-iface-1": ("succeeded", "store"),
                                                                  "store-iface-2": ("failed", "store")}
    assert told["store-iface-2"].reason == "the test says so" and told["store-iface-1"].method == "fastica"
    assert [r.run_id for r in stored_runs(any_store, exclude=["store-iface-1"])] == ["store-iface-2"]
    home = tmp_path / "home"
    home.mkdir()
    backend = MachineBackend(home)
    result = backend.fetch("store-iface-1", any_store)
    assert result.state == "succeeded" and result.path.parent == home
    assert backend.status("store-iface-1").state == "succeeded"  # a local run now
    assert backend.fetch("store-iface-1", any_store).path == result.path  # again: left as it is


def test_a_step_whose_recording_differs_from_its_fingerprint_is_refused(demo_dir):
    """An Argo artifact step names its recording's fingerprint; other bytes under that name are refused (exit 3)."""
    env = {"BASE_DIR": str(demo_dir), "RAW_FILE_PATH": "labkit-demo/demo_raw.fif", "LABKIT_RECORDING_SHA256": "0" * 64,
           "LABKIT_RUN_ID": "store-verify-1"}
    proc = _labkit("entrypoint", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert f"has the fingerprint {provenance.fingerprint(demo_dir / 'labkit-demo' / 'demo_raw.fif')}" in err
    assert not list(demo_dir.glob("PreExperiment_ICA_*"))  # refused before any folder was made


def test_a_store_pod_names_a_recording_never_pushed(s3, tmp_path):
    """A Job built where the recording is not visible names it by path; unpushed, the pod says what to do (exit 7)."""
    pod = tmp_path / "pod"
    pod.mkdir()
    env = {"BASE_DIR": str(pod), "RAW_FILE_PATH": "eeg/s01_raw.fif", "LABKIT_RUN_ID": "store-unpushed-1",
           "LABKIT_CLUSTER_USE_STORE": "true", "LABKIT_CLUSTER_STORE__KIND": "s3",
           "LABKIT_CLUSTER_STORE__BUCKET": s3.bucket, "LABKIT_CLUSTER_STORE__PREFIX": "labkit/anna",
           "LABKIT_CLUSTER_STORE__ENDPOINT": s3.endpoint}
    proc = _labkit("entrypoint", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 7, err
    assert "no recording pushed as eeg/s01_raw.fif" in err and "labkit push eeg/s01_raw.fif" in err
    assert SECRET_KEY not in out + err


def test_labkit_runs_says_when_the_store_cannot_be_reached_and_lists_the_local_runs(demo_dir, monkeypatch):
    _finished_run(demo_dir, "store-local-1")
    for key in [k for k in os.environ if k.startswith("LABKIT_CLUSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LABKIT_CLUSTER_STORE__KIND", "s3")
    monkeypatch.setenv("LABKIT_CLUSTER_STORE__BUCKET", "labkit")
    monkeypatch.setenv("LABKIT_CLUSTER_STORE__ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("JUPYTERHUB_USER", "anna")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    result = CliRunner().invoke(main, ["runs", "--base-dir", str(demo_dir)])
    assert result.exit_code == 0, result.output
    assert "store-local-1" in result.output
    assert "the store's runs are not listed: cannot list runs/ in s3://labkit/labkit/anna" in result.output
    assert SECRET_KEY not in result.output


def test_two_fetches_of_one_run_at_once_leave_one_folder(store, demo_dir, tmp_path):
    pod = tmp_path / "pod"
    shutil.copytree(demo_dir, pod)
    upload_folder(store, _finished_run(pod, "store-race-1"))
    home = tmp_path / "home"
    home.mkdir()
    outcomes: list[str] = []

    def fetch() -> None:
        try:
            fetch_run(store, "store-race-1", home)
            outcomes.append("fetched")
        except AlreadyHere:
            outcomes.append("already here")

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("fetched") == 1 and outcomes.count("already here") == 3
    assert [p.name for p in home.iterdir()] == ["PreExperiment_ICA_store-race-1"]
    assert find_run(home, "store-race-1").state == "succeeded"


def test_the_one_listing_every_face_shows_holds_stored_runs_once(s3, demo_dir, tmp_path, monkeypatch):
    """labkit.runners.listing (the form's History and jobs view, the server extension): a stored run is listed
    beside the local ones, filtered like them, and a run fetched home is listed once, as a local run."""
    from labkit.runners.listing import list_runs
    from labkit.runners.machine import MachineBackend

    for key, value in {"LABKIT_CLUSTER_STORE__KIND": "s3", "LABKIT_CLUSTER_STORE__BUCKET": s3.bucket,
                       "LABKIT_CLUSTER_STORE__ENDPOINT": s3.endpoint, "JUPYTERHUB_USER": "anna"}.items():
        monkeypatch.setenv(key, value)
    from labkit.runners.cluster.submission import configured_store

    pod = tmp_path / "pod"
    shutil.copytree(demo_dir, pod)
    upload_folder(configured_store(), _finished_run(pod, "listed-1"))
    upload_folder(configured_store(), _finished_run(pod, "listed-2", fail=True))
    home = tmp_path / "home"
    shutil.copytree(demo_dir, home)
    _finished_run(home, "here-1")
    backend = MachineBackend(home)
    told = {r.run_id: r.backend for r in list_runs(backend)}
    assert told == {"here-1": "machine", "listed-1": "store", "listed-2": "store"}
    assert [r.run_id for r in list_runs(backend, state="failed")] == ["listed-2"]
    backend.fetch("listed-1", configured_store())
    assert {r.run_id: r.backend for r in list_runs(backend)}["listed-1"] == "machine"
    assert len([r for r in list_runs(backend) if r.run_id == "listed-1"]) == 1


def test_a_malformed_manifest_is_refused_by_name(tmp_path):
    """A manifest object that is JSON but not a manifest (a careless or hostile writer) is a one-line refusal."""
    from labkit.results.store import MANIFEST, run_key

    store = DirStore(tmp_path / "store")
    for bad in ({}, {"folder": "PreExperiment_ICA_bad-1", "upload": "u", "files": [{"name": 3}]},
                {"folder": "PreExperiment_ICA_bad-1", "upload": "u", "files": "all"}):
        store.put_bytes(f"{run_key('bad-1')}/{MANIFEST}", json.dumps(bad).encode())
        with pytest.raises(CorruptObject, match="is not a result manifest"):
            fetch_run(store, "bad-1", tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name != "store"]


def test_an_object_read_in_pieces_is_its_bytes_and_a_missing_one_is_named(any_store):
    """What the hub service passes on without keeping it: the pieces join to the object; nothing stored: NotStored."""
    from labkit.results.store import NotStored

    data = os.urandom(3 * 1024 + 7)
    any_store.put_bytes("runs/r1/blob", data)
    pieces = list(any_store.iter_bytes("runs/r1/blob", 1024))
    assert b"".join(pieces) == data and len(pieces) == 4
    with pytest.raises(NotStored, match="runs/r1/missing"):
        next(any_store.iter_bytes("runs/r1/missing"))
