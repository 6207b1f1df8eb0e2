"""k8s/: the hub-mode manifests validate, agree with each other and with labkit's renderer.

Every YAML validates against the official schemas (kubernetes-validate, strict) for the
oldest Kubernetes the admission policy needs (1.30, where ValidatingAdmissionPolicy v1 is GA)
and the newest the validator knows (kubernetes-validate 1.37 ships schemas for 1.25 to 1.37;
``kubernetes_validate.utils.all_versions()``). The admission policy's CEL is evaluated with cel-python on
Jobs that labkit itself renders from the shipped settings, so the policy and the renderer
cannot drift apart. The z2jh roles and services load into a real JupyterHub.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cluster_fixtures import emulator, write_kubeconfig  # noqa: F401 (fixture)
from hub_fixtures import free_port, wait_http
from k8s_admission import evaluate, restricted_violations

from labkit import __version__
from labkit.params import IcaParams
from labkit.runners.cluster import build_job, build_volcano_job
from labkit.runners.cluster.manifests import image_version
from labkit.runners.cluster.settings import ClusterSettings

K8S_DIR = Path(__file__).resolve().parents[1] / "k8s"
#: ValidatingAdmissionPolicy v1 is GA in 1.30; the newest schemas the validator ships
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
VOLCANO_KINDS = {("scheduling.volcano.sh/v1beta1", "Queue")}


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]


def one(name: str, kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs(name) if d["kind"] == kind]
    return found


def validate(manifest: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


POLICY = one("admission-policy.yaml", "ValidatingAdmissionPolicy")
BINDING = one("admission-policy.yaml", "ValidatingAdmissionPolicyBinding")
PARAMS = one("admission-policy.yaml", "ConfigMap")
DEPLOYMENT = one("labkit-service.yaml", "Deployment")
VALUES = yaml.safe_load((K8S_DIR / "jupyterhub-values.yaml").read_text())
SERVICE_ACCOUNT = f"system:serviceaccount:{DEPLOYMENT['metadata']['namespace']}:" \
                  f"{DEPLOYMENT['spec']['template']['spec']['serviceAccountName']}"


def shipped_settings(**groups: Any) -> ClusterSettings:
    """The settings in k8s/labkit-settings.yaml, with whole groups (``storage={...}``) replaced."""
    data = yaml.safe_load(one("labkit-settings.yaml", "ConfigMap")["data"]["cluster.yaml"])["cluster"]
    return ClusterSettings.from_dict({**data, **groups})


# -- schemas ---------------------------------------------------------------------------------
K8S_YAMLS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "jupyterhub-values.yaml")


def test_k8s_dir_holds_the_hub_mode_and_not_the_per_user_rbac() -> None:
    names = {p.name for p in K8S_DIR.iterdir()}
    assert {"Dockerfile", "README.md", "admission-policy.yaml", "jupyterhub-values.yaml", "labkit-namespace.yaml",
            "labkit-service.yaml", "labkit-service-rbac.yaml", "labkit-settings.yaml", "user-serviceaccount.yaml",
            "userdata-pv-pvc.yaml", "volcano-queue.yaml", "job-example.yaml", "job-rendered.yaml"} <= names
    assert not {"rbac.yaml", "nfs-pv-pvc.yaml"} & names  # replaced: see "Migrating" in k8s/README.md


@pytest.mark.parametrize("path", K8S_YAMLS, ids=lambda p: p.name)
def test_k8s_yaml_validates(path: Path) -> None:
    found = docs(path.name)
    assert found
    for doc in found:
        if (doc["apiVersion"], doc["kind"]) in VOLCANO_KINDS:  # no official schema: its CRD's fields by hand
            assert "namespace" not in doc["metadata"] and doc["spec"]["weight"] >= 1
            assert set(doc["spec"]) <= {"weight", "capability", "reclaimable", "deserved", "guarantee", "parent"}
        else:
            validate(doc)


def test_the_policy_needs_kubernetes_1_30() -> None:
    """Why 1.30 is the floor: before it, admissionregistration.k8s.io/v1 has no such kind."""
    kubernetes_validate.validate(POLICY, "1.30.0", strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(POLICY, "1.29.0", strict=True)


def test_the_validator_really_rejects_mistakes() -> None:
    typo = copy.deepcopy(POLICY)
    typo["spec"]["validations"][0]["expresion"] = typo["spec"]["validations"][0].pop("expression")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)


# -- the pieces agree ------------------------------------------------------------------------
def test_one_namespace_for_runs_everywhere() -> None:
    runs = one("labkit-namespace.yaml", "Namespace")["metadata"]["name"]
    assert shipped_settings().namespace == runs
    assert {d["metadata"]["namespace"] for d in docs("labkit-service-rbac.yaml")} == {runs}
    assert one("userdata-pv-pvc.yaml", "PersistentVolumeClaim")["metadata"]["namespace"] == runs
    assert one("userdata-pv-pvc.yaml", "PersistentVolume")["spec"]["claimRef"]["namespace"] == runs
    assert BINDING["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": runs}
    assert PARAMS["metadata"]["namespace"] == BINDING["spec"]["paramRef"]["namespace"] == runs
    assert BINDING["spec"]["paramRef"]["name"] == PARAMS["metadata"]["name"]
    assert BINDING["spec"]["policyName"] == POLICY["metadata"]["name"]
    assert "Deny" in BINDING["spec"]["validationActions"]


def test_service_rbac_grants_exactly_what_the_service_needs() -> None:
    role = one("labkit-service-rbac.yaml", "Role")
    binding = one("labkit-service-rbac.yaml", "RoleBinding")
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    jobs = {"create", "get", "list", "watch", "delete"}
    assert rules == {("batch", "jobs"): jobs, ("batch.volcano.sh", "jobs"): jobs, ("", "pods"): {"get", "list", "watch"},
                     ("", "pods/log"): {"get"}, ("", "events"): {"list", "watch"}}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    (subject,) = binding["subjects"]
    assert f"system:serviceaccount:{subject['namespace']}:{subject['name']}" == SERVICE_ACCOUNT
    assert PARAMS["data"]["serviceAccount"] == SERVICE_ACCOUNT  # the policy trusts exactly that account
    sa = one("labkit-service.yaml", "ServiceAccount")["metadata"]
    assert (sa["namespace"], sa["name"]) == (subject["namespace"], subject["name"])


def test_service_deployment_wiring() -> None:
    pod = DEPLOYMENT["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert container["command"] == ["labkit", "hub-service"]
    port = int(env["LABKIT_HUB_SERVICE_PORT"]["value"])
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    service = one("labkit-service.yaml", "Service")
    assert service["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == port
    assert VALUES["hub"]["services"]["labkit"]["url"] == f"http://{service['metadata']['name']}:{port}"
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == "/services/labkit/"
    assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == "labkit"
    # the hub API token comes from the Secret the z2jh chart writes, never a literal
    assert env["JUPYTERHUB_API_TOKEN"] == {"name": "JUPYTERHUB_API_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hub", "key": "hub.services.labkit.apiToken"}}}
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["settings"]
    assert env["LABKIT_CLUSTER_CONFIG"]["value"] == f"{mount}/cluster.yaml"
    volume = {v["name"]: v for v in pod["volumes"]}["settings"]
    assert volume["configMap"]["name"] == one("labkit-settings.yaml", "ConfigMap")["metadata"]["name"]
    assert container["image"] == shipped_settings().image  # the service and its Jobs run one labkit
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"  # z2jh's hub NetworkPolicy
    assert restricted_violations(pod) == []  # the service pod itself would pass Pod Security restricted


def test_no_literal_credentials_in_k8s() -> None:
    for path in K8S_DIR.glob("*.yaml"):
        text = path.read_text().lower()
        assert "api_token:" not in text and "apitoken:" not in text, path.name
        for doc in yaml.safe_load_all(path.read_text()):
            for env in _find(doc, "env"):
                for item in env if isinstance(env, list) else []:
                    if re.search(r"TOKEN|PASSWORD|SECRET|KEY", item["name"]):
                        assert "value" not in item, (path.name, item["name"])


def _find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []


def test_settings_configmap_matches_the_cluster_objects() -> None:
    settings = shipped_settings()
    assert image_version(settings.image) == __version__
    claim = one("userdata-pv-pvc.yaml", "PersistentVolumeClaim")
    assert settings.storage.pvc == claim["metadata"]["name"] == PARAMS["data"]["pvcClaim"]
    assert settings.storage.pvc_sub_path.startswith(PARAMS["data"]["pvcSubPathPrefix"])
    assert settings.security.run_as_user >= int(PARAMS["data"]["minUid"])
    assert settings.security.run_as_non_root is True


# -- user servers hold no Kubernetes rights ------------------------------------------------------
def test_user_servers_have_no_role_and_no_token() -> None:
    sa = one("user-serviceaccount.yaml", "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert VALUES["singleuser"]["serviceAccountName"] == sa["metadata"]["name"]
    assert VALUES["hub"]["config"]["KubeSpawner"]["automount_service_account_token"] is False
    for path in K8S_DIR.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
                assert all(s["name"] != sa["metadata"]["name"] for s in doc["subjects"]), path.name


def test_jupyterhub_values_pod_pieces_validate() -> None:
    single = VALUES["singleuser"]
    volumes, mounts = single["storage"]["extraVolumes"], single["storage"]["extraVolumeMounts"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-alice"},
           "spec": {"volumes": volumes, "serviceAccountName": single["serviceAccountName"],
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "notebook", "image": f"{single['image']['name']}:{single['image']['tag']}",
                                    "volumeMounts": mounts,
                                    "env": [{"name": k, "value": v} for k, v in single["extraEnv"].items()]}]}}
    validate(pod)
    assert volumes[0]["nfs"]["path"] == "/userdata/{username}"  # KubeSpawner's escaped name, as the Jobs use
    assert single["image"]["tag"] == __version__
    # user servers may reach the service (and nothing else internal): z2jh NetworkPolicy egress rule
    (rule,) = single["networkPolicy"]["egress"]
    validate({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "singleuser"},
              "spec": {"podSelector": {}, "egress": [rule]}})
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()
    service_port = one("labkit-service.yaml", "Service")["spec"]["ports"][0]["port"]
    assert rule["ports"] == [{"port": service_port, "protocol": "TCP"}]
    assert single["extraEnv"]["LABKIT_HUB_SERVICE_URL"] == f"http://labkit:{service_port}/services/labkit/"


def test_hub_roles_and_service_load_into_a_real_jupyterhub(tmp_path: Path) -> None:
    """z2jh turns hub.services / hub.loadRoles (dicts) into JupyterHub's lists; load them for real."""
    script = r"""
import asyncio, json, secrets, sys
from jupyterhub.app import JupyterHub
from jupyterhub import orm, scopes
from traitlets.config import Config

values = json.loads(sys.argv[1])
services = [{"name": k, "api_token": secrets.token_hex(32), **v} for k, v in values["hub"]["services"].items()]
roles = [{"name": k, **v} for k, v in values["hub"]["loadRoles"].items()]

async def main():
    config = Config()
    config.Authenticator.allowed_users = {"alice"}
    app = JupyterHub(config=config, db_url="sqlite://", authenticator_class="dummy", load_roles=roles,
                     services=services)
    await app.initialize([])
    alice = orm.User.find(app.db, "alice")
    service = orm.Service.find(app.db, "labkit")
    server_role = orm.Role.find(app.db, "server")
    print(json.dumps({"alice": sorted(scopes.get_scopes_for(alice)), "service": sorted(scopes.get_scopes_for(service)),
                      "server": server_role.scopes, "service_roles": [r.name for r in service.roles],
                      "service_url": service.url}))

asyncio.run(main())
"""
    import json

    proc = subprocess.run([sys.executable, "-c", script, json.dumps(VALUES)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "access:services!service=labkit" in got["alice"]
    assert "access:services!service=labkit" in got["server"]  # the token `labkit submit` sends from a server
    assert not any(s.startswith("access:services") and "labkit" not in s for s in got["alice"])
    assert got["service_roles"] == ["labkit-service"] and got["service_url"] == "http://labkit:8765"
    assert got["service"] == []  # the service's own token holds no JupyterHub rights


def test_a_wrong_scope_would_stop_the_hub(tmp_path: Path) -> None:
    """The check above is not vacuous: JupyterHub refuses an unknown scope in loadRoles."""
    from jupyterhub.scopes import ScopeNotFound, _check_scopes_exist

    for role in VALUES["hub"]["loadRoles"].values():
        _check_scopes_exist(role["scopes"])
    with pytest.raises(ScopeNotFound):
        _check_scopes_exist(["access:service!service=labkit"])


# -- the admission policy on Jobs labkit renders ---------------------------------------------------
def admit(job: dict[str, Any], *, username: str = SERVICE_ACCOUNT, params: dict[str, str] | None = None,
          operation: str = "CREATE", old: dict[str, Any] | None = None) -> list[str] | None:
    refusals = evaluate(POLICY, job, params={**PARAMS, "data": params or PARAMS["data"]}, username=username, operation=operation, old=old)
    return None if refusals is None else [r.message for r in refusals]


def alice_job(settings: ClusterSettings | None = None, user: str = "alice") -> dict[str, Any]:
    return build_job(IcaParams(n_components=20), settings or shipped_settings(), user, "20260101-000000-000-abcdef")


def nfs_params() -> dict[str, str]:
    return {**PARAMS["data"], "nfsServer": "nfs.lab.example", "nfsPathPrefix": "/userdata/", "pvcClaim": ""}


def test_the_shipped_settings_render_jobs_the_policy_admits() -> None:
    for user in ("alice", "bob"):
        job = alice_job(user=user)
        validate(job)
        assert admit(job) == []


@pytest.mark.parametrize("profile", ["large-memory", "edge"])
def test_admin_profiles_render_jobs_the_policy_admits(profile: str) -> None:
    """What a user may choose (a profile) changes resources and placement, never what the policy guards."""
    settings = shipped_settings().with_profile(profile)
    job = alice_job(settings)
    validate(job)
    assert admit(job) == []
    assert restricted_violations(job["spec"]["template"]["spec"]) == []
    pod = job["spec"]["template"]["spec"]
    chosen = shipped_settings().profiles[profile]
    assert chosen.node_selector.items() <= pod["nodeSelector"].items()
    if chosen.resources is not None:
        assert pod["containers"][0]["resources"]["limits"]["memory"] == chosen.resources.memory_limit


def test_the_edge_settings_run_edge_jobs_from_the_store_and_the_policy_admits_them(demo_dir: Path) -> None:
    """k8s/labkit-settings-edge.yaml: its edge profile lands on KubeEdge nodes, mounts no share (an emptyDir)
    and takes the store's credentials from the Secret by reference; the policy and restricted admit it."""
    data = yaml.safe_load(one("labkit-settings-edge.yaml", "ConfigMap")["data"]["cluster.yaml"])["cluster"]
    settings = ClusterSettings.from_dict(data)
    assert {k: v for k, v in data.items() if k not in ("store", "profiles")} == \
        {k: v for k, v in yaml.safe_load(one("labkit-settings.yaml", "ConfigMap")["data"]["cluster.yaml"])[
            "cluster"].items() if k not in ("profiles", "scheduler")}
    edge = settings.with_profile("edge")
    params = IcaParams(base_dir=str(demo_dir), raw_file_path="labkit-demo/demo_raw.fif", n_components=20)
    for user in ("alice", "alice.b@lab.org"):
        job = build_job(params, edge, user, "20260101-000000-000-abcdef")
        validate(job)
        assert admit(job) == []
        pod = job["spec"]["template"]["spec"]
        assert restricted_violations(pod) == []
        assert pod["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
        assert pod["tolerations"] == [{"key": "node-role.kubernetes.io/edge", "operator": "Exists",
                                       "effect": "NoSchedule"}]
        assert pod["volumes"] == [{"name": "work", "emptyDir": {}}]
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"] if "valueFrom" in e]
        assert refs == ["labkit-store", "labkit-store"]
    assert "volumes" in build_job(params, settings, "alice", "r1")["spec"]["template"]["spec"]
    assert build_job(params, settings, "alice", "r1")["spec"]["template"]["spec"]["volumes"][0][
        "persistentVolumeClaim"]  # without the profile: the share, as before
    repo = one("argo-artifact-repository.yaml", "ConfigMap")
    s3 = yaml.safe_load(repo["data"]["labkit-minio"])["s3"]
    assert s3["bucket"] == settings.store.bucket and s3["accessKeySecret"]["name"] == settings.store.secret_name
    assert repo["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == "labkit-minio"


def test_a_kubespawner_escaped_user_gets_exactly_the_hubs_directory() -> None:
    """alice.b@lab.org: z2jh mounts /userdata/alice-b-lab-org---00e968cd (KubeSpawner's escaping, as
    singleuser.storage.extraVolumes names it); her Jobs mount that directory, say so in
    labkit.io/owner-dir, and the policy admits them - and refuses them if the label is missing."""
    slug = "alice-b-lab-org---00e968cd"
    job = alice_job(user="alice.b@lab.org")
    assert job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["subPath"] == slug
    assert job["metadata"]["labels"]["labkit.io/owner-dir"] == slug
    assert admit(job) == []
    sweep = build_volcano_job([IcaParams(), IcaParams(method="picard")], shipped_settings(), "alice.b@lab.org")
    assert admit(sweep) == []
    unlabelled = copy.deepcopy(job)
    for meta in (unlabelled["metadata"], unlabelled["spec"]["template"]["metadata"]):
        del meta["labels"]["labkit.io/owner-dir"]
    assert job["metadata"]["labels"]["labkit.io/owner"] == slug  # the owner label is the hub's slug too
    assert admit(unlabelled) == []  # so without owner-dir the policy falls back to the same directory
    for meta in (unlabelled["metadata"], unlabelled["spec"]["template"]["metadata"]):
        meta["labels"]["labkit.io/owner"] = "alice-b-lab-org-00e968"  # labkit 0.1's label: another user's name
    refused(unlabelled, "subPath alice-b-lab-org-00e968")  # fails closed
    nfs = alice_job(shipped_settings(storage=dict(nfs_server="nfs.lab.example")), user="alice.b@lab.org")
    assert nfs["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] == f"/userdata/{slug}"
    assert admit(nfs, params=nfs_params()) == []
    assert VALUES["singleuser"]["storage"]["extraVolumes"][0]["nfs"]["path"] == "/userdata/{username}"


def test_an_nfs_job_for_its_owner_is_admitted_with_nfs_params() -> None:
    job = alice_job(shipped_settings(storage=dict(nfs_server="nfs.lab.example", nfs_path="/userdata/{user}")))
    assert admit(job, params=nfs_params()) == []
    assert any("only its owner's directory" in m for m in admit(job))  # the shipped params allow no inline NFS


def refused(job: dict[str, Any], words: str, **kwargs: Any) -> None:
    messages = admit(job, **kwargs)
    assert messages, "admitted"
    assert any(words in m for m in messages), messages


def test_root_pods_are_refused() -> None:
    # what issue 11 showed: `labkit render --set security.run_as_user=0 --set security.run_as_non_root=false`
    root = alice_job(shipped_settings(security={"run_as_user": 0, "run_as_non_root": False}))
    refused(root, "never as root")
    job = alice_job()
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    refused(job, "never as root")
    job = alice_job()
    job["spec"]["template"]["spec"]["securityContext"]["runAsGroup"] = 0
    refused(job, "no group 0")
    job = alice_job()
    del job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    refused(job, "never as root")


def test_another_users_directory_is_refused() -> None:
    job = alice_job(shipped_settings(storage=dict(pvc="labkit-userdata", pvc_sub_path="bob")))
    refused(job, "only its owner's directory claim labkit-userdata, subPath alice")
    job = alice_job()
    job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = "someone-elses-claim"
    refused(job, "only its owner's directory")
    nfs = alice_job(shipped_settings(storage=dict(nfs_server="nfs.lab.example", nfs_path="/userdata/{user}")))
    other = copy.deepcopy(nfs)
    other["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] = "/userdata/bob"
    refused(other, "nfs.lab.example:/userdata/alice", params=nfs_params())
    root = copy.deepcopy(nfs)
    root["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] = "/userdata"
    refused(root, "only its owner's directory", params=nfs_params())
    host = alice_job()
    host["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    refused(host, "only its owner's directory")
    relabelled = alice_job(user="bob")  # bob's directory, but claiming to be alice's
    for meta in (relabelled["metadata"], relabelled["spec"]["template"]["metadata"]):
        meta["labels"]["labkit.io/owner"] = "alice"
        meta["labels"]["labkit.io/owner-dir"] = "alice"  # build_job states the directory since owner-dir exists
    refused(relabelled, "only its owner's directory")


def test_owner_label_is_required_on_the_job_and_its_pods() -> None:
    job = alice_job()
    del job["metadata"]["labels"]["labkit.io/owner"]
    refused(job, "labkit.io/owner")
    job = alice_job()
    job["spec"]["template"]["metadata"]["labels"]["labkit.io/owner"] = "bob"
    refused(job, "every pod of a labkit Job carries")
    job = alice_job()
    job["metadata"]["labels"]["labkit.io/owner-dir"] = "../bob"
    refused(job, "must name one directory")


def test_privileged_and_escalating_containers_are_refused() -> None:
    for field, value in (("privileged", True), ("allowPrivilegeEscalation", True)):
        job = alice_job()
        job["spec"]["template"]["spec"]["containers"][0]["securityContext"][field] = value
        refused(job, "never privileged")
    job = alice_job()
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    refused(job, "add no capabilities")
    job = alice_job()
    job["spec"]["template"]["spec"]["hostPID"] = True
    refused(job, "no host namespaces")
    job = alice_job()
    job["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    refused(job, "no API token")


def test_only_the_service_creates_labkit_jobs_and_only_labkit_jobs() -> None:
    job = alice_job()
    refused(job, "only the labkit hub service", username="system:serviceaccount:jhub:default")
    refused(job, "only the labkit hub service", username="alice")
    plain = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "namespace": "labkit-runs"},
             "spec": {"template": {"spec": {"restartPolicy": "Never",
                                            "containers": [{"name": "x", "image": "busybox"}]}}}}
    assert admit(plain, username="system:serviceaccount:other:ci") is None  # not labkit's business
    refused(plain, "creates only Jobs labelled app.kubernetes.io/name=labkit")  # the service itself


def test_updates_keep_the_owner_and_let_controllers_work() -> None:
    job = alice_job()
    finalized = copy.deepcopy(job)
    finalized["metadata"]["finalizers"] = ["foregroundDeletion"]
    assert admit(finalized, username="system:serviceaccount:kube-system:generic-garbage-collector",
                 operation="UPDATE", old=job) == []
    stolen = copy.deepcopy(job)
    stolen["metadata"]["labels"]["labkit.io/owner"] = "bob"
    refused(stolen, "cannot change", username=SERVICE_ACCOUNT, operation="UPDATE", old=job)
    unlabelled = copy.deepcopy(job)
    del unlabelled["metadata"]["labels"]["app.kubernetes.io/name"]
    refused(unlabelled, "cannot change", username="alice", operation="UPDATE", old=job)


def test_volcano_sweeps_are_checked_task_by_task() -> None:
    settings = shipped_settings()
    sweep = build_volcano_job([IcaParams(random_state=s) for s in range(3)], settings, "alice", sweep_id="s1")
    assert admit(sweep) == []
    bad = copy.deepcopy(sweep)
    bad["spec"]["tasks"][2]["template"]["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = "bob"
    refused(bad, "only its owner's directory")
    bad = copy.deepcopy(sweep)
    bad["spec"]["tasks"][1]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    refused(bad, "never as root")


# -- Pod Security restricted -----------------------------------------------------------------
def test_runs_namespace_enforces_restricted_and_pvc_jobs_meet_it() -> None:
    labels = one("labkit-namespace.yaml", "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pvc_job = alice_job()
    assert restricted_violations(pvc_job["spec"]["template"]["spec"]) == []
    sweep = build_volcano_job([IcaParams(), IcaParams(method="picard")], shipped_settings(), "alice")
    assert all(restricted_violations(t["template"]["spec"]) == [] for t in sweep["spec"]["tasks"])


def test_inline_nfs_is_what_restricted_refuses() -> None:
    """Why NFS storage needs enforce: baseline: the volume type is restricted's only objection."""
    nfs_job = alice_job(shipped_settings(storage=dict(nfs_server="nfs.lab.example", nfs_path="/userdata/{user}")))
    assert restricted_violations(nfs_job["spec"]["template"]["spec"]) == ["volume userdata of type nfs"]


def test_the_restricted_check_is_not_vacuous() -> None:
    pod = alice_job()["spec"]["template"]["spec"]
    for change, words in ((lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
                           "allowPrivilegeEscalation"),
                          (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
                          (lambda p: p["containers"][0]["securityContext"]["capabilities"].pop("drop"), "ALL"),
                          (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser 0"),
                          (lambda p: p.update(hostNetwork=True), "hostNetwork")):
        bad = copy.deepcopy(pod)
        change(bad)
        assert any(words in v for v in restricted_violations(bad)), words


# -- the guide's commands ------------------------------------------------------------------------
def readme_text() -> str:
    return (K8S_DIR / "README.md").read_text()


def readme_block(heading: str) -> list[str]:
    """The command lines of the first ```sh block under ``heading`` in k8s/README.md."""
    text = readme_text()
    block = text[text.index(heading):].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_settings_check_runs_as_the_guide_says(tmp_path: Path) -> None:
    """The guide's (and the ConfigMap header's) commands, run as written from a checkout."""
    commands = readme_block("### 3. labkit's settings")
    header = [line[1:].strip() for line in (K8S_DIR / "labkit-settings.yaml").read_text().splitlines()
              if line.startswith("#   ")]
    assert header == commands and len(commands) == 2
    (tmp_path / "k8s").symlink_to(K8S_DIR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_CLUSTER")}
    env["PYTHONPATH"] = str(K8S_DIR.parent)
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    job = yaml.safe_load(proc.stdout)
    assert job["metadata"]["namespace"] == "labkit-runs" and job["metadata"]["labels"]["labkit.io/owner"] == "alice"
    assert admit(job) == []


def test_the_guides_policy_check_is_refused_as_it_says() -> None:
    """`kubectl create -f k8s/job-example.yaml` by an admin: refused for the reason the guide prints."""
    assert "kubectl create -n labkit-runs -f k8s/job-example.yaml --dry-run=server" in readme_text()
    job = yaml.safe_load((K8S_DIR / "job-example.yaml").read_text())
    messages = admit(job, username="kubernetes-admin")
    assert messages[0] == f"only the labkit hub service ({SERVICE_ACCOUNT}) may create labkit Jobs, not kubernetes-admin"
    shown = readme_text()
    assert f"only the labkit hub service ({SERVICE_ACCOUNT}) may create labkit Jobs, not <you>" in shown


def test_the_image_carries_the_hub_service() -> None:
    """The Deployment runs `labkit hub-service` from the runner image, and an edge profile's pods reach the
    artifact store from it: the Dockerfile installs the [hub] and [store] extras."""
    import tomllib

    extras = tomllib.loads((K8S_DIR.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("jupyterhub") for dep in extras["hub"])
    assert any(dep.startswith("boto3") for dep in extras["store"])
    assert any(line.startswith("RUN pip install") and " .[hub,store]" in line
               for line in (K8S_DIR / "Dockerfile").read_text().splitlines())


def test_the_deployment_starts_the_service_its_probe_and_the_hub_expect(tmp_path: Path, emulator: Any) -> None:
    """`labkit hub-service` with the Deployment's own environment (token and API URLs stubbed, the
    settings ConfigMap as the mounted file, the API emulator as the cluster) serves the readiness
    probe's path, and listens where the Service and hub.services.labkit.url point."""
    from labkit.hub.app import listen_address

    pod = DEPLOYMENT["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    port = container["ports"][0]["containerPort"]
    assert listen_address(env) == ("0.0.0.0", port)
    settings = tmp_path / "cluster.yaml"
    settings.write_text(one("labkit-settings.yaml", "ConfigMap")["data"]["cluster.yaml"])
    local = free_port()  # the real port may be taken on a shared test machine
    env.update(LABKIT_CLUSTER_CONFIG=str(settings), LABKIT_HUB_SERVICE_PORT=str(local),
               JUPYTERHUB_API_TOKEN="not-a-real-token", JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api",
               KUBECONFIG=str(write_kubeconfig(emulator, tmp_path)), PATH=os.environ["PATH"], HOME=str(tmp_path),
               PYTHONPATH=str(K8S_DIR.parent))
    proc = subprocess.Popen(container["command"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "service.log", "wb"), start_new_session=True)
    try:
        probe = container["readinessProbe"]["httpGet"]
        assert probe["port"] == "http"
        wait_http(f"http://127.0.0.1:{local}{probe['path']}", timeout=90, proc=proc)
        assert probe["path"] == env["JUPYTERHUB_SERVICE_PREFIX"] + "api/health"
        live = container["livenessProbe"]["httpGet"]
        assert live["port"] == "http" and live["path"] == probe["path"] + "/live"
        wait_http(f"http://127.0.0.1:{local}{live['path']}", timeout=10, proc=proc)
    finally:
        proc.terminate()
        proc.wait(20)
