"""Sweeps: expansion and a real run of several sets (one failing); comparing them: tests/test_compare.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mne
import pandas as pd
import pytest
from click.testing import CliRunner

from labkit import IcaParams
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.results import provenance
from labkit.results.folder import RunFolder
from labkit.results.layout import ICA_FILE, METRICS_FILE
from labkit.results.reading import list_runs, load_run
from labkit.results.table import runs_table
from labkit.study.sweeps import expand, load_sets, plan, run_sweep


def test_expand_makes_every_combination():
    sets = expand(IcaParams(), method=["picard", "infomax"], random_state=range(3))
    assert len(sets) == 6 and len({p.digest for p in sets}) == 6
    assert [p.method for p in sets].count("picard") == 3


def test_load_sets_accepts_a_list_or_one_set():
    one = IcaParams(method="picard")
    assert load_sets(one.to_json()) == [one]
    assert load_sets(json.dumps([one.to_dict(), {"params": one.to_dict()}])) == [one, one]


def _tiny(base_dir, **kw) -> IcaParams:
    return IcaParams(base_dir=str(base_dir), raw_file_path=DEMO_FILENAME, n_components=5, crop_tmax=10.0, **kw)


@pytest.mark.slow
def test_sweep_cli_runs_sets_in_parallel_keeps_going_after_a_failure_and_resumes(demo_dir, tmp_path):
    base = _tiny(demo_dir)
    sets = [base.replace(method="picard"), base.replace(filter_fmax=200.0), base.replace(random_state=1)]
    f = tmp_path / "sweep.json"
    f.write_text(json.dumps([p.to_dict() for p in sets]))
    out = CliRunner().invoke(main, ["sweep", str(f), "--csv", str(tmp_path / "t.csv"), "--workers", "2"])
    assert out.exit_code == 4, out.output
    frame = runs_table(demo_dir)  # the impossible set is refused before any work: it leaves no folder
    assert sorted(frame["state"]) == ["succeeded", "succeeded"]
    assert (frame["eog_best_score"] > 0.5).all()
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == 3 and set(table["reason"]) == {"no result yet"}
    assert set(table.loc[table.state == "succeeded", "action"]) == {"ran"}
    assert table.loc[table.state == "failed", "error"].str.contains("filter_fmax").all()
    # resume: the two complete sets are reused, the refused one is tried again (and refused again)
    again = CliRunner().invoke(main, ["sweep", str(f), "--csv", str(tmp_path / "t2.csv")])
    table = pd.read_csv(tmp_path / "t2.csv").set_index("filter_fmax")
    assert list(table.sort_index()["action"])[:2] == ["reused", "reused"], again.output
    assert table.loc[200.0, "state"] == "failed" and table.loc[200.0, "action"] in ("ran", "run")
    assert len(runs_table(demo_dir)) == 2
    forced = CliRunner().invoke(main, ["sweep", str(f), "--force", "--workers", "2"])
    assert forced.exit_code == 4 and "--force: rerun" in forced.output
    frame = runs_table(demo_dir)
    assert len(frame) == 4
    sweeps = frame.groupby("sweep_id").size()  # each sweep records its id in its runs: the rerun is told apart
    assert sorted(sweeps) == [2, 2] and all(s.startswith("sweep-") for s in sweeps.index), sweeps


def _succeeded(params: IcaParams) -> RunFolder:
    """A complete result of ``params`` as a run leaves it (files, provenance), without fitting."""
    folder = RunFolder.create(params)
    provenance.record(folder, provenance.current(params))
    folder.start()
    (folder.path / METRICS_FILE).write_text(json.dumps({"n_iter": 7}))
    (folder.path / ICA_FILE).write_bytes(b"ica")
    folder.succeed()
    return folder


def test_a_resumed_sweep_reruns_a_cancelled_set_says_why_and_reuses_a_complete_one(demo_dir):
    done, cancelled = _tiny(demo_dir, method="picard"), _tiny(demo_dir, method="fastica")
    kept = _succeeded(done)
    before = {p.name: p.stat().st_mtime_ns for p in kept.path.iterdir()}
    stopped = RunFolder.create(cancelled)
    stopped.start()
    stopped.finish_cancelled("cancelled by you")
    reuse, rerun = plan([done, cancelled])
    assert (reuse.action, reuse.existing.run_id) == ("reuse", kept.run_id)
    assert rerun.action == "run" and rerun.reason == f"rerun: {stopped.run_id} was cancelled (cancelled by you)"
    assert {p.name: p.stat().st_mtime_ns for p in kept.path.iterdir()} == before  # a complete run is never touched
    assert load_run(kept.path).state == "succeeded" and load_run(stopped.path).state == "cancelled"


def test_a_run_whose_sweep_is_gone_is_finished_cancelled_and_rerun(demo_dir):
    params = _tiny(demo_dir)
    folder = RunFolder.create(params)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a sweep process that has exited: its pid names no live process
    folder.set_status("queued", runner_pid=gone.pid)
    assert load_run(folder.path).state == "queued"  # its owner (this process) lives: only the sweep is gone
    [decision] = plan([params])
    found = load_run(folder.path)
    assert found.path.name.endswith(".failed") and found.state == "cancelled"
    assert found.error == "interrupted: the sweep running it stopped (killed?)"
    assert decision.action == "run" and "was cancelled (interrupted: the sweep running it stopped" in decision.reason


def test_a_set_whose_folder_cannot_be_made_is_a_failed_row(tmp_path, demo_dir):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the base directory should be")
    frame = run_sweep([_tiny(blocked / "sub")], workers=1, progress=False)
    assert list(frame["state"]) == ["failed"] and frame["error"].iloc[0]
    assert frame["path"].iloc[0] is None


@pytest.mark.slow
def test_provenance_mismatch_reruns(demo_dir):
    params = _tiny(demo_dir)
    first = run_sweep([params], workers=1, progress=False)
    assert list(first["action"]) == ["ran"] and list(first["state"]) == ["succeeded"]
    [same] = plan([params])
    assert same.action == "reuse" and same.reason.startswith("complete result")
    # another MNE version recorded in the result: it is stale
    params_json = Path(first["path"].iloc[0]) / "params.json"
    doc = json.loads(params_json.read_text())
    doc["provenance"]["versions"]["mne"] = "0.1"
    params_json.write_text(json.dumps(doc))
    [upgraded] = plan([params])
    assert upgraded.action == "run" and "mne 0.1 -> " in upgraded.reason
    doc["provenance"]["versions"]["mne"] = json.loads(params_json.read_text())["provenance"]["versions"]["mne"]
    del doc["provenance"]
    params_json.write_text(json.dumps(doc))
    assert "no provenance recorded" in plan([params])[0].reason
    # the recording re-exported under the same name (content changed): run again
    second = run_sweep([params], workers=1, progress=False)
    assert list(second["action"]) == ["ran"]
    assert plan([params])[0].action == "reuse"
    raw = mne.io.read_raw_fif(params.raw_path(), preload=True, verbose="error")
    raw.apply_function(lambda x: x * 1.01)
    raw.save(params.raw_path(), overwrite=True, verbose="error")
    [changed] = plan([params])
    assert changed.action == "run" and "the recording's content changed" in changed.reason


@pytest.mark.slow
def test_resume_after_a_sigkilled_sweep_has_no_duplicated_and_no_lost_runs(demo_dir, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(f"""
base_dir: {demo_dir}
recordings: [{DEMO_FILENAME}]
params: {{n_components: 5, crop_tmax: 10}}
grid: {{method: [fastica, picard]}}
seeds: 4
""")
    cmd = [sys.executable, "-m", "labkit", "sweep", str(study), "--workers", "2"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    with (tmp_path / "first.out").open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while sum(r.state == "succeeded" for r in list_runs(demo_dir)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.out").read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = list_runs(demo_dir)
    assert 2 <= sum(r.state == "succeeded" for r in killed) < 8
    assert any(r.path.name.endswith(".partial") for r in killed)  # killed midway, runs were in flight
    deadline = time.monotonic() + 180  # the orphaned kernels notice their parent is gone and stop
    while any(r.state in ("queued", "running") for r in list_runs(demo_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    runs = list_runs(demo_dir)
    done = [r for r in runs if r.state == "succeeded"]
    assert len(done) == 8 and len({r.params.digest for r in done}) == 8  # no duplicates, no losses
    assert not any(r.path.name.endswith(".partial") for r in runs)  # the killed sweep's runs say so
    assert all("interrupted" in r.error for r in runs if r.state in ("failed", "cancelled"))
    reused = sum(r.state == "succeeded" for r in killed)
    assert sum("  reused  " in line for line in second.stdout.splitlines()) == reused  # the table's rows
    assert second.stdout.splitlines()[-1] == f"{8 - reused} ran, {reused} reused, 0 failed, 0 cancelled"


@pytest.mark.slow
def test_sweep_notebook_builds_runs_and_compares_a_tiny_study(demo_dir, tmp_path):
    import papermill

    out = tmp_path / "sweep-out.ipynb"
    papermill.execute_notebook(
        str(Path(__file__).resolve().parents[1] / "notebooks" / "sweep.ipynb"), str(out),
        parameters={"base_dir": str(demo_dir), "methods": ["fastica", "picard"], "seeds": 2, "n_components": 5,
                    "crop_tmax": 10.0, "workers": 2}, progress_bar=False, kernel_name="python3")
    runs = list_runs(demo_dir)
    assert len(runs) == 4 and all(r.state == "succeeded" for r in runs)
    text = out.read_text()
    assert "Groups by 'method'" in text and "image/png" in text  # the comparison in words, and its plot


@pytest.mark.slow
def test_form_runs_its_sweep_here_over_seeds_and_reuses_it_the_second_time(demo_dir):
    from labkit.widgets import IcaForm

    form = IcaForm(base_dir=demo_dir)
    form.browser.choose(DEMO_FILENAME)
    for name, value in {"method": "fastica", "n_components": 5, "crop_tmax": 10.0}.items():
        form.controls[name].value = value
    assert form.sweep_run_button.disabled  # nothing in the sweep yet
    form.sweep_button.click()
    form.sweep_seeds.value = 2
    form.run_sweep_here().join(timeout=240)
    assert sorted(form.sweep_table["random_state"]) == [0, 1] and set(form.sweep_table["state"]) == {"succeeded"}
    assert form.sweep_progress.value == 2 and "2 succeeded (0 reused)" in form.sweep_message.value
    form.run_sweep_here().join(timeout=240)
    assert "(2 reused)" in form.sweep_message.value and len(list_runs(demo_dir)) == 2


def test_a_sets_or_study_files_relative_base_dir_is_its_own_folders_and_a_missing_one_is_the_default(
        tmp_path, monkeypatch):
    from labkit.study.sweeps import Study

    (tmp_path / "project" / "data").mkdir(parents=True)
    monkeypatch.setenv("BASE_DIR", str(tmp_path / "elsewhere"))
    folder = tmp_path / "project"
    listed = json.dumps([{"base_dir": "data", "raw_file_path": "a.fif"}, {"params": {"base_dir": "data"}},
                         {"raw_file_path": "b.fif"}, {"base_dir": str(tmp_path), "raw_file_path": "c.fif"}])
    sets = load_sets(listed, folder=folder)
    assert [p.base_dir for p in sets] == [str(folder / "data"), str(folder / "data"), str(tmp_path / "elsewhere"),
                                          str(tmp_path)]
    study = {"base_dir": "data", "recordings": ["a.fif"], "params": {"n_components": 5}}
    assert Study.from_dict(study, folder=folder).base.base_dir == str(folder / "data")
    assert Study.from_dict({**study, "base_dir": None}, folder=folder).base.base_dir == str(tmp_path / "elsewhere")
    assert Study.from_dict(study, str(tmp_path), folder=folder).base.base_dir == str(tmp_path)  # --base-dir wins
