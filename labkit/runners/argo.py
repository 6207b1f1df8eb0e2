"""A sweep as an Argo Workflow, for labs that run Argo: fan out over the sets, collect, compare.

Built with hera's models (``hera.workflows``), so the YAML is what Argo's own schema
describes. The ``run`` task fans out over the sets (``withItems``, one item per set)
and runs the labkit image's command, ``labkit entrypoint``, with the prototype's
environment variables, exactly as a cluster Job does; ``collect`` tabulates every
result folder of these sets into ``sweep.csv`` beside them, even when some runs failed; ``compare``
tests whether the methods differ. All three mount the user's data directory.
"""

from __future__ import annotations

from typing import Sequence

from hera.workflows import DAG, Container, Env, ExistingVolume, Parameter, Script, Workflow

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
