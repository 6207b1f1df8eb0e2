"""Every command in README.md's ```bash blocks is executed, so the README stays true.

Each block runs in a fresh directory with a fresh ``HOME``, command by command, through
``bash`` exactly as written, except for the README's placeholders, filled in by the test:
``<run-id>``, ``<job>`` and ``<sweep-id>`` become the ids the previous commands
printed, ``/userdata`` becomes a directory holding the demo recording as ``sub-01_raw.fif``.
``make`` lines are checked with ``make -n`` (they install packages). Blocks that talk to a
cluster run against kmock's Kubernetes emulator, with the test playing the Job controller
and the pods (each Job "runs" by leaving a complete result folder in the user's directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
from cluster_fixtures import NS, Controllers, Emulator, emulator, user_dir, write_kubeconfig  # noqa: F401
from s3_fixtures import s3, s3_endpoint  # noqa: F401 (fixtures)

from labkit.analysis.datasets import DEMO_FILENAME

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the subcommands that need a cluster: a block using one runs against the emulator
CLUSTER_COMMANDS = ("submit", "jobs", "cancel")
#: the subcommands that need an artifact store: a block using one runs against S3 on loopback
STORE_COMMANDS = ("push", "fetch")
#: commands only parsed (flags and arguments checked by click, nothing run), and why
PARSE_ONLY = {
    "labkit sweep --base-dir ~/data --recording 'sub-*/*_raw.fif' --grid method=fastica,picard,infomax --seeds 30":
        "90 ICA fits; the same sweep machinery runs below with study.yaml",
    "labkit sweep study.yaml --cluster":
        "needs a cluster; the cluster block's `labkit submit --sweep` runs ClusterJobs.submit_sweep on the emulator",
}
#: the study and set list the README's sweep commands read: small, so the sweep takes seconds
STUDY = "recordings: ['sub-*/*_raw.fif']\nparams: {n_components: 4, crop_tmax: 8}\n" \
        "grid: {method: [fastica, picard]}\nseeds: 2\n"


def bash_blocks(text: str | None = None) -> list[list[str]]:
    """The README's ```bash blocks, each a list of commands (comments and blank lines dropped)."""
    text = README.read_text() if text is None else text
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        commands = [re.sub(r"\s+#.*$", "", line).strip() for line in body.splitlines()]
        blocks.append([c for c in commands if c and not c.startswith("#")])
    return blocks


def kind(block: list[str]) -> str:
    programs = {_program(c)[0] for c in block}
    if programs == {"make"}:
        return "make"
    if any(_program(c)[:2] in [["labkit", sub] for sub in CLUSTER_COMMANDS] for c in block):
        return "cluster"
    if any(_program(c)[:2] in [["labkit", sub] for sub in STORE_COMMANDS] for c in block):
        return "store"
    assert programs <= {"labkit", "papermill"}, f"a README command no test knows how to run: {block}"
    return "local"


def _program(command: str) -> list[str]:
    """The command's words after any leading ``NAME=value`` environment assignments."""
    words = command.split()
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words.pop(0)
    return words


def test_the_readme_blocks_are_found_and_each_has_a_runner():
    blocks = bash_blocks()
    kinds = [kind(b) for b in blocks]
    assert kinds.count("make") >= 1 and kinds.count("local") >= 3 and kinds.count("cluster") == 1, kinds
    commands = [c for b in blocks for c in b]
    assert "labkit runs --base-dir ~/data" in commands and any(c.startswith("papermill ") for c in commands)
    assert bash_blocks("```bash\nlabkit runs   # a comment\n\n```\n") == [["labkit runs"]]


def test_parse_only_commands_are_in_the_readme_and_parse(tmp_path: Path) -> None:
    import shlex

    from labkit.cli.main import main

    commands = [c for b in bash_blocks() for c in b]
    (tmp_path / "study.yaml").write_text(STUDY)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        for command in PARSE_ONLY:
            assert command in commands, f"PARSE_ONLY lists a command the README no longer shows: {command}"
            args = shlex.split(command)[1:]
            ctx = main.make_context("labkit", list(args))
            sub = main.get_command(ctx, args[0])
            sub.make_context(args[0], args[1:], parent=ctx)  # raises click.UsageError on a wrong flag
    finally:
        os.chdir(old)


def _tiny_recording(demo: Path, target: Path, n_eeg: int = 8) -> None:
    """``n_eeg`` EEG channels (plus EOG/ECG) and 10 s of the demo recording: a sweep of it takes seconds."""
    import mne

    raw = mne.io.read_raw_fif(demo, preload=True, verbose="error")
    eeg = [n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "eeg"][:n_eeg]
    others = [n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t in ("eog", "ecg")]
    raw.pick(eeg + others).crop(0, 10)
    target.parent.mkdir(parents=True)
    raw.save(target, verbose="error")


def _bash(command: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"README command failed ({proc.returncode}): {command}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABKIT_", "BASE_DIR", "KUBECONFIG", "JUPYTERHUB_", "KUBERNETES_"))}
    return {**env, "HOME": str(home), "MPLBACKEND": "Agg"}


def test_make_lines_are_valid_make_targets():
    for block in bash_blocks():
        if kind(block) == "make":
            for command in block:
                proc = subprocess.run(["make", "-n", *command.split()[1:]], cwd=ROOT, capture_output=True,
                                      text=True, timeout=60)
                assert proc.returncode == 0, f"{command}: {proc.stderr}"
                assert "labkit" in proc.stdout or "pytest" in proc.stdout


def test_make_works_in_its_own_virtualenv_and_ci_runs_the_readmes_test_command(tmp_path: Path) -> None:
    """On a fresh clone `make demo` and `make test` make a virtualenv, and every pip install and every
    labkit, pytest, ruff and lint-imports command runs from it: a system Python that refuses pip installs
    (Debian's) is never asked to install. ``.ci/run`` ends in the README's test command."""
    venv = tmp_path / "venv"
    for target in ("demo", "test"):
        proc = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert any(f"-m venv --clear {venv}" in line for line in lines), proc.stdout
        pips = [line for line in lines if "pip install" in line]
        assert pips and all(line.startswith(f"{venv}/bin/python -m pip install") for line in pips), pips
        tools = [line for line in lines
                 if re.search(r"\b(labkit|pytest|ruff|lint-imports)\b", line.replace(str(venv), ""))
                 and "pip install" not in line]
        assert tools and all(line.startswith(f"{venv}/bin/") for line in tools), tools
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    readme_make = [c for b in bash_blocks() if kind(b) == "make" for c in b]
    assert ci[-1] in readme_make and ci[-1].startswith("make test"), (ci[-1], readme_make)


def _sandbox(root: Path, demo: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    """(home, work, userdata, env) for one block: ~/data holds a tiny recording, /userdata the demo as
    sub-01_raw.fif, the working directory the notebooks, study.yaml and sets.json the README names."""
    home, work, userdata = root / "shell-home", root / "work", root / "userdata"
    for d in (home, work, userdata):
        d.mkdir(parents=True)
    shutil.copy(demo, userdata / "sub-01_raw.fif")
    _tiny_recording(demo, home / "data" / "sub-01" / "tiny_raw.fif")
    (work / "notebooks").symlink_to(ROOT / "notebooks")
    (work / "study.yaml").write_text(STUDY.replace("recordings:", f"base_dir: {home / 'data'}\nrecordings:"))
    (work / "sets.json").write_text(json.dumps([{**_tiny(home), "method": m} for m in ("infomax", "picard")]))
    return home, work, userdata, _clean_env(home)


def _tiny(home: Path) -> dict[str, object]:
    return {"base_dir": str(home / "data"), "raw_file_path": "sub-01/tiny_raw.fif", "n_components": 4,
            "crop_tmax": 8}


@pytest.mark.slow
def test_local_readme_commands_run(tmp_path: Path, demo_source: Path) -> None:
    """The CLI, the prototype's contract, papermill, sweeps and comparisons, as the README shows them.

    Each block runs in a fresh directory. Before the comparison block, ``labkit sweep`` runs a
    balanced design there (per seed, both methods at the component count the README's ``--where``
    names and picard at five fewer), as a researcher would have before comparing."""
    entrypoint_ran = False
    for i, block in enumerate(bash_blocks()):
        if kind(block) != "local":
            continue
        home, work, userdata, env = _sandbox(tmp_path / f"block{i}", demo_source / DEMO_FILENAME)
        if any(_program(c)[:2] == ["labkit", "compare"] for c in block):
            # per seed: both methods at the README's component count, and picard at five fewer
            n = int(re.search(r"--where n_components=(\d+)", " ".join(block)).group(1))
            _tiny_recording(demo_source / DEMO_FILENAME, home / "data" / "sub-02" / "wide_raw.fif", n_eeg=n + 4)
            design = [{**_tiny(home), "raw_file_path": "sub-02/wide_raw.fif", "method": m, "n_components": k,
                       "random_state": seed}
                      for seed in (0, 1) for m, k in (("fastica", n), ("picard", n), ("picard", n - 5))]
            (work / "design.json").write_text(json.dumps(design))
            _bash("labkit sweep design.json", work, env)
        run_id = None
        for command in block:
            if command in PARSE_ONLY:
                continue
            command = command.replace("/userdata", str(userdata))
            if "<run-id>" in command:
                assert run_id, "the README shows a run id before any run printed one"
                command = command.replace("<run-id>", run_id)
            out = _bash(command, work, env).stdout
            words = _program(command)
            if words[:2] in (["labkit", "run"], ["labkit", "entrypoint"]):
                first, last = out.splitlines()[0], out.splitlines()[-1]
                assert re.fullmatch(r"run \S+: succeeded( with warnings)?", first), out
                assert Path(last).is_dir() and Path(last).name.startswith("PreExperiment_ICA_"), out
                run_id = first.split()[1].rstrip(":")
                entrypoint_ran |= words[1] == "entrypoint" and Path(last).parent == userdata
            elif words[:2] == ["labkit", "runs"]:
                assert out.startswith("RUN ID") and run_id in out and max(map(len, out.splitlines())) <= 100
            elif words[:2] == ["labkit", "logs"]:
                assert "INFO" in out, out
            elif words[:2] == ["labkit", "sweep"] and "--export" not in words:
                # no row in state failed, and a summary line, when printed, counts none
                assert "succeeded" in out and not re.search(r"^\S+\s+failed\b", out, flags=re.M), out
                assert not re.search(r"\b[1-9]\d* failed\b", out), out
            elif words[:2] == ["labkit", "compare"]:
                assert out.strip(), out
            elif words[0] == "papermill":  # no base_dir, no $BASE_DIR: results in ~/labkit, never the working dir
                assert (work / "out.ipynb").is_file()
                assert [p for p in (home / "labkit").glob("PreExperiment_ICA_*")
                        if not p.name.endswith((".partial", ".failed"))], out
                assert not list(work.glob("PreExperiment_ICA_*")) and not (work / "labkit-demo").exists()
    assert entrypoint_ran, "the entrypoint wrote its folder in BASE_DIR"


class _JobController:
    """Plays the Job controller, the pods and the user's NFS directory: every new Job gets a pod with a
    log, a complete result folder for its run id, a succeeded pod and a Complete condition."""

    def __init__(self, emu: Emulator, user_dir: Path) -> None:
        self.emu, self.user_dir = emu, user_dir
        self.ctl = Controllers(emu.api_client())
        self.done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            for job in self.ctl.batch.list_namespaced_job(NS).items:
                if job.metadata.name not in self.done:
                    self.done.add(job.metadata.name)
                    self._complete(job)

    def _complete(self, job) -> None:
        from labkit import IcaParams
        from labkit.results.folder import RunFolder
        from labkit.results.layout import ICA_FILE, METRICS_FILE

        name = job.metadata.name
        pod = self.ctl.create_pod(name, phase="Running", node="worker-1")
        self.emu.react(lambda k: k[f"get /api/v1/namespaces/{NS}/pods/{pod}/log"] << b"step load\nstep fit\n")
        env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
        params = json.loads(job.metadata.annotations["labkit.io/params"])
        folder = RunFolder.create(IcaParams.from_dict({**params, "base_dir": str(self.user_dir)}),
                                  env["LABKIT_RUN_ID"])
        folder.start()
        (folder.path / METRICS_FILE).write_text("{}")
        (folder.path / ICA_FILE).write_bytes(b"ica")
        folder.succeed()
        self.ctl.pod_status(pod, phase="Succeeded")
        self.ctl.job_condition(name, "Complete")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def cluster_shell(emulator: Emulator, tmp_path: Path, user_dir: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(environment without any cluster settings, environment of a user on the emulated cluster)."""
    home = tmp_path / "shell-home"
    home.mkdir()
    bare = _clean_env(home)
    configured = {**bare, "KUBECONFIG": str(write_kubeconfig(emulator, tmp_path)), "JUPYTERHUB_USER": "anna",
                  "BASE_DIR": str(user_dir), "LABKIT_CLUSTER_NAMESPACE": NS,
                  "LABKIT_CLUSTER_STORAGE__NFS_SERVER": "nfs.lab.example", "LABKIT_CLUSTER_WATCH_TIMEOUT": "1",
                  "LABKIT_CLUSTER_API_RETRIES": "1"}
    controller = _JobController(emulator, user_dir)
    try:
        yield bare, configured
    finally:
        controller.stop()


def test_cluster_readme_commands_run_against_the_emulator(cluster_shell, tmp_path: Path) -> None:
    from labkit import IcaParams

    bare, configured = cluster_shell
    work = tmp_path / "work"
    work.mkdir()
    (work / "sets.json").write_text(json.dumps([IcaParams(method=m).to_dict() for m in ("picard", "infomax")]))
    ids: dict[str, str] = {}
    (block,) = [b for b in bash_blocks() if kind(b) == "cluster"]
    for command in block:
        for placeholder, value in ids.items():
            command = command.replace(placeholder, value)
        assert "<" not in command, f"no id printed yet for {command}"
        words = _program(command)
        # render claims to need no cluster: it gets no settings and no kubeconfig
        out = _bash(command, work, bare if words[1] == "render" else configured, timeout=120).stdout
        if words[1] == "render":
            assert "kind: Job" in out and "claimName: claim-alice" in out
        elif words[1] == "submit" and "--sweep" not in words:
            name = re.search(r"submitted (labkit-\S+) \(run (\S+),", out)
            assert name, out
            ids["<job>"] = ids["<job-or-run-id>"] = name.group(1)
            assert Path(out.splitlines()[-1]).name == f"PreExperiment_ICA_{name.group(2)}", out
        elif words[1] == "submit":
            sweep = re.search(r"^sweep (\S+): 2 runs", out, flags=re.M)
            assert sweep and len(re.findall(r"^result \S+ \(succeeded\): /", out, flags=re.M)) == 2, out
            ids["<sweep-id>"] = sweep.group(1)
        elif words[1] == "jobs" and "--sweep" in words:
            assert out.count("succeeded") >= 2, out
        elif words[1] == "jobs":
            assert ids["<job-or-run-id>"] in out
        elif words[1] == "logs":
            assert "step fit" in out
        elif words[1] == "cancel":
            # the README's run finished (submit --wait): its Job is removed, its result stays
            assert f"removed {ids['<job-or-run-id>']} (it had already succeeded" in out, out


@pytest.mark.slow
def test_store_readme_commands_run_against_s3_on_loopback(s3, tmp_path: Path, demo_source: Path) -> None:
    """push, runs and fetch as the README shows them, with the store in the settings' variables; the run
    fetched is one a pod uploaded (a finished local run, uploaded and committed with its manifest)."""
    from labkit.results.s3 import open_store
    from labkit.results.store import upload_folder

    (block,) = [b for b in bash_blocks() if kind(b) == "store"]
    home, work, _, env = _sandbox(tmp_path, demo_source / DEMO_FILENAME)
    shutil.copytree(demo_source, work, dirs_exist_ok=True)  # labkit-demo/demo_raw.fif, as `labkit demo-data` writes it
    env = {**env, "JUPYTERHUB_USER": "anna", "LABKIT_CLUSTER_STORE__KIND": "s3",
           "LABKIT_CLUSTER_STORE__BUCKET": s3.bucket, "LABKIT_CLUSTER_STORE__ENDPOINT": s3.endpoint,
           **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}}
    pod = _bash("labkit run --base-dir data --raw-file-path sub-01/tiny_raw.fif --n-components 4 --crop-tmax 8",
                home, env).stdout.splitlines()
    run_id = pod[0].split()[1].rstrip(":")
    upload_folder(open_store(s3.url(), endpoint=s3.endpoint), Path(pod[-1]))
    for command in block:
        out = _bash(command.replace("<run-id>", run_id), work, env).stdout
        words = _program(command)
        if words[1] == "push":
            assert "demo_raw.fif" in out, out
        elif words[1] == "runs":
            assert run_id in out, out
        elif words[1] == "fetch":
            assert (work / f"PreExperiment_ICA_{run_id}" / "status.json").is_file(), out
