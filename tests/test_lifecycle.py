"""The result folder's lifecycle without running ICA: run-id claims, retries, atomic writes,
damaged files, owner liveness (pid and heartbeat) and a full disk (a real tmpfs)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cluster_fixtures import emulator  # noqa: F401 (fixture)

from labkit import IcaParams
from labkit.cli.main import main
from labkit.errors import RunFailed
from labkit.results.components import read_components_tsv, write_components_tsv
from labkit.results.folder import RunFolder, RunIdTaken
from labkit.results.layout import (
    _UMASK,
    COMPONENTS_TSV,
    FAILED,
    FOLDER_PREFIX,
    ICA_FILE,
    LOG_FILE,
    METRICS_FILE,
    PARAMS_FILE,
    PARTIAL,
    RESERVE_FILE,
    RUNNER_BEAT_FILE,
    STATUS_FILE,
    write_json,
)
from labkit.results.reading import list_runs, load_run
from labkit.runners.cluster.jobs import ClusterJobs
from labkit.runners.cluster.settings import ClusterSettings


def params_in(base: Path, **kw) -> IcaParams:
    return IcaParams(base_dir=str(base), raw_file_path="rec_raw.fif", n_components=5, **kw)


def complete(folder: RunFolder) -> None:
    """What a finished run leaves (the files ``succeed`` insists on), then its completion."""
    folder.start()
    (folder.path / METRICS_FILE).write_text(json.dumps({"n_iter": 7}))
    (folder.path / ICA_FILE).write_bytes(b"ica")
    (folder.path / "topomaps.png").write_bytes(b"first run's figure")
    folder.succeed()


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.iterdir())}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- a run id names one run ever ---------------------------------------------------------------
@pytest.mark.parametrize("first_outcome", ["partial", "failed", "complete", "deleted"])
def test_a_given_run_id_is_refused_once_taken(tmp_path, first_outcome):
    folder = RunFolder.create(params_in(tmp_path), "exp-1")
    if first_outcome == "failed":
        folder.fail("boom")
    elif first_outcome in ("complete", "deleted"):
        complete(folder)
    before = snapshot(folder.path)
    if first_outcome == "deleted":  # the claim outlives the folder: the id is never reused
        shutil.rmtree(folder.path)
    with pytest.raises(RunIdTaken, match="Run id 'exp-1' is already taken"):
        RunFolder.create(params_in(tmp_path, method="picard"), "exp-1")
    if first_outcome != "deleted":
        assert snapshot(folder.path) == before, "the first run's folder is untouched"
    assert len(list(tmp_path.glob(FOLDER_PREFIX + "*"))) == (0 if first_outcome == "deleted" else 1)


def _create_at_once(base: str, run_id: str | None, barrier, out) -> None:
    barrier.wait()
    try:
        out.put(RunFolder.create(params_in(Path(base)), run_id).run_id)
    except RunIdTaken as err:
        out.put(f"refused: {err}")


def _race(base: Path, run_id: str | None, n: int = 8) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_create_at_once, args=(str(base), run_id, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [out.get(timeout=300) for _ in procs]  # only bounds a hang: 8 spawned interpreters on a busy 2-core box
    for p in procs:
        p.join(10)
    return got


def test_processes_claiming_one_id_at_the_same_instant_get_one_folder(tmp_path):
    got = _race(tmp_path, "same-id")
    assert got.count("same-id") == 1, got
    assert all(g.startswith("refused: Run id 'same-id' is already taken") for g in got if g != "same-id")
    (only,) = tmp_path.glob(FOLDER_PREFIX + "*")
    found = load_run(only)  # its creator has exited since: no one will ever run it
    assert found.state == "failed" and "before its kernel took the run over" in found.error


def test_generated_ids_never_collide_even_in_the_same_millisecond(tmp_path):
    got = _race(tmp_path, None)
    assert len(set(got)) == len(got) and not any(g.startswith("refused") for g in got)
    assert len(list(tmp_path.glob(FOLDER_PREFIX + "*"))) == len(got)


@pytest.mark.parametrize("run_id", ["a.partial", "x.failed", "../x", ".hidden", "a/b", "x" * 300])
def test_run_ids_that_could_alias_another_folder_are_refused(tmp_path, run_id):
    with pytest.raises(Exception, match="run id|run_id"):
        RunFolder.create(params_in(tmp_path), run_id)
    assert not list(tmp_path.rglob(FOLDER_PREFIX + "*")) and not (tmp_path.parent / "x").exists()


def test_dotted_run_ids_keep_their_name(tmp_path):
    folder = RunFolder.create(params_in(tmp_path), "v1.2-run")
    complete(folder)
    (found,) = list_runs(tmp_path)
    assert found.run_id == "v1.2-run" and found.state == "succeeded"


# -- a retried pod (same LABKIT_RUN_ID) ----------------------------------------------------------
def test_a_retry_restarts_its_own_dead_partial_folder_without_stale_files(tmp_path):
    params = params_in(tmp_path)
    first = RunFolder.create(params, "job-1")
    first.set_status("running", pid=dead_pid(), step="plot")
    (first.path / "topomaps.png").write_bytes(b"stale")
    (first.path / METRICS_FILE).write_text("{}")
    retry = RunFolder.create(params, "job-1", resume=True)
    assert retry.path == first.path and retry.status["state"] == "queued" and retry.status["attempt"] == 2
    assert sorted(p.name for p in retry.path.iterdir()) == [".reserve", PARAMS_FILE, LOG_FILE,
                                                          STATUS_FILE]
    with pytest.raises(RunIdTaken, match="still queued"):  # the retry itself now owns it (this process lives)
        RunFolder.create(params, "job-1", resume=True)


def test_a_retry_restarts_a_failed_folder_under_the_partial_name(tmp_path):
    params = params_in(tmp_path)
    first = RunFolder.create(params, "job-2")
    first.fail("the kernel died")
    retry = RunFolder.create(params, "job-2", resume=True)
    assert retry.path.name.endswith(PARTIAL) and not first.path.name.endswith(FAILED)
    assert "RETRY: attempt 2" in (retry.path / LOG_FILE).read_text()
    assert "FAILED: the kernel died" in (retry.path / LOG_FILE).read_text(), "the last attempt's log stays"


def test_a_retry_never_touches_a_complete_result(tmp_path):
    params = params_in(tmp_path)
    first = RunFolder.create(params, "job-3")
    complete(first)
    before = snapshot(first.path)
    again = RunFolder.create(params, "job-3", resume=True)
    assert again.complete and again.path == first.path
    with pytest.raises(RunIdTaken, match="another parameter set"):
        RunFolder.create(params_in(tmp_path, filter_fmax=200.0), "job-3", resume=True)
    assert snapshot(first.path) == before
    assert load_run(first.path).state == "succeeded"


def test_a_retry_while_the_first_attempt_lives_is_refused(tmp_path):
    params = params_in(tmp_path)
    first = RunFolder.create(params, "job-4")
    first.start()  # this (living) process works on it
    try:
        with pytest.raises(RunIdTaken, match="still running"):
            RunFolder.create(params, "job-4", resume=True)
    finally:
        first.stop_heartbeat()


def test_a_retry_takes_over_from_its_earlier_pod_on_another_node(tmp_path):
    """The Job controller replaces a pod only once it ended, so a fresh heartbeat from another host
    (the dead pod's last) does not block the retry."""
    params = params_in(tmp_path)
    first = RunFolder.create(params, "job-5")
    status = {**first.status, "state": "running", "host": "labkit-anna-1a2b-x7k", "pid": 7, "step": "fit"}
    write_json(first.path / STATUS_FILE, status)
    assert load_run(first.path).state == "running"
    retry = RunFolder.create(params, "job-5", resume=True)
    assert retry.status["attempt"] == 2 and retry.status["pid"] == os.getpid()


# -- atomic writes, damaged files -------------------------------------------------------------
DAMAGE = {"empty": b"", "truncated": b'{"state": "succ', "a list": b"[1, 2]", "binary": b"\xff\xfe\x00garbage"}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", [STATUS_FILE, METRICS_FILE, PARAMS_FILE])
def test_a_damaged_file_reads_as_a_damaged_run_everywhere(tmp_path, name, damage):
    good = RunFolder.create(params_in(tmp_path, method="picard"), "good")
    complete(good)
    bad = RunFolder.create(params_in(tmp_path), "bad")
    complete(bad)
    (bad.path / name).write_bytes(DAMAGE[damage])
    found = load_run(bad.path)
    assert found.state == "damaged" and name in found.error
    assert [r.state for r in list_runs(tmp_path)] == ["damaged", "succeeded"]
    listing = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path)])
    assert listing.exit_code == 0 and "Traceback" not in listing.output, listing.output
    assert "damaged" in listing.output and name in listing.output


def test_status_is_replaced_atomically_and_keeps_the_files_mode(tmp_path):
    folder = RunFolder.create(params_in(tmp_path), "atomic")
    for i in range(50):
        folder.set_status("running", step=f"s{i}")
    assert folder.status["step"] == "s49"
    assert not list(folder.path.glob("*.tmp")) and not list(folder.path.glob(".*.tmp"))
    assert (folder.path / STATUS_FILE).stat().st_mode & 0o777 == 0o666 & ~_UMASK


# -- owner liveness: pid on this host, heartbeat anywhere -------------------------------------------
def ago(seconds: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_a_queued_run_whose_process_died_reads_failed(tmp_path):
    folder = RunFolder.create(params_in(tmp_path), "q")
    assert load_run(folder.path).state == "queued"  # its owner (this process) lives
    folder.set_status("queued", pid=dead_pid())
    found = load_run(folder.path)
    assert found.state == "failed" and "before its kernel took the run over" in found.error


def test_a_run_that_finished_and_exited_just_after_its_status_was_read_is_not_called_dead(tmp_path):
    """A reader that read 'running' a moment before the owner recorded success, renamed the folder and exited
    must not judge it dead by its pid: it reads as still running, and the next read as succeeded."""
    folder = RunFolder.create(params_in(tmp_path), "ends")
    pid = dead_pid()
    folder.set_status("running", step="report", pid=pid)
    stale = load_run(folder.path)  # read while it ran; its owner then finishes and exits
    for name in (METRICS_FILE, ICA_FILE):
        (folder.path / name).write_text("{}")
    folder.succeed()
    assert stale.state == "running" and stale.error is None
    assert load_run(folder.path).state == "succeeded"
    dead = RunFolder.create(params_in(tmp_path), "dies")
    dead.set_status("running", step="report", pid=pid)
    assert load_run(dead.path).state == "failed"  # nothing moved on: its owner is dead


def test_a_run_on_another_host_reads_failed_once_its_heartbeat_is_stale(tmp_path):
    folder = RunFolder.create(params_in(tmp_path), "pod")
    status = {**folder.status, "state": "running", "step": "fit", "host": "labkit-anna-1a2b-x7k", "pid": 7}
    write_json(folder.path / STATUS_FILE, {**status, "heartbeat": ago(5)})
    assert load_run(folder.path).state == "running"  # a pod on another node, reporting
    write_json(folder.path / STATUS_FILE, {**status, "heartbeat": ago(600)})
    found = load_run(folder.path)
    assert found.state == "failed" and "stopped reporting at" in found.error and "pod died" in found.error


def test_a_pod_whose_kernel_starts_slowly_reads_alive_by_its_runners_heartbeat(tmp_path, monkeypatch):
    """Before the kernel takes the run over only the runner lives; its own heartbeat file says so."""
    monkeypatch.setenv("LABKIT_HEARTBEAT_S", "0.1")
    folder = RunFolder.create(params_in(tmp_path), "slow-kernel")
    status = {**folder.status, "host": "labkit-anna-1a2b-x7k", "pid": 7, "heartbeat": ago(600)}
    write_json(folder.path / STATUS_FILE, status)  # queued on a pod, 10 minutes ago
    assert load_run(folder.path).state == "failed"
    with folder.runner_heartbeat():
        beat = folder.path / RUNNER_BEAT_FILE
        deadline = time.monotonic() + 5
        while not beat.exists():
            assert time.monotonic() < deadline, "no runner heartbeat within 5 s"
            time.sleep(0.02)
        assert load_run(folder.path).state == "queued"
        beat.write_text('{"heartbeat": "not a ti')  # a cut file reads as no beat, never a crash
        assert load_run(folder.path).state in ("queued", "failed")
    assert not beat.exists()
    assert load_run(folder.path).state == "failed"


def test_the_heartbeat_is_refreshed_while_the_run_works(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HEARTBEAT_S", "0.1")
    folder = RunFolder.create(params_in(tmp_path), "beats")
    folder.start()
    first = folder.status["heartbeat"]
    deadline = time.monotonic() + 5
    while folder.status["heartbeat"] == first:
        assert time.monotonic() < deadline, "no heartbeat within 5 s"
        time.sleep(0.05)
    assert folder.status["state"] == "running" and folder.status["heartbeat_s"] == 0.1
    folder.fail("stop")
    stopped = folder.status["heartbeat"]
    time.sleep(1.2)
    assert folder.status["heartbeat"] == stopped and folder.status["state"] == "failed"


# -- a full disk (a real tmpfs) ---------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, mounted for the test (needs root; skipped, saying why, where mounting is impossible)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def no_leftovers(path: Path) -> None:
    assert not [p for p in path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert not [p.name for p in path.rglob("*") if p.is_file() and p.stat().st_size == 0]


def test_a_full_disk_still_records_the_failure_and_loses_nothing(small_disk):
    folder = RunFolder.create(params_in(small_disk), "full")
    folder.start()
    folder.stop_heartbeat()
    (folder.path / LOG_FILE).write_text("load: done\n")
    params_before = (folder.path / PARAMS_FILE).read_bytes()
    fill(small_disk)
    with pytest.raises(OSError):
        write_json(folder.path / METRICS_FILE, {"big": "x" * 100_000})
    folder.fail("OSError: No space left on device")  # the reserve makes room for the reason
    found = load_run(folder.path)
    assert found.state == "failed" and "No space left on device" in found.error
    assert (found.path / PARAMS_FILE).read_bytes() == params_before and "load: done" in found.log
    no_leftovers(found.path)


def test_components_tsv_cut_by_a_full_disk_keeps_the_marks_it_had(small_disk):
    """A half-written components.tsv would read back as "nothing is bad": the old file stays whole instead."""
    tsv = small_disk / COMPONENTS_TSV
    write_components_tsv(tsv, 5, {1: "EOG suspect", 3: "marked bad by hand"})
    fill(small_disk)
    many = {"labels": [{"component": i, "label": "eye blink", "probability": 0.5} for i in range(20_000)]}
    with pytest.raises(OSError):
        write_components_tsv(tsv, 20_000, {0: "x" * 100}, labels=many)
    assert read_components_tsv(tsv) == [1, 3]
    no_leftovers(small_disk)


def test_a_failure_that_cannot_be_recorded_still_names_the_folder_failed(small_disk):
    folder = RunFolder.create(params_in(small_disk), "fuller")
    folder.start()
    folder.stop_heartbeat()
    (folder.path / RESERVE_FILE).unlink()  # someone else took the reserve's room too
    fill(small_disk)
    with pytest.raises(RunFailed, match="its status could not be written"):
        folder.fail("OSError: No space left on device")
    found = load_run(folder.path)
    assert found.path.name.endswith(FAILED)
    assert found.state == "failed" and "could not record why" in found.error
    no_leftovers(found.path)
    listing = CliRunner().invoke(main, ["runs", "--base-dir", str(small_disk)])
    assert listing.exit_code == 0 and "could not record why" in listing.output


def test_a_folder_that_cannot_be_made_is_a_clear_error(small_disk):
    fill(small_disk)
    with pytest.raises(Exception, match="Cannot create the result folder for run nospace .*No space left"):
        RunFolder.create(params_in(small_disk), "nospace")


def test_the_clusters_already_ran_lookup_skips_a_damaged_result(tmp_path, emulator):  # noqa: F811
    """`labkit submit` looks for a finished result of the same set first: a truncated metrics.json
    there is no result to reuse, and no crash."""
    params = params_in(tmp_path)
    folder = RunFolder.create(params, "earlier")
    complete(folder)
    settings = ClusterSettings.from_dict({"namespace": "labkit-test", "image": "ghcr.io/labkit/labkit:0.1.0",
                                          "storage": {"nfs_server": "nfs.lab.example", "local_base_dir": str(tmp_path)}})
    jobs = ClusterJobs(settings, "anna", emulator.api_client())
    assert jobs.completed(params).path == folder.path
    (folder.path / METRICS_FILE).write_text('{"n_iter": 3, "fit_ti')
    assert jobs.completed(params) is None


def test_a_partial_folder_without_any_status_reads_failed(tmp_path):
    """What a run killed while its folder was made used to leave (an older labkit, or a hand-made folder)."""
    (tmp_path / f"{FOLDER_PREFIX}bare{PARTIAL}").mkdir()
    (found,) = list_runs(tmp_path)
    assert found.state == "failed" and "never written" in found.error
    folder = RunFolder.create(params_in(tmp_path), "made")
    assert sorted(p.name for p in folder.path.iterdir()) == [".reserve", PARAMS_FILE, STATUS_FILE]
    assert not list(tmp_path.glob(".*creating*")), "the hidden folder it was made in is renamed, not left"


# -- cancelled: its own state, finished as a failure is ------------------------------------------------------------
def test_a_cancelled_run_reads_cancelled_with_its_reason_everywhere(tmp_path):
    from labkit.results.table import runs_table

    folder = RunFolder.create(params_in(tmp_path))
    folder.start()
    folder.step("fit")
    folder.finish_cancelled("cancelled by you (the Job was deleted)", kind="user")
    assert folder.path.name.endswith(FAILED) and not folder.complete  # never mistaken for a result
    found = load_run(folder.path)
    assert (found.state, found.error, found.outcome) == ("cancelled", "cancelled by you (the Job was deleted)",
                                                         "cancelled")
    assert found.status["error"]["kind"] == "user" and found.status["step"] == "fit" and found.status["finished"]
    assert [(r.run_id, r.state) for r in list_runs(tmp_path)] == [(folder.run_id, "cancelled")]
    frame = runs_table(tmp_path)
    assert (frame.loc[folder.run_id, "state"], frame.loc[folder.run_id, "error"]) == (
        "cancelled", "cancelled by you (the Job was deleted)")
    assert "CANCELLED: cancelled by you" in found.log
    assert not (folder.path / RESERVE_FILE).exists()
    before = snapshot(folder.path)
    folder.fail("a later failure must not rewrite a finished run")  # finished once: stays as it is
    folder.finish_cancelled("nor a second cancel")
    assert snapshot(folder.path) == before and load_run(folder.path).state == "cancelled"


def test_cancelling_a_complete_run_never_touches_it(tmp_path):
    folder = RunFolder.create(params_in(tmp_path))
    complete(folder)
    before = snapshot(folder.path)
    folder.finish_cancelled("too late: it is done")
    assert folder.complete and snapshot(folder.path) == before
    assert load_run(folder.path).state == "succeeded"


def test_a_cancel_recorded_but_not_renamed_still_reads_cancelled(tmp_path):
    """Killed between writing the status and the rename: the status decides, the folder is finished on next look."""
    folder = RunFolder.create(params_in(tmp_path))
    folder.set_status("cancelled", error={"reason": "interrupted"})
    assert folder.path.name.endswith(PARTIAL)
    found = load_run(folder.path)
    assert (found.state, found.error) == ("cancelled", "interrupted")


def test_a_failure_marked_cancelled_by_an_older_labkit_reads_cancelled(tmp_path):
    folder = RunFolder.create(params_in(tmp_path))
    folder.fail("interrupted", kind="cancelled")  # what labkit wrote before the cancelled state existed
    found = load_run(folder.path)
    assert (found.state, found.error) == ("cancelled", "interrupted")
    other = RunFolder.create(params_in(tmp_path, method="picard"))
    other.fail("notebook cell 3 raised ValueError: boom", kind="notebook")
    assert load_run(other.path).state == "failed"


def test_only_the_states_of_the_vocabulary_are_written_or_believed(tmp_path):
    from labkit.errors import ParameterError
    from labkit.results.states import STATES, display_state

    assert STATES == ("queued", "running", "succeeded", "failed", "cancelled")
    folder = RunFolder.create(params_in(tmp_path))
    with pytest.raises(ParameterError, match=r"'state'.*'finished'.*'queued', 'running', 'succeeded', 'failed', "
                                             r"'cancelled'"):
        folder.set_status("finished")
    write_json(folder.path / STATUS_FILE, {**folder.status, "state": "aborted"})  # written by hand, or by a bug
    found = load_run(folder.path)
    assert found.state == "damaged" and "'aborted'" in found.error and "cancelled" in found.error
    assert display_state("succeeded", ["a warning"]) == "succeeded with warnings"
    assert display_state("cancelled", ["a warning"]) == "cancelled"


def test_a_retried_pod_restarts_its_cancelled_run(tmp_path):
    """A cancelled folder is finished as a failed one is: the same run id's retry restarts it, never a complete one."""
    first = RunFolder.create(params_in(tmp_path), "job-7")
    first.finish_cancelled("the node was drained")
    retry = RunFolder.create(params_in(tmp_path), "job-7", resume=True)
    assert retry.path.name.endswith(PARTIAL) and retry.status["attempt"] == 2
    assert "the last attempt: cancelled, the node was drained" in (retry.path / LOG_FILE).read_text()
