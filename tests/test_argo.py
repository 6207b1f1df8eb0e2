"""`labkit sweep --export argo`: a Workflow that hera's models accept, with Argo's documented structure."""

from __future__ import annotations

import re

import yaml
from click.testing import CliRunner
from hera.workflows import models

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.runners.argo import MOUNT, sweep_workflow
from labkit.study.sweeps import expand


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
