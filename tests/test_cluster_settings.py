"""Admin settings (pydantic-settings) and the name checks every manifest relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from labkit.params import IcaParams
from labkit.runners.cluster.errors import SettingsError
from labkit.runners.cluster.manifests import build_job
from labkit.runners.cluster.names import is_dns_label, is_label_value, kubespawner_slug, user_dir
from labkit.runners.cluster.settings import ClusterSettings


def test_each_env_value_is_parsed_by_its_fields_type() -> None:
    s = ClusterSettings.load(environ={"LABKIT_CLUSTER_SCHEDULER__QUEUE": "on", "LABKIT_CLUSTER_NAMESPACE": "no",
                                      "LABKIT_CLUSTER_STORAGE__READ_ONLY": "on", "LABKIT_CLUSTER_BACKOFF_LIMIT": "2"})
    assert s.scheduler.queue == "on" and s.namespace == "no"  # not 'True' / 'False' (YAML 1.1)
    assert s.storage.read_only is True and s.backoff_limit == 2


@pytest.mark.parametrize(("environ", "where"), [
    ({"LABKIT_CLUSTER_BACKOFF_LIMIT": "four"}, "backoff_limit"),
    ({"LABKIT_CLUSTER_SCHEDULER__QUEUE": "EEG queue"}, "scheduler.queue"),
    ({"LABKIT_CLUSTER_SCHEDULER__NAME": "kube-batch"}, "scheduler.name"),
    ({"LABKIT_CLUSTER_SECURITY__RUN_AS_USER": "0"}, "security"),
    ({"LABKIT_CLUSTER_NAMESPACE": "eeg\n"}, "namespace"),
    ({"LABKIT_CLUSTER_RESOURCES__MEMORY_LIMIT": "lots"}, "resources.memory_limit"),
    ({"LABKIT_CLUSTER_NODE_SELECTOR": "{not json"}, "node_selector"),
    ({"LABKIT_CLUSTER_STORAGE__NFS_SERVR": "x"}, "storage.nfs_servr"),
    ({"LABKIT_CLUSTER_EXTRA_ENV": '{"API_TOKEN": "x"}'}, "extra_env"),
])
def test_every_error_names_its_location(environ: dict[str, str], where: str) -> None:
    with pytest.raises(SettingsError) as info:
        ClusterSettings.load(environ=environ)
    assert where in str(info.value)


def test_file_then_env(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump({"cluster": {"namespace": "eeg", "scheduler": {"queue": "q1"},
                                             "profiles": {"large-memory": {"resources": {"memory_limit": "64Gi"}},
                                                          "edge": {"node_selector": {"site": "edge"}}}}}))
    s = ClusterSettings.load(environ={"LABKIT_CLUSTER_CONFIG": str(f), "LABKIT_CLUSTER_SCHEDULER__QUEUE": "q2"})
    assert (s.namespace, s.scheduler.queue) == ("eeg", "q2")
    assert s.with_profile("large-memory").resources.memory_limit == "64Gi"
    assert s.with_profile("edge").node_selector == {"site": "edge"}
    with pytest.raises(SettingsError, match="Unknown profile 'gpu'.*edge, large-memory"):
        s.with_profile("gpu")
    f.write_text("cluster: [1, 2")
    with pytest.raises(SettingsError, match="not valid YAML"):
        ClusterSettings.load(environ={"LABKIT_CLUSTER_CONFIG": str(f)})


@pytest.mark.parametrize(("name", "slug"), [  # KubeSpawner's own examples (kubespawner/tests/test_slugs.py)
    ("jupyter-alex", "jupyter-alex"), ("jupyter-Alex", "jupyter-alex---3a1c285c"),
    ("jupyter-üni", "jupyter-ni---a5aaf5dd"), ("endswith-", "endswith---165f1166"),
    ("user@email.com", "user-email-com---0925f997"), ("has.dot", "has-dot---03e27fdf"), ("z9", "z9"),
    ("9z9", "x-9z9---224de202"), ("-start", "start---f587e2dc"), ("username--servername",
                                                                    "username-servername---d957f1de"),
    ("alice.b@lab.org", "alice-b-lab-org---00e968cd"), ("x" * 63, "x" * 63),
])
def test_user_directory_is_kubespawners_username(name: str, slug: str) -> None:
    assert kubespawner_slug(name) == slug


def test_the_job_mounts_the_directory_kubespawner_gives_the_user() -> None:
    s = ClusterSettings.from_dict({"storage": {"nfs_server": "nfs", "nfs_path": "/export/home/{username}"}})
    job = build_job(IcaParams(), s, "alice.b@lab.org", "r1")
    assert job["spec"]["template"]["spec"]["volumes"][0]["nfs"]["path"] == "/export/home/alice-b-lab-org---00e968cd"


@pytest.mark.parametrize("bad", ["abc\n", "a" * 64, "-a", "a-", "A", "a_b", ""])
def test_dns_labels_are_full_string_matches(bad: str) -> None:
    assert not is_dns_label(bad)


@pytest.mark.parametrize("bad", ["abc\n", "a" * 64, "-a", "a b", "a/b"])
def test_label_values_are_full_string_matches(bad: str) -> None:
    assert not is_label_value(bad)
    with pytest.raises(SettingsError):
        user_dir(bad if bad != "a" * 64 else "../x")


@given(st.text(max_size=80))
def test_slugs_are_always_dns_labels(name: str) -> None:
    slug = kubespawner_slug(name)
    assert is_dns_label(slug) and "/" not in slug


@pytest.mark.parametrize("storage", [None, {"nfs_server": "nfs.lab.example", "nfs_path": "/userdata/{username}"}])
def test_the_admission_policy_admits_the_job_of_a_user_whose_directory_is_escaped(storage: dict | None) -> None:
    """k8s/admission-policy.yaml holds volumes to labkit.io/owner-dir: for alice.b@lab.org that is KubeSpawner's name."""
    from test_k8s_manifests import admit, nfs_params, shipped_settings

    settings = shipped_settings(**({"storage": storage} if storage else {}))
    job = build_job(IcaParams(n_components=20), settings, "alice.b@lab.org", "r1")
    assert job["metadata"]["labels"]["labkit.io/owner-dir"] == "alice-b-lab-org---00e968cd"
    assert job["spec"]["template"]["metadata"]["labels"]["labkit.io/owner-dir"] == "alice-b-lab-org---00e968cd"
    assert admit(job, params=nfs_params() if storage else None) == []
    job["metadata"]["labels"]["labkit.io/owner-dir"] = job["spec"]["template"]["metadata"]["labels"][
        "labkit.io/owner-dir"] = "bob"
    assert admit(job, params=nfs_params() if storage else None)  # another directory: refused


def test_a_given_environment_replaces_the_process_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load(environ=...)`` reads exactly that mapping (through pydantic-settings' public source)."""
    monkeypatch.setenv("LABKIT_CLUSTER_NAMESPACE", "from-the-process")
    monkeypatch.setenv("LABKIT_CLUSTER_BACKOFF_LIMIT", "9")
    given = ClusterSettings.load(environ={"labkit_cluster_namespace": "given", "LABKIT_CLUSTER_STORAGE__PVC": "c"})
    assert (given.namespace, given.backoff_limit, given.storage.pvc) == ("given", 4, "c")  # case folded, nothing else
    assert ClusterSettings.load().namespace == "from-the-process"
    import labkit.runners.cluster.settings as module

    assert "_load_env_vars" not in Path(module.__file__).read_text()
