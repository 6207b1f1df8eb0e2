"""Every manifest labkit produces validates against the official schemas (k8s/: test_k8s_manifests.py).

``kubernetes_validate`` carries the upstream OpenAPI-derived JSON schemas; ``strict``
rejects unknown fields (typos such as ``backofLimit``). Volcano's kinds have no official
schema there, so their structure is checked by hand below, and the pod templates inside
a Volcano Job are validated as official ``v1/PodTemplate`` objects.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from labkit import __version__
from labkit.params import IcaParams
from labkit.runners.cluster import build_job, build_volcano_job, job_name, sanitize_name
from labkit.runners.cluster.errors import SettingsError
from labkit.runners.cluster.manifests import image_version, version_mismatch
from labkit.runners.cluster.names import is_dns_label, is_label_value
from labkit.runners.cluster.settings import ClusterSettings

K8S_DIR = Path(__file__).resolve().parents[1] / "k8s"
K8S_VERSION = kubernetes_validate.utils.latest_version()
#: the prototype's cluster ran Kubernetes 1.26: manifests must stay valid there too
K8S_VERSIONS = ("1.26.0", K8S_VERSION)


def validate(manifest: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


BASE = {"namespace": "jupyter-{user}", "image": f"registry.lab.example/labkit:{__version__}",
        "storage": {"nfs_server": "nfs.lab.example"}}

SETTINGS_VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "volcano": {"scheduler": {"name": "volcano", "queue": "eeg", "priority_class": "research"}},
    "pvc": {"storage": {"pvc": "userdata-{user}", "pvc_sub_path": "{user}", "mount_path": "/data"}},
    "everything": {
        "image_pull_policy": "Always", "image_pull_secrets": ["lab-registry"], "service_account": "labkit-runner",
        "node_selector": {"hardware": "highmem"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "eeg", "effect": "NoSchedule"}],
        "backoff_limit": 0, "active_deadline_seconds": None, "ttl_seconds_after_finished": None,
        "resources": {"cpu_limit": "", "memory_limit": "16Gi", "cpu_request": "500m", "memory_request": "1Gi"},
        "security": {"run_as_user": 41234, "run_as_group": 4000, "fs_group": None},
        "extra_env": {"LABKIT_BLAS_THREADS": "2"},
    },
}


def settings_variant(name: str) -> ClusterSettings:
    data = copy.deepcopy(BASE)
    for key, value in SETTINGS_VARIANTS[name].items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return ClusterSettings.from_dict(data)


PARAMS = [IcaParams(), IcaParams(method="picard", ortho=True, extended=False, max_iter=500, crop_tmax=None,
                                 random_state=None, channel_type="meg", n_components=15)]


@pytest.mark.parametrize("variant", sorted(SETTINGS_VARIANTS))
@pytest.mark.parametrize("user", ["alice", "Dr.Anna Müller@lab", "x" * 90])
def test_generated_jobs_validate(variant: str, user: str) -> None:
    settings = settings_variant(variant)
    for params in PARAMS:
        raw_dir = "{user}" in json.dumps(SETTINGS_VARIANTS[variant].get("storage", {}))
        if raw_dir and not re.fullmatch(r"[A-Za-z0-9_@][-A-Za-z0-9_.@]*", user):  # the raw name is a directory
            with pytest.raises(SettingsError, match="cannot name a directory"):
                build_job(params, settings, user, "20260101-000000-000-abcdef")
            continue
        job = build_job(params, settings, user, "20260101-000000-000-abcdef", sweep_id="sweep-1")
        validate(job)
        meta = job["metadata"]
        assert is_dns_label(meta["name"]) and is_dns_label(meta["namespace"])
        assert all(is_label_value(v) for v in meta["labels"].values())
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["name"] == "ica" and container["command"] == ["labkit", "entrypoint"]
        assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == settings.backoff_limit
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["BASE_DIR"] == settings.storage.mount_path
        assert IcaParams.from_env(env).digest == params.digest  # the same analysis inside the pod
        assert env["LABKIT_RUN_ID"] == "20260101-000000-000-abcdef"
        assert container["volumeMounts"][0]["mountPath"] == settings.storage.mount_path
        if variant == "volcano":
            assert pod["schedulerName"] == "volcano"
            assert job["spec"]["template"]["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"] == "eeg"
        else:
            assert "schedulerName" not in pod


def test_no_credentials_in_manifests() -> None:
    job = build_job(IcaParams(), settings_variant("everything"), "alice", "r1")
    text = yaml.safe_dump(job).lower().replace("automountserviceaccounttoken: false", "")
    for word in ("token", "password", "secret:", "secretkeyref", "bearer", "kubeconfig"):
        assert word not in text
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "lab-registry"}]  # by name only
    with pytest.raises(SettingsError, match="credentials"):
        ClusterSettings.from_dict({**BASE, "extra_env": {"API_TOKEN": "abc"}})


def test_prototype_equivalence() -> None:
    """The prototype: batch/v1 Job, container ica, its env vars, NFS /userdata/<user> at /userdata."""
    settings = ClusterSettings.from_dict({"image": "preexperiment/ica:0.1", "storage": {"nfs_server": "nfs"}})
    job = build_job(IcaParams(n_components=20), settings, "alice", "r1")
    pod = job["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    for name in ("BASE_DIR", "RAW_FILE_PATH", "ICA_METHOD", "ICA_COMPONENTS_COUNT", "CROP_TMIN", "CROP_TMAX",
                 "USING_CHANNEL", "FILTER_FMIN", "FILTER_FMAX"):
        assert name in env
    assert env["ICA_COMPONENTS_COUNT"] == "20" and env["BASE_DIR"] == "/userdata"
    assert env["LABKIT_IMAGE"] == "preexperiment/ica:0.1"  # the run records the image it ran in
    assert pod["volumes"] == [{"name": "userdata", "nfs": {"server": "nfs", "path": "/userdata/alice"}}]
    assert job["spec"]["backoffLimit"] == 4 and pod["restartPolicy"] == "Never"


def test_names_are_deterministic_and_safe() -> None:
    p = IcaParams()
    assert job_name("alice", p) == job_name("alice", p) == f"labkit-alice-{p.digest}"
    assert job_name("alice", p) != job_name("alice", p.replace(n_components=10))
    assert job_name("alice", p) != job_name("alice", p, rerun="run-2")
    assert job_name("alice", p.replace(base_dir="/elsewhere")) == job_name("alice", p)  # where != what
    for user in ("Alice", "a_b", "a.b", "-x-", "ü" * 70, "a" * 63, "a" * 64):
        name = job_name(user, p)
        assert is_dns_label(name) and len(name) <= 63, name
        assert is_dns_label(sanitize_name(user))
    assert sanitize_name("Alice") != sanitize_name("alice")  # changed names carry a hash
    assert sanitize_name("alice") == "alice"


def test_raw_path_is_translated_into_the_mount() -> None:
    settings = settings_variant("defaults")
    local = IcaParams(base_dir="/home/jovyan", raw_file_path="/home/jovyan/eeg/s01_raw.fif")
    job = build_job(local, settings, "alice", "r1")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAW_FILE_PATH"] == "eeg/s01_raw.fif" and env["BASE_DIR"] == "/userdata"


def test_missing_storage_is_explained() -> None:
    with pytest.raises(SettingsError, match="storage.nfs_server"):
        build_job(IcaParams(), ClusterSettings(), "alice", "r1")


# -- Volcano ------------------------------------------------------------------------------
def check_volcano_job(job: dict[str, Any]) -> None:
    """Structure of a batch.volcano.sh/v1alpha1 Job (no official schema: checked by hand).

    Follows Volcano's CRD (volcano.sh/apis, batch/v1alpha1/job.go): spec.schedulerName,
    spec.queue, spec.minAvailable <= total replicas, spec.maxRetry, spec.policies
    [{event, action}] with Volcano's event/action names, spec.tasks [{name (DNS label,
    unique), replicas, template (a core/v1 PodTemplateSpec), policies}].
    """
    events = {"*", "PodFailed", "PodEvicted", "PodPending", "PodRunning", "Unknown", "TaskCompleted",
              "TaskFailed", "OutOfSync", "CommandIssued", "JobUpdated", "JobUnknown"}
    actions = {"AbortJob", "RestartJob", "RestartTask", "RestartPod", "TerminateJob", "CompleteJob", "ResumeJob",
               "SyncJob", "EnqueueJob", "SyncQueue", "OpenQueue", "CloseQueue"}
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1" and job["kind"] == "Job"
    assert set(job) == {"apiVersion", "kind", "metadata", "spec"}
    assert is_dns_label(job["metadata"]["name"]) and is_dns_label(job["metadata"]["namespace"])
    assert all(is_label_value(v) for v in job["metadata"]["labels"].values())
    spec = job["spec"]
    allowed = {"schedulerName", "queue", "minAvailable", "maxRetry", "policies", "tasks", "ttlSecondsAfterFinished",
               "priorityClassName", "plugins", "volumes", "minSuccess", "runningEstimate", "networkTopology"}
    assert set(spec) <= allowed, set(spec) - allowed
    assert spec["schedulerName"] == "volcano" and isinstance(spec["queue"], str) and spec["queue"]
    total = sum(t["replicas"] for t in spec["tasks"])
    assert isinstance(spec["minAvailable"], int) and 1 <= spec["minAvailable"] <= total
    assert isinstance(spec["maxRetry"], int) and spec["maxRetry"] >= 0
    for policy in spec.get("policies", []):
        assert set(policy) <= {"event", "events", "action", "exitCode", "timeout"}
        assert policy["event"] in events and policy["action"] in actions
    names = [t["name"] for t in spec["tasks"]]
    assert len(names) == len(set(names))
    for task in spec["tasks"]:
        assert set(task) <= {"name", "replicas", "template", "policies", "minAvailable", "maxRetry", "dependsOn"}
        assert is_dns_label(task["name"]) and isinstance(task["replicas"], int) and task["replicas"] >= 1
        # the pod template is core/v1: validate it with the official schema
        validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": task["name"]},
                  "template": task["template"]})


@pytest.mark.parametrize("variant", sorted(SETTINGS_VARIANTS))
def test_volcano_sweep_job(variant: str) -> None:
    settings = settings_variant(variant)
    sweep = [IcaParams(random_state=seed) for seed in range(5)] + [IcaParams(method="picard")]
    job = build_volcano_job(sweep, settings, "alice", sweep_id="seeds-1", min_available=2)
    check_volcano_job(job)
    spec = job["spec"]
    assert spec["minAvailable"] == 2 and len(spec["tasks"]) == 6
    assert {"event": "PodEvicted", "action": "RestartTask"} in spec["policies"]
    assert not any(p["action"] == "CompleteJob" for p in spec["policies"])  # would end the sweep at the 1st run
    run_ids = set()
    for task, params in zip(spec["tasks"], sweep, strict=True):
        env = {e["name"]: e["value"] for e in task["template"]["spec"]["containers"][0]["env"]}
        assert IcaParams.from_env(env).digest == params.digest
        run_ids.add(env["LABKIT_RUN_ID"])
        assert task["template"]["metadata"]["labels"]["labkit.io/sweep-id"] == "seeds-1"
    assert len(run_ids) == 6


# -- k8s/ -------------------------------------------------------------------------------
def test_job_example_matches_the_prototype_contract() -> None:
    job = yaml.safe_load((K8S_DIR / "job-example.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["name"] == "ica" and container["image"] == "preexperiment/ica:0.1"
    assert pod["volumes"][0]["nfs"]["path"] == "/userdata/alice"
    assert container["volumeMounts"][0]["mountPath"] == "/userdata" == env["BASE_DIR"]
    assert job["spec"]["backoffLimit"] == 4 and pod["restartPolicy"] == "Never"
    params = IcaParams.from_env(env)
    assert params.n_components == 20 and params.method == "fastica"


def test_settings_from_file_and_env(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump({"cluster": {"namespace": "eeg", "storage": {"nfs_server": "a"},
                                             "scheduler": {"name": "volcano", "queue": "q1"}}}))
    s = ClusterSettings.load(environ={"LABKIT_CLUSTER_CONFIG": str(f), "LABKIT_CLUSTER_SCHEDULER__QUEUE": "q2",
                                      "LABKIT_CLUSTER_BACKOFF_LIMIT": "2",
                                      "LABKIT_CLUSTER_NODE_SELECTOR": '{"disk": "ssd"}'})
    assert (s.namespace, s.storage.nfs_server, s.scheduler.name, s.scheduler.queue) == ("eeg", "a", "volcano", "q2")
    assert s.backoff_limit == 2 and s.node_selector == {"disk": "ssd"}
    with pytest.raises(SettingsError, match="Unknown cluster setting"):
        ClusterSettings.load(environ={"LABKIT_CLUSTER_NAMESPCE": "x"})
    with pytest.raises(SettingsError, match="scheduler.name"):
        ClusterSettings.from_dict({"scheduler": {"name": "kube-batch"}})
    with pytest.raises(SettingsError, match="backoff_limit: Input should be a valid integer"):
        ClusterSettings.from_dict({"backoff_limit": "four"})


def test_version_mismatch_wording() -> None:
    assert version_mismatch(f"reg:5000/labkit:{__version__}") is None
    assert "0.0.1" in version_mismatch("reg:5000/labkit:0.0.1")
    assert "no version tag" in version_mismatch("reg:5000/labkit")
    assert image_version("reg:5000/labkit") is None and image_version("labkit:1.2@sha256:abc") == "1.2"


def test_rendered_example_is_current() -> None:
    """k8s/job-rendered.yaml (shown in the READMEs) is what ``labkit render`` prints today."""
    shown = yaml.safe_load((K8S_DIR / "job-rendered.yaml").read_text())
    settings = ClusterSettings.from_dict({"storage": {"nfs_server": "nfs.lab.example"},
                                         "image": "registry.lab.example/labkit:0.1.0"})
    now = build_job(IcaParams(n_components=20), settings, "alice", "example-001")
    for doc in (shown, now):
        for meta in (doc["metadata"], doc["spec"]["template"]["metadata"]):
            meta["annotations"].pop("labkit.io/version")
    assert shown == now, "regenerate k8s/job-rendered.yaml with the command in its header"


def test_the_validator_really_rejects_mistakes() -> None:
    """Guard against a vacuous check: a typo and a wrong type are both caught."""
    job = build_job(IcaParams(), settings_variant("defaults"), "alice", "r1")
    typo = copy.deepcopy(job)
    typo["spec"]["backofLimit"] = typo["spec"].pop("backoffLimit")
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = 3
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(bad)


def test_dockerfile_keeps_the_contract() -> None:
    """No daemon needed: the runner image's base, user and entrypoint, and that what it copies exists."""
    text = (K8S_DIR / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert lines[-1] == 'ENTRYPOINT ["labkit", "entrypoint"]'
    repo = K8S_DIR.parent
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (repo / source).exists(), source
    assert any("pip install" in line and " ." in line for line in lines)


STORE = {"kind": "s3", "endpoint": "http://minio.minio.svc:9000", "bucket": "labkit", "prefix": "users/{username}",
         "secret_name": "labkit-store"}


@pytest.mark.parametrize("variant", ["defaults", "volcano", "everything"])
def test_store_mode_jobs_mount_no_share_and_take_credentials_by_reference(variant: str, demo_dir: Path) -> None:
    settings = settings_variant(variant).replace(store=STORE, use_store=True)
    params = IcaParams(base_dir=str(demo_dir), raw_file_path="labkit-demo/demo_raw.fif")
    job = build_job(params, settings, "alice.b@lab.org", "20260101-000000-000-abcdef")
    validate(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "work", "emptyDir": {}}]
    container = pod["containers"][0]
    assert container["volumeMounts"] == [{"name": "work", "mountPath": "/work"}]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    refs = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    assert refs == {"AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "labkit-store", "key": "access-key"}},
                    "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "labkit-store", "key": "secret-key"}}}
    assert plain["BASE_DIR"] == "/work" and plain["LABKIT_CLUSTER_USE_STORE"] == "true"
    # the user's part of the bucket is injective over hub names (KubeSpawner's slug ends in a short hash)
    assert plain["LABKIT_CLUSTER_STORE__PREFIX"] == "users/alice-b-lab-org---" + "alice.b@lab.org".encode().hex()
    from labkit.results.provenance import fingerprint

    assert plain["LABKIT_RECORDING_SHA256"] == fingerprint(demo_dir / "labkit-demo" / "demo_raw.fif")
    assert IcaParams.from_env(plain).digest == params.digest
    # the pod reads its store from these variables with the same settings object
    inner = ClusterSettings.load(environ={k: v for k, v in plain.items() if k.startswith("LABKIT_CLUSTER_")})
    assert inner.use_store and inner.store.url() == "s3://labkit/" + plain["LABKIT_CLUSTER_STORE__PREFIX"]
    assert "nfs" not in yaml.safe_dump(job) and "persistentVolumeClaim" not in yaml.safe_dump(job)


def test_store_settings_are_checked_by_name() -> None:
    with pytest.raises(SettingsError, match="edge uses the artifact store, but store.kind is not s3"):
        ClusterSettings.from_dict({**BASE, "profiles": {"edge": {"use_store": True}}})
    with pytest.raises(SettingsError, match="store.endpoint: must be an http:// or https:// URL"):
        ClusterSettings.from_dict({**BASE, "store": {**STORE, "endpoint": "http://key:secret@minio:9000"}})
    with pytest.raises(SettingsError, match="unknown cluster setting 'store.access_key'"):
        ClusterSettings.from_dict({**BASE, "store": {**STORE, "access_key": "AKIA..."}})  # never a value
    settings = ClusterSettings.from_dict({**BASE, "store": STORE, "use_store": True})
    # built where the recording is not visible (the hub service): the pod looks it up by the name it was pushed as
    job = build_job(IcaParams(raw_file_path="eeg/s01_raw.fif"), settings, "alice", "r1")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "LABKIT_RECORDING_SHA256" not in env and env["RAW_FILE_PATH"] == "eeg/s01_raw.fif"
