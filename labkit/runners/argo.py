"""A sweep as an Argo Workflow, for labs that run Argo: fan out over the sets, collect, compare.

Built with hera's models (``hera.workflows``), so the YAML is what Argo's own schema
describes. The ``run`` task fans out over the sets (``withItems``, one item per set)
and runs the labkit image's command, ``labkit entrypoint``, with the prototype's
environment variables, exactly as a cluster Job does; ``collect`` tabulates every
result folder of these sets into ``sweep.csv`` beside them, even when some runs failed; ``compare``
tests whether the methods differ. All three mount the user's data directory.

With ``artifacts="s3"`` (:func:`artifact_workflow`) no step mounts anything: each ``run`` step
gets its recording as an input artifact (the files ``labkit push`` stored, by content) and leaves
its result folder as an output artifact under ``<workflow>/results/`` in the artifact repository
(MinIO, as Argo's ``artifact-repositories`` ConfigMap says: k8s/argo-artifact-repository.yaml);
``collect`` takes that whole prefix as one input and writes the table and the statistics.
"""

from __future__ import annotations

import posixpath
from typing import Sequence

from hera.workflows import (
    DAG,
    Container,
    EmptyDirVolume,
    Env,
    ExistingVolume,
    NoneArchiveStrategy,
    Parameter,
    S3Artifact,
    Script,
    Workflow,
)

from labkit.params import FIELD_BY_NAME, IcaParams

#: where the user's directory is mounted in every step (the prototype's BASE_DIR)
MOUNT = "/userdata"
#: the set fields a ``run`` item carries (base_dir is the mount)
ITEM_FIELDS = tuple(name for name in FIELD_BY_NAME if name != "base_dir")

COLLECT = """\
from labkit.results.reading import list_runs
from labkit.results.table import table
digests = {digests!r}
found = table(r for r in list_runs({mount!r}) if r.params is not None and r.params.digest in digests)
found.to_csv({mount!r} + "/sweep.csv")
print(found.drop(columns=["path"]).to_string())
"""

COMPARE = f"""\
import pandas as pd
from labkit.study import compare, quality
frame = quality.comparison_table(pd.read_csv({MOUNT!r} + "/sweep.csv"))
try:
    print(compare.compare(frame, ["fit_time_s", "eog_best_score", "ecg_best_score"], by="method").summary())
except ValueError as err:
    print("not compared:", err)
"""


def items(sets: Sequence[IcaParams]) -> list[dict[str, str]]:
    """One ``withItems`` entry per distinct set: its fields as the text of their environment variables."""
    distinct = {p.digest: p for p in sets}
    out = []
    for params in distinct.values():
        env = params.to_env()
        out.append({name: env[FIELD_BY_NAME[name].env] for name in ITEM_FIELDS})
    return out


def sweep_workflow(sets: Sequence[IcaParams], *, image: str, claim: str = "labkit-userdata",
                   name: str = "labkit-sweep-", parallelism: int | None = None) -> Workflow:
    """The Workflow for ``sets``: ``run`` (fan-out) -> ``collect`` -> ``compare``, on the PVC ``claim``."""
    volume = ExistingVolume(name="userdata", claim_name=claim, mount_path=MOUNT)
    with Workflow(generate_name=name, entrypoint="sweep", parallelism=parallelism,
                  labels={"app.kubernetes.io/name": "labkit"}) as workflow:
        run_set = Container(
            name="run-set", image=image, command=["labkit", "entrypoint"],
            inputs=[Parameter(name=field) for field in ITEM_FIELDS],
            env=[Env(name="BASE_DIR", value=MOUNT)] + [
                Env(name=FIELD_BY_NAME[field].env, value=f"{{{{inputs.parameters.{field}}}}}")
                for field in ITEM_FIELDS],
            volumes=[volume],
        )
        source = COLLECT.format(digests=sorted({p.digest for p in sets}), mount=MOUNT)
        collect = Script(name="collect", image=image, command=["python"], source=source, volumes=[volume])
        compare = Script(name="compare", image=image, command=["python"], source=COMPARE, volumes=[volume])
        with DAG(name="sweep"):
            run = run_set(name="run", with_items=items(sets),
                          arguments={field: f"{{{{item.{field}}}}}" for field in ITEM_FIELDS})
            gathered = collect(name="collect", depends="run.AnySucceeded || run.AllFailed")
            compared = compare(name="compare")
            gathered >> compared
            del run  # the fan-out's dependency is the `depends` expression above (failed runs still get collected)
    return workflow


#: the scratch directory of every step of an artifact Workflow (an emptyDir): BASE_DIR of the runs
WORK = "/work/data"
#: where ``collect`` finds every run's folder (one input artifact: the Workflow's results prefix)
RESULTS = "/work/results"
#: where ``collect`` writes the table and the statistics (its output artifacts)
OUT = "/work/out"

#: the collect step of an artifact Workflow: the table of the sets' runs and the comparison of the methods
COLLECT_ARTIFACTS = """\
import os
import pandas as pd
from labkit.results.reading import list_runs
from labkit.results.table import table
from labkit.study import compare, quality
digests = {digests!r}
results, out = os.environ["LABKIT_RESULTS"], os.environ["LABKIT_OUT"]
os.makedirs(out, exist_ok=True)
found = table(r for r in list_runs(results) if r.params is not None and r.params.digest in digests)
found.to_csv(os.path.join(out, "sweep.csv"))
print(found.drop(columns=["path"]).to_string())
frame = quality.comparison_table(pd.read_csv(os.path.join(out, "sweep.csv")))
try:
    text = compare.compare(frame, ["fit_time_s", "eog_best_score", "ecg_best_score"], by="method").summary()
except ValueError as err:
    text = "not compared: " + str(err)
print(text)
with open(os.path.join(out, "statistics.txt"), "w") as fh:
    fh.write(str(text) + "\\n")
"""


def artifact_items(sets: Sequence[IcaParams], run_ids: Sequence[str], recordings: dict[str, str],
                   prefix: str) -> list[dict[str, str]]:
    """:func:`items` plus what a step without a mount needs: its run id, the store key of its recording's
    files (``recordings``: raw_file_path -> SHA-256) and the directory they go to."""
    out = []
    for item, params, run_id in zip(items(sets), {p.digest: p for p in sets}.values(), run_ids, strict=True):
        sha = recordings[params.raw_file_path]
        key = posixpath.join(prefix, f"recordings/{sha}/files") if prefix else f"recordings/{sha}/files"
        folder = posixpath.normpath(posixpath.join(WORK, posixpath.dirname(params.raw_file_path)))
        out.append({**item, "run_id": run_id, "recording_key": key, "recording_dir": folder,
                    "recording_sha256": sha})
    return out


def artifact_workflow(sets: Sequence[IcaParams], *, image: str, recordings: dict[str, str], prefix: str,
                      run_ids: Sequence[str] | None = None, name: str = "labkit-sweep-",
                      parallelism: int | None = None) -> Workflow:
    """The sweep without a shared volume: ``run`` (fan-out, result folders as output artifacts) -> ``collect``.

    ``recordings`` maps each set's ``raw_file_path`` to the SHA-256 it was pushed under and
    ``prefix`` is the user's part of the bucket (the artifact repository's bucket is the store's)."""
    from labkit.results.layout import FOLDER_PREFIX, new_run_id

    distinct = list({p.digest: p for p in sets}.values())
    run_ids = list(run_ids) if run_ids is not None else [f"{new_run_id(p)}-{i}" for i, p in enumerate(distinct)]
    extra = ("run_id", "recording_key", "recording_dir", "recording_sha256")
    scratch = EmptyDirVolume(name="work", mount_path="/work")
    results_key = "{{workflow.name}}/results"
    with Workflow(generate_name=name, entrypoint="sweep", parallelism=parallelism,
                  labels={"app.kubernetes.io/name": "labkit"}) as workflow:
        folder = f"{WORK}/{FOLDER_PREFIX}{{{{inputs.parameters.run_id}}}}"
        run_set = Container(
            name="run-set", image=image, command=["labkit", "entrypoint"],
            inputs=[Parameter(name=field) for field in (*ITEM_FIELDS, *extra)] + [
                S3Artifact(name="recording", path="{{inputs.parameters.recording_dir}}",
                           key="{{inputs.parameters.recording_key}}")],
            outputs=[S3Artifact(name=f"result{suffix.replace('.', '-')}", path=folder + suffix, optional=True,
                                archive=NoneArchiveStrategy(),
                                key=f"{results_key}/{FOLDER_PREFIX}{{{{inputs.parameters.run_id}}}}{suffix}")
                     for suffix in ("", ".failed")],
            env=[Env(name="BASE_DIR", value=WORK), Env(name="LABKIT_RUN_ID", value="{{inputs.parameters.run_id}}"),
                 Env(name="LABKIT_RECORDING_SHA256", value="{{inputs.parameters.recording_sha256}}"),
                 Env(name="HOME", value="/tmp"), Env(name="MPLCONFIGDIR", value="/tmp/matplotlib")] + [
                Env(name=FIELD_BY_NAME[field].env, value=f"{{{{inputs.parameters.{field}}}}}")
                for field in ITEM_FIELDS],
            volumes=[scratch],
        )
        collect = Script(
            name="collect", image=image, command=["python"],
            source=COLLECT_ARTIFACTS.format(digests=sorted(p.digest for p in distinct)),
            env=[Env(name="LABKIT_RESULTS", value=RESULTS), Env(name="LABKIT_OUT", value=OUT),
                 Env(name="HOME", value="/tmp"), Env(name="MPLCONFIGDIR", value="/tmp/matplotlib")],
            inputs=[S3Artifact(name="results", path=RESULTS, key=results_key)],
            outputs=[S3Artifact(name="table", path=f"{OUT}/sweep.csv", key="{{workflow.name}}/sweep.csv",
                                archive=NoneArchiveStrategy()),
                     S3Artifact(name="statistics", path=f"{OUT}/statistics.txt", archive=NoneArchiveStrategy(),
                                key="{{workflow.name}}/statistics.txt")],
            volumes=[scratch],
        )
        with DAG(name="sweep"):
            run = run_set(name="run", with_items=artifact_items(distinct, run_ids, recordings, prefix),
                          arguments={field: f"{{{{item.{field}}}}}" for field in (*ITEM_FIELDS, *extra)})
            collect(name="collect", depends="run.AnySucceeded || run.AllFailed")
            del run  # the fan-out's dependency is the `depends` expression (failed runs' folders are collected too)
    return workflow
