"""`labkit sweep --export argo`: a Workflow that hera's models accept, with Argo's documented structure."""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from hera.workflows import models

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.runners.argo import MOUNT, sweep_workflow
from labkit.study.sweeps import expand

SCHEMA = Path(__file__).resolve().parent / "data" / "argo" / "workflow.schema.json.gz"  # Argo v4.1.2's (see NOTICE)


@lru_cache(maxsize=1)
def _argo_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_argo(doc: dict) -> None:
    """Argo's own JSON schema of a Workflow (offline): every problem listed, with where it is."""
    problems = sorted(_argo_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not problems, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in problems[:10])


def _broken(doc: dict) -> list[dict]:
    """Copies of ``doc`` that Argo's schema refuses: a wrong kind, an image that is no string, a DAG task's
    ``depends`` as a list, an env entry without its name, no spec; an output artifact whose ``optional`` is a word."""
    out = []
    has_artifacts = any(t.get("outputs", {}).get("artifacts") for t in doc["spec"]["templates"])
    for change in ("kind", "image", "depends", "env", "spec", *(("optional",) if has_artifacts else ())):
        bad = copy.deepcopy(doc)
        templates = bad["spec"]["templates"]
        step = next(t for t in templates if t.get("container"))
        if change == "kind":
            bad["kind"] = "Workflows"
        elif change == "image":
            step["container"]["image"] = 1
        elif change == "depends":
            task = next(t for tpl in templates if tpl.get("dag") for t in tpl["dag"]["tasks"] if t.get("depends"))
            task["depends"] = [task["depends"]]
        elif change == "env":
            del step["container"]["env"][0]["name"]
        elif change == "optional":
            next(t for t in templates if t.get("outputs", {}).get("artifacts"))["outputs"]["artifacts"][0]["optional"] = "yes"
        else:
            del bad["spec"]
        out.append(bad)
    return out


def _templates(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def test_exported_workflow_fans_out_collects_and_compares(demo_dir, tmp_path):
    out = tmp_path / "wf.yaml"
    result = CliRunner().invoke(main, ["sweep", "--base-dir", str(demo_dir), "--recording", "labkit-demo/*.fif",
                                       "--grid", "method=fastica,picard,infomax", "--seeds", "3",
                                       "--n-components", "12", "--export", "argo", "-o", str(out),
                                       "--image", "registry.lab.example/labkit:0.1.0"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    wf = models.Workflow.model_validate(doc) if hasattr(models.Workflow, "model_validate") \
        else models.Workflow.parse_obj(doc)  # the library's own model of Argo's schema
    assert wf.kind == "Workflow" and wf.api_version == "argoproj.io/v1alpha1"
    validate_argo(doc)
    for bad in _broken(doc):  # the check can fail: each broken copy is refused
        with pytest.raises(AssertionError):
            validate_argo(bad)
    spec, templates = doc["spec"], _templates(doc)
    assert spec["entrypoint"] == "sweep" and set(templates) == {"sweep", "run-set", "collect", "compare"}
    tasks = {t["name"]: t for t in templates["sweep"]["dag"]["tasks"]}
    assert set(tasks) == {"run", "collect", "compare"}
    assert tasks["run"]["template"] == "run-set" and "run" in tasks["collect"]["depends"]
    assert tasks["compare"]["depends"] == "collect"
    items = tasks["run"]["withItems"]
    assert len(items) == 9  # 1 recording x 3 methods x 3 seeds
    # every reference resolves: {{item.x}} to the items' keys, {{inputs.parameters.x}} to declared inputs
    declared = {p["name"] for p in templates["run-set"]["inputs"]["parameters"]}
    passed = {a["name"]: a["value"] for a in tasks["run"]["arguments"]["parameters"]}
    assert set(passed) == declared and all(set(item) == declared for item in items)
    container = templates["run-set"]["container"]
    assert container["command"] == ["labkit", "entrypoint"]
    assert container["image"] == "registry.lab.example/labkit:0.1.0"
    for template in ("run-set", "collect", "compare"):
        t = templates[template]
        body = t.get("container") or t["script"]
        assert body["volumeMounts"] == [{"name": "userdata", "mountPath": MOUNT}]
        assert t["volumes"][0]["persistentVolumeClaim"]["claimName"]
    # each item, through the container's environment, is exactly one of the sets (the prototype's contract)
    expected = {p.replace(base_dir=MOUNT) for p in expand(
        IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=12),
        method=["fastica", "picard", "infomax"], seeds=3)}
    seen = set()
    for item in items:
        env = {}
        for e in container["env"]:
            ref = re.fullmatch(r"\{\{inputs\.parameters\.(\w+)\}\}", e["value"])
            env[e["name"]] = item[passed[ref.group(1)][len("{{item."):-2]] if ref else e["value"]
        seen.add(IcaParams.from_env(env))
    assert seen == expected
    assert "digests = " in templates["collect"]["script"]["source"]


def test_workflow_builds_as_a_hera_model():
    sets = [IcaParams(method="picard"), IcaParams(method="picard"), IcaParams(method="fastica")]
    built = sweep_workflow(sets, image="labkit:1").build()
    assert isinstance(built, models.Workflow)
    [dag] = [t for t in built.spec.templates if t.dag]
    assert len(dag.dag.tasks[0].with_items) == 2  # repeated sets run once


# -- without a shared volume: recordings and results as S3 artifacts ------------------------------------
def _artifact_settings(monkeypatch) -> None:
    for key in [k for k in os.environ if k.startswith("LABKIT_CLUSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LABKIT_CLUSTER_STORE__KIND", "s3")
    monkeypatch.setenv("LABKIT_CLUSTER_STORE__BUCKET", "labkit")
    monkeypatch.setenv("LABKIT_CLUSTER_STORE__PREFIX", "users/{username}")
    monkeypatch.setenv("JUPYTERHUB_USER", "anna")


def test_the_artifact_workflow_shares_no_volume_and_passes_results_as_artifacts(demo_dir, tmp_path, monkeypatch):
    from labkit.results.provenance import fingerprint

    _artifact_settings(monkeypatch)
    out = tmp_path / "wf.yaml"
    result = CliRunner().invoke(main, ["sweep", "--base-dir", str(demo_dir), "--recording", "labkit-demo/*.fif",
                                       "--grid", "method=fastica,picard", "--seeds", "2", "--n-components", "12",
                                       "--export", "argo", "--artifacts", "s3", "-o", str(out),
                                       "--image", "registry.lab.example/labkit:0.1.0"])
    assert result.exit_code == 0, result.output
    assert "labkit push labkit-demo/demo_raw.fif" in result.output
    doc = yaml.safe_load(out.read_text())
    models.Workflow.model_validate(doc)  # the library's own model of Argo's schema
    validate_argo(doc)  # and Argo's own JSON schema
    for bad in _broken(doc):
        with pytest.raises(AssertionError):
            validate_argo(bad)
    text = out.read_text()
    assert "persistentVolumeClaim" not in text and "nfs" not in text
    templates = _templates(doc)
    assert set(templates) == {"sweep", "run-set", "collect"}
    for name in ("run-set", "collect"):
        assert templates[name]["volumes"] == [{"name": "work", "emptyDir": {}}]
    outputs = templates["run-set"]["outputs"]["artifacts"]
    assert [o["s3"]["key"] for o in outputs] == [
        "{{workflow.name}}/results/PreExperiment_ICA_{{inputs.parameters.run_id}}",
        "{{workflow.name}}/results/PreExperiment_ICA_{{inputs.parameters.run_id}}.failed"]
    assert all(o["optional"] and o["archive"] == {"none": {}} for o in outputs)
    (fan_in,) = templates["collect"]["inputs"]["artifacts"]
    assert fan_in["s3"]["key"] == "{{workflow.name}}/results"  # every step's folder, as one input
    tasks = {t["name"]: t for t in templates["sweep"]["dag"]["tasks"]}
    assert set(tasks) == {"run", "collect"} and "run" in tasks["collect"]["depends"]
    items = tasks["run"]["withItems"]
    sha = fingerprint(demo_dir / DEMO_FILENAME)
    assert len(items) == 4 and len({i["run_id"] for i in items}) == 4
    assert {i["recording_key"] for i in items} == {f"users/anna/recordings/{sha}/files"}  # where labkit push put it
    assert {i["recording_dir"] for i in items} == {"/work/data/labkit-demo"}
    assert {i["recording_sha256"] for i in items} == {sha}
    declared = {p["name"] for p in templates["run-set"]["inputs"]["parameters"]}
    assert all(set(i) == declared for i in items)


def test_the_collect_step_on_argos_layout_makes_the_local_sweeps_table(fitted_runs, tmp_path, monkeypatch):
    """The collect step's command, run here on result folders laid out as Argo's key-only input artifact
    lays them out (``<path>/<folder>/...``), gives the table a local sweep of the same sets gives."""
    import shutil
    import subprocess
    import sys

    import pandas as pd

    from labkit.runners.argo import OUT, RESULTS, artifact_workflow
    from labkit.study.sweeps import run_sweep

    base = tmp_path / "home"
    shutil.copytree(fitted_runs, base)
    sets = expand(IcaParams(base_dir=str(base), raw_file_path=DEMO_FILENAME, n_components=20, crop_tmax=20.0),
                  method=["picard", "fastica", "infomax"], seeds=[0, 1])
    local = run_sweep(sets, progress=False)
    assert set(local["action"]) == {"reused"}  # the runs exist: the local sweep's table, without refitting
    doc = yaml.safe_load(artifact_workflow(sets, image="labkit:1", recordings={DEMO_FILENAME: "0" * 64},
                                           prefix="users/anna").to_yaml())
    collect = _templates(doc)["collect"]
    argo = tmp_path / "argo"  # the step's filesystem: /work/... is argo/work/...
    for path in local["path"]:
        shutil.copytree(path, argo / RESULTS.lstrip("/") / Path(path).name)
    env = {e["name"]: str(argo) + e["value"] if e["value"].startswith("/work") else e["value"]
           for e in collect["script"]["env"]}
    proc = subprocess.run([sys.executable, "-c", collect["script"]["source"]], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(argo / OUT.lstrip("/") / "sweep.csv", index_col=0)
    assert (argo / OUT.lstrip("/") / "statistics.txt").read_text().strip()
    local.to_csv(tmp_path / "local.csv")  # what labkit sweep --csv writes
    columns = [c for c in table.columns if c not in ("path",)]
    mine = pd.read_csv(tmp_path / "local.csv", index_col=0)[columns].sort_index()
    theirs = table[columns].sort_index()
    assert list(theirs.index) == list(mine.index) and len(theirs) == 6
    pd.testing.assert_frame_equal(theirs, mine, check_dtype=False, check_like=True)
