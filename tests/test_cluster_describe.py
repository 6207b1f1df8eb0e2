"""The pure part of following a Job: :func:`labkit.runners.cluster.jobs.describe` in every situation, in words."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.runners.cluster.status import describe

JOB = {"metadata": {"name": "labkit-anna-abc", "namespace": "ns",
                    "labels": {"labkit.io/run-id": "r1", "labkit.io/owner": "anna", "labkit.io/digest": "abc"}},
       "spec": {}, "status": {}}


def job(**status: Any) -> dict[str, Any]:
    return {**JOB, "status": status}


def failed(reason: str, message: str = "") -> dict[str, Any]:
    return job(conditions=[{"type": "Failed", "status": "True", "reason": reason, "message": message}])


def pod(phase: str = "Pending", node: str | None = None, state: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None, name: str = "labkit-anna-abc-x1") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if state is not None:
        status["containerStatuses"] = [{"name": "ica", "state": state}]
    if conditions:
        status["conditions"] = conditions
    spec: dict[str, Any] = {"containers": [{"name": "ica", "image": "reg/labkit:0.1.0",
                                            "resources": {"limits": {"memory": "4Gi"}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec, "status": status}


CASES = [
    # (job, pods, events, log, status.json) -> phase, infrastructure, words in the reason
    ("queued", job(), [], [], "", None, "pending", None, "no pod created yet"),
    ("scheduling", job(active=1), [pod()], [], "", None, "pending", None, "waiting to be scheduled"),
    ("creating", job(active=1), [pod(node="n1", state={"waiting": {"reason": "ContainerCreating"}})], [], "", None,
     "pending", None, "being created"),
    ("errimagepull", job(active=1), [pod(node="n1", state={"waiting": {"reason": "ErrImagePull"}})], [], "", None,
     "pending", None, "reg/labkit:0.1.0 cannot be pulled"),
    ("invalid image", job(active=1), [pod(node="n1", state={"waiting": {"reason": "InvalidImageName"}})], [], "",
     None, "pending", None, "not valid"),
    ("config error", job(active=1), [pod(node="n1", state={"waiting": {"reason": "CreateContainerConfigError",
                                                                          "message": "secret x not found"}})],
     [], "", None, "pending", None, "secret x not found"),
    ("unschedulable", job(active=1), [pod(conditions=[{"type": "PodScheduled", "status": "False",
                                                        "message": "0/3 nodes are available: 1 Insufficient cpu."}])],
     [], "", None, "pending", None, "Insufficient cpu"),
    ("volcano queue", job(), [], [{"type": "Warning", "reason": "Unschedulable", "message": "queue eeg is full",
                                   "involvedObject": {"kind": "PodGroup", "name": "podgroup-uid"}}], "", None,
     "pending", None, "Volcano queue"),
    ("running", job(active=1, ready=1), [pod("Running", node="n7")], [], "", None, "running", None, "running"),
    ("listed running", job(active=1, ready=1), [], [], "", None, "running", None, "a pod is running"),
    ("retrying", job(active=1, failed=1), [pod("Failed", node="n1", state={"terminated": {"reason": "Error"}})],
     [], "", None, "running", None, "retries"),
    ("succeeded", job(conditions=[{"type": "Complete", "status": "True"}]), [pod("Succeeded", node="n2")], [], "",
     None, "succeeded", None, "complete"),
    ("oom", failed("BackoffLimitExceeded"), [pod("Failed", "n1", {"terminated": {"reason": "OOMKilled"}})], [], "",
     None, "failed", True, "OOMKilled) (limit 4Gi)"),
    ("oom last state", failed("BackoffLimitExceeded"),
     [{**pod("Failed", "n1"), "status": {"phase": "Failed", "containerStatuses": [
         {"name": "ica", "state": {}, "lastState": {"terminated": {"reason": "OOMKilled"}}}]}}],
     [], "", None, "failed", True, "out of memory"),
    ("deadline", failed("DeadlineExceeded"), [pod("Failed", "n1", {"terminated": {"reason": "Error"}})], [], "",
     None, "failed", True, "time limit"),
    ("never started", failed("DeadlineExceeded"), [pod("Pending", "n1", {"waiting": {"reason": "ImagePullBackOff"}})],
     [], "", None, "failed", True, "never started: the image"),
    ("cell", failed("BackoffLimitExceeded"), [pod("Failed", "n1", {"terminated": {"reason": "Error"}})], [], "",
     {"state": "failed", "error": {"reason": "x", "cell": 5, "ename": "KeyError", "evalue": "'EEG 001'"}},
     "failed", False, "cell 5: KeyError: 'EEG 001'"),
    ("log line", failed("BackoffLimitExceeded"), [pod("Failed", "n1", {"terminated": {"reason": "Error"}})], [],
     "noise\nlabkit: run failed: Invalid value for the 'n_components' parameter\n", None, "failed", False,
     "n_components"),
    ("backoff only", failed("BackoffLimitExceeded"), [pod("Failed", "n1", {"terminated": {"reason": "Error"}})], [],
     "", None, "failed", None, "every retry"),
    ("other", failed("PodFailurePolicy", "Container ica exited with 3"), [], [], "", None, "failed", None,
     "exited with 3"),
    ("cancelled", {**JOB, "metadata": {**JOB["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}, [], [], "",
     None, "failed", False, "cancelled"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_describe(case: tuple) -> None:
    _, job_, pods, events, log, result, phase, infra, words = case
    status = describe(job_, pods, events, log, result)
    assert status.phase == phase, status
    assert status.infrastructure is infra, status
    assert words in status.reason, status.reason
    assert status.run_id == "r1" and status.owner == "anna" and status.name == "labkit-anna-abc"


def test_node_and_pod_are_reported() -> None:
    status = describe(job(active=1, ready=1), [pod("Running", node="worker-7", name="p-1")])
    assert status.node == "worker-7" and status.pod == "p-1" and "on worker-7" in status.summary()
