"""Jobs that fail for the right reason once (issue 11, item 3), against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_fixtures import NS, Controllers, Emulator, emulator, user_dir  # noqa: F401 (fixtures)
from test_cluster_jobs import jobs_for, settings
from test_cluster_manifests import validate

from labkit.errors import ParameterError
from labkit.params import IcaParams
from labkit.runners.cluster.manifests import build_job
from labkit.runners.cluster.status import describe

pytestmark = pytest.mark.timeout(30)


def test_labkits_own_failures_fail_the_job_and_disruptions_are_not_counted() -> None:
    job = build_job(IcaParams(), settings(), "alice", "r1")
    validate(job)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onPodConditions": [],
                        "onExitCodes": {"containerName": "ica", "operator": "In", "values": [2, 3, 4]}}
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"


@pytest.mark.parametrize(("code", "words"), [(2, "bad parameters"), (3, "recording cannot be read"),
                                             (4, "notebook failed")])
def test_a_job_failed_by_the_policy_says_why_in_words(code: int, words: str) -> None:
    job: dict[str, Any] = {"metadata": {"name": "labkit-alice-x"}, "status": {"conditions": [{
        "type": "Failed", "status": "True", "reason": "PodFailurePolicy",
        "message": f"Container ica for pod {NS}/p failed with exit code {code} matching FailJob rule at index 0"}]}}
    status = describe(job)
    assert status.phase == "failed" and status.infrastructure is False
    assert words in status.reason and "not retried" in status.reason


def test_resubmitting_over_a_failed_job_replaces_it(emulator: Emulator) -> None:
    jobs = jobs_for(emulator)
    first = jobs.submit(IcaParams())
    ctl = Controllers(emulator.api_client())
    ctl.job_condition(first.name, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    more = jobs_for(emulator, resources={"memory_limit": "16Gi"})
    again = more.submit(IcaParams())
    assert again.name == first.name and not again.attached and again.run_id != first.run_id
    assert any("replaced the failed Job" in w for w in again.warnings)
    job = emulator.api_client().sanitize_for_serialization(ctl.batch.read_namespaced_job(first.name, NS))
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "16Gi"
    assert describe(job).phase == "pending"
    # a running Job is still attached to, not replaced
    third = more.submit(IcaParams())
    assert third.attached and third.run_id == again.run_id


@pytest.mark.parametrize("run_id", ["r1\n", "../x", "a" * 64, "-r", "with space", ""])
def test_a_run_id_that_is_not_a_label_is_refused_before_anything_is_created(emulator: Emulator, run_id: str) -> None:
    jobs = jobs_for(emulator)
    with pytest.raises(ParameterError, match="run_id"):
        jobs.submit(IcaParams(), run_id=run_id)
    assert not [r for r in emulator.requests() if r.method == "POST"]
