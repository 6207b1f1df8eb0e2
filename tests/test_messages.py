"""Messages a newcomer can act on: what went wrong, where labkit looked, what to do, and the exit code.

Each test runs the face a researcher uses (``labkit`` through click, ``papermill`` as a program) and
asserts the words and the exit code, not only that something failed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from labkit.cli.cluster import cluster_configured
from labkit.cli.locallog import local_run_ids
from labkit.cli.main import main
from labkit.errors import ExitCode
from labkit.results.layout import FOLDER_PREFIX

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
#: what tells labkit there is a cluster or a hub to ask
CLUSTER_VARIABLES = ("LABKIT_CLUSTER_CONFIG", "LABKIT_HUB_SERVICE_URL", "JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN",
                     "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "JUPYTERHUB_USER", "LABKIT_USER", "USER")


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shell with no cluster settings, no hub, no kubeconfig and no user name: a newcomer's laptop."""
    for name in [*CLUSTER_VARIABLES, *(k for k in os.environ if k.startswith("LABKIT_CLUSTER_"))]:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _runs(base: Path, *names: str) -> None:
    for name in names:
        (base / (FOLDER_PREFIX + name)).mkdir(parents=True)


# -- labkit logs <typo> --------------------------------------------------------

def test_local_run_ids_are_every_run_folder_whatever_its_state(tmp_path: Path) -> None:
    _runs(tmp_path, "a-1", "b-2.partial", "c-3.failed")
    (tmp_path / (FOLDER_PREFIX + "not-a-folder")).write_text("")
    (tmp_path / "other").mkdir()
    assert local_run_ids(tmp_path) == ["a-1", "b-2", "c-3"]
    assert local_run_ids(tmp_path / "missing") == []


def test_logs_of_a_typo_names_the_folder_and_the_nearest_runs_without_asking_a_cluster(tmp_path: Path,
                                                                                       no_cluster: Path) -> None:
    base = tmp_path / "data"
    _runs(base, "20261203-113416-489-575e8e", "20261203-120000-001-aaaaaa.failed", "zz-other")
    out = CliRunner().invoke(main, ["logs", "20261203-113416-489-575e8f", "--base-dir", str(base)])
    assert out.exit_code == ExitCode.NOT_FOUND, out.output
    assert "Cannot tell who you are" not in out.output and "Traceback" not in out.output
    message = out.output.strip()
    assert message.count("\n") == 0, "one line"
    assert f"No run '20261203-113416-489-575e8f' in {base.resolve()}" in message
    assert "nearest run ids there: 20261203-113416-489-575e8e" in message
    assert "zz-other" not in message
    assert "LABKIT_CLUSTER_CONFIG" in message, "says how to make labkit look on a cluster"


def test_logs_in_a_folder_without_runs_says_so_and_how_to_point_elsewhere(tmp_path: Path, no_cluster: Path) -> None:
    out = CliRunner().invoke(main, ["logs", "typo", "--base-dir", str(tmp_path)])
    assert out.exit_code == ExitCode.NOT_FOUND
    assert f"No run 'typo' in {tmp_path.resolve()}" in out.output and "holds no run folders" in out.output
    assert "--base-dir" in out.output


def test_a_far_typo_offers_the_newest_runs(tmp_path: Path, no_cluster: Path) -> None:
    _runs(tmp_path, *(f"2026120{i}-000000-000-aaaaaa" for i in range(1, 6)))
    out = CliRunner().invoke(main, ["logs", "q", "--base-dir", str(tmp_path)])
    assert out.exit_code == ExitCode.NOT_FOUND
    assert "newest run ids there: 20261203-000000-000-aaaaaa, 20261204-000000-000-aaaaaa, " \
           "20261205-000000-000-aaaaaa" in out.output


def test_what_counts_as_a_cluster_to_ask(tmp_path: Path) -> None:
    assert not cluster_configured(environ={"HOME": str(tmp_path)})
    assert cluster_configured("settings.yaml", environ={})
    assert cluster_configured(None, ("namespace=x",), environ={})
    for variable in ("LABKIT_CLUSTER_CONFIG", "LABKIT_CLUSTER_NAMESPACE", "LABKIT_HUB_SERVICE_URL",
                     "JUPYTERHUB_API_URL", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        assert cluster_configured(environ={variable: "x"}), variable
    assert not cluster_configured(environ={"LABKIT_CLUSTER_CONFIG": ""}), "empty means unset"
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert cluster_configured(environ={"HOME": str(tmp_path)}), "the user's own kubeconfig"


# -- a file MNE cannot read -----------------------------------------------------

@pytest.mark.parametrize("name", ["notes.txt", "notes.mat", "notes.dat", "notes.bin"])
def test_a_text_file_is_not_a_recording_and_no_format_is_guessed(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("meeting notes: bring the EEG caps\n" * 20)
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--raw-file-path", name])
    assert out.exit_code == ExitCode.BAD_RECORDING, out.output
    message = out.output.strip().splitlines()[-1]
    assert message.startswith(f"labkit: {name!r} is not a recording MNE reads: MNE opens {Path(name).suffix} files only as ")
    assert "and this file is not one" in message
    assert not re.search(r"Cannot read recording .* as ", message), "no format is claimed for the file"
    assert ".fif" in message and ".edf" in message and ".vhdr" in message, "the extensions MNE reads"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "nothing written"


def test_a_damaged_file_of_a_specific_format_still_names_that_format(tmp_path: Path) -> None:
    (tmp_path / "junk_raw.fif").write_bytes(b"\x00not a fif file\x00" * 100)
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--raw-file-path", "junk_raw.fif"])
    assert out.exit_code == ExitCode.BAD_RECORDING
    assert "Cannot read recording 'junk_raw.fif' as FIF: " in out.output


# -- a truncated recording --------------------------------------------------------

def _cut(source: Path, target: Path, fraction: float = 0.5) -> int:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target.stat().st_size


@pytest.mark.parametrize("fraction", [0.5, 0.77])
def test_a_truncated_fif_is_refused_before_any_work_with_the_sizes(tmp_path: Path, fraction: float) -> None:
    size = _cut(REAL / "neuromag_mag_grad_raw.fif", tmp_path / "cut_raw.fif", fraction)
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--raw-file-path", "cut_raw.fif",
                                    "--channel-type", "mag", "--n-components", "5"])
    assert out.exit_code == ExitCode.BAD_RECORDING, out.output
    found = re.search(r"labkit: Cannot read recording 'cut_raw.fif': the file is truncated: "
                      r"the header expects (\d+) bytes, the file has (\d+)", out.output)
    assert found, out.output
    expected, actual = int(found[1]), int(found[2])
    assert actual == size and size < expected <= (REAL / "neuromag_mag_grad_raw.fif").stat().st_size
    assert "reshape" not in out.output and "buffer size" not in out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut_raw.fif"], "refused before any folder"


def test_a_truncated_eeglab_data_file_is_named(tmp_path: Path) -> None:
    shutil.copy(REAL / "test_raw.set", tmp_path / "test_raw.set")
    size = _cut(REAL / "test_raw.fdt", tmp_path / "test_raw.fdt")
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--raw-file-path", "test_raw.set"])
    assert out.exit_code == ExitCode.BAD_RECORDING, out.output
    assert (f"the file 'test_raw.fdt' is truncated: the header expects {(REAL / 'test_raw.fdt').stat().st_size} "
            f"bytes, the file has {size}") in out.output


def test_whole_recordings_are_not_taken_for_truncated(tmp_path: Path) -> None:
    from labkit.analysis.recording import find_recordings, read_raw, truncation

    shutil.copy(REAL / "neuromag_mag_grad_raw.fif", tmp_path / "whole_raw.fif")
    with open(tmp_path / "whole_raw.fif", "ab") as fh:
        fh.write(b"\x00" * 10)  # trailing bytes past the last tag are not a cut
    recordings = [*find_recordings(REAL), tmp_path / "whole_raw.fif"]
    assert len(recordings) >= 5
    for path in recordings:
        assert truncation(read_raw(path, verbose="error"), path) is None, path


# -- papermill -----------------------------------------------------------------

def _papermill(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASE_DIR", "LABKIT_"))}
    env.update(HOME=str(home), MPLBACKEND="Agg")
    return subprocess.run(["papermill", str(ROOT / "notebooks" / "ica_run.ipynb"), "out.ipynb", "--no-progress-bar",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _error_outputs(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells for o in c.get("outputs", ()) if o.get("output_type") == "error"]


METHOD_MESSAGE = "Invalid value for the 'method' parameter: got 'pca'; allowed: one of 'fastica', 'picard', 'infomax'."


@pytest.mark.slow
def test_papermill_with_labkits_engine_prints_the_message_and_exits_2_after_saving(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = _papermill(tmp_path, home, "-p", "method", "pca", "--engine", "labkit")
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"labkit: {METHOD_MESSAGE} (the executed notebook: out.ipynb)"
    errors = _error_outputs(tmp_path / "out.ipynb")
    assert [(e["ename"], e["evalue"], e["traceback"]) for e in errors] == \
        [("ParameterError", METHOD_MESSAGE, [f"ParameterError: {METHOD_MESSAGE}"])], "the cell shows one line"
    assert "papermill-error-cell" in (tmp_path / "out.ipynb").read_text(), "papermill's banner, as without labkit"
    assert not (home / "labkit").exists(), "a refused set writes nothing, not even ~/labkit"


@pytest.mark.slow
def test_papermill_with_labkits_engine_exits_3_for_a_file_that_is_no_recording(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("not a recording\n")
    proc = _papermill(tmp_path, tmp_path, "-p", "base_dir", str(data), "-p", "raw_file_path", "notes.txt",
                      "--engine", "labkit")
    assert proc.returncode == ExitCode.BAD_RECORDING, proc.stderr
    assert "labkit: 'notes.txt' is not a recording MNE reads" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_plain_papermill_shows_the_one_line_in_its_report_but_exits_1(tmp_path: Path) -> None:
    """What the default engine does: papermill's own exit code; the README therefore shows --engine labkit."""
    proc = _papermill(tmp_path, tmp_path, "-p", "method", "pca")
    assert proc.returncode == 1
    assert f"ParameterError: {METHOD_MESSAGE}" in proc.stderr
    assert "template.py" not in proc.stderr, "no frames from inside labkit"
    assert (tmp_path / "out.ipynb").is_file()


def test_only_labkits_own_errors_are_taken_for_them() -> None:
    from labkit.runners.engine import labkit_error_in

    def nb(ename: str, trace: list[str]) -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = [nbformat.v4.new_output("error", ename=ename, evalue="bad", traceback=trace)]
        return nbformat.v4.new_notebook(cells=[cell])

    assert labkit_error_in(nb("ParameterError", ["ParameterError: bad"])) == ("ParameterError", "bad", 2)
    assert labkit_error_in(nb("RecordingError", ["File /x/labkit/analysis/recording.py", "RecordingError: bad"])) \
        == ("RecordingError", "bad", 3)
    assert labkit_error_in(nb("ParameterError", ["File /x/otherlib/core.py", "ParameterError: bad"])) is None
    assert labkit_error_in(nb("ValueError", ["File /x/labkit/params.py", "ValueError: bad"])) is None
