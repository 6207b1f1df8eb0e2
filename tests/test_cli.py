"""The shell face: messages and exit codes a shell user can act on."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from labkit.cli import main


def test_bad_flag_value_exits_2_naming_the_field(tmp_path):
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--method", "pca"])
    assert out.exit_code == 2
    assert "Invalid value for the 'method' parameter: got 'pca'; allowed: one of 'fastica'" in out.output


def test_entrypoint_with_bad_env_exits_2(tmp_path):
    out = CliRunner().invoke(main, ["entrypoint"], env={"BASE_DIR": str(tmp_path), "ICA_COMPONENTS_COUNT": "many"})
    assert out.exit_code == 2 and "'n_components' parameter: got 'many'" in out.output


def test_missing_recording_or_base_dir_exits_2_and_writes_nothing(tmp_path):
    proc = subprocess.run(["labkit", "run", "--base-dir", str(tmp_path), "--raw-file-path", "nope_raw.fif"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "'raw_file_path' parameter: got 'nope_raw.fif'; allowed: an existing file" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    missing = tmp_path / "userdata"
    out = CliRunner().invoke(main, ["run", "--base-dir", str(missing), "--raw-file-path", "x_raw.fif"])
    assert out.exit_code == 2 and "'base_dir' parameter" in out.output and "an existing directory" in out.output
    assert not missing.exists()


def test_demo_data_prints_the_relative_path(tmp_path):
    out = CliRunner().invoke(main, ["demo-data", "--base-dir", str(tmp_path)])
    assert out.exit_code == 0 and out.output.strip() == "labkit-demo/demo_raw.fif"
    assert (tmp_path / "labkit-demo" / "demo_raw.fif").is_file()


def test_runs_lists_runs_with_state(tmp_path):
    from labkit import IcaParams
    from labkit.results import RunFolder

    folder = RunFolder.create(IcaParams(base_dir=str(tmp_path)), run_id="r1")
    folder.fail("boom")
    out = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path)])
    assert out.exit_code == 0 and "r1" in out.output and "failed" in out.output and "boom" in out.output


def test_cluster_commands_are_offered_but_imported_only_when_used():
    from labkit.cli import _Commands
    from labkit.cluster.cli import COMMANDS

    assert set(_Commands.cluster) == {c.name for c in COMMANDS}
    listed = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in listed for name in _Commands.cluster)
    assert CliRunner().invoke(main, ["render", "--help"]).exit_code == 0
    code = "import sys, labkit.cli; print(sorted(m for m in sys.modules if m.startswith('labkit.cluster')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", "labkit run must not pay for importing the cluster commands"


def test_bad_run_id_exits_2_before_any_folder(tmp_path):
    for run_id in ("../x", "x" * 300):
        out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--run-id", run_id])
        assert out.exit_code == 2, out.output
        assert "Invalid value for the 'run_id' parameter" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(main, ["entrypoint"], env={"BASE_DIR": str(tmp_path), "LABKIT_RUN_ID": "../x"})
    assert out.exit_code == 2 and "'LABKIT_RUN_ID' parameter: got '../x'" in out.output
    out = CliRunner().invoke(main, ["entrypoint"], env={"BASE_DIR": str(tmp_path), "LABKIT_BLAS_THREADS": "two"})
    assert out.exit_code == 2 and "'LABKIT_BLAS_THREADS' parameter: got 'two'" in out.output
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "x").exists()
