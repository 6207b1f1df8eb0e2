"""The shell face: messages and exit codes a shell user can act on."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from labkit.cli.main import main


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


def _fake_runs(base):
    """Three result folders as runs leave them: failed, succeeded with warnings, succeeded with suspects."""
    import json

    from labkit import IcaParams
    from labkit.results.folder import RunFolder

    params = IcaParams(base_dir=str(base), raw_file_path="sub-01/eeg/a_very_long_recording_name_for_sub-01_raw.fif")
    failed = RunFolder.create(params, run_id="20260101-120000-000-aaaaaa")
    failed.fail("notebook cell 4 raised ValueError: " + "a reason that goes on and on " * 10)
    for run_id, warnings, suspects in (("20260101-120001-000-bbbbbb", ["FastICA did not converge"], []),
                                       ("20260101-120002-000-cccccc", [], [0, 3])):
        folder = RunFolder.create(params.replace(method="picard"), run_id=run_id)
        metrics = {"fit_time_s": 1.234, "warnings": warnings, "eog_suspects": suspects, "eog_scores": [0.1] * 4}
        folder.file("metrics.json").write_text(json.dumps(metrics))
        folder.file("components-ica.fif").write_bytes(b"")
        folder.set_status("running", warnings=warnings)
        folder.succeed()


def test_runs_prints_a_compact_table_that_fits_100_columns(tmp_path):
    _fake_runs(tmp_path)
    out = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert len(lines) == 6 and lines[0].startswith("RUN ID") and all(len(line) <= 100 for line in lines), lines
    failed, why, warned, warning, clean = lines[1:]
    assert "failed" in failed and "a_very_long" in failed
    assert why.startswith("    why: notebook cell 4 raised ValueError") and why.endswith("...")
    assert "succeeded with warnings" in warned and warning == "    FastICA did not converge"
    assert "succeeded " in clean and "with warnings" not in clean and "eog:0,3" in clean and "1.23" in clean


def test_runs_wide_json_and_csv_carry_every_column(tmp_path):
    import json

    _fake_runs(tmp_path)
    records = json.loads(CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path), "--json"]).output)
    assert [r["run_id"][-6:] for r in records] == ["aaaaaa", "bbbbbb", "cccccc"]
    assert {"method", "n_components", "filter_fmax", "fit_time_s", "path"} <= set(records[0])
    csv = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path), "--csv"]).output.splitlines()
    assert csv[0].startswith("run_id,") and len(csv) == 4
    wide = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path), "--wide"]).output
    assert "filter_fmax" in wide and max(map(len, wide.splitlines())) > 100


def test_runs_of_an_empty_or_missing_folder(tmp_path):
    out = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path)])
    assert out.exit_code == 0 and out.output.startswith("no runs under ") and "DataFrame" not in out.output
    assert CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path), "--json"]).output.strip() == "[]"
    out = CliRunner().invoke(main, ["runs", "--base-dir", str(tmp_path / "nope")])
    assert out.exit_code == 2 and "'base_dir' parameter" in out.output and not (tmp_path / "nope").exists()


def test_cluster_commands_are_offered_but_imported_only_when_used():
    from labkit.cli.cluster import COMMANDS
    from labkit.cli.main import _Commands

    assert set(_Commands.cluster) == {c.name for c in COMMANDS}
    listed = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in listed for name in _Commands.cluster)
    assert CliRunner().invoke(main, ["render", "--help"]).exit_code == 0
    code = "import sys, labkit.cli.main; print(sorted(m for m in sys.modules if m.startswith('labkit.runners.cluster')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", "labkit run must not pay for importing the cluster commands"


def test_bad_run_id_exits_2_before_any_folder(tmp_path):
    for run_id in ("../x", "x" * 300):
        out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--run-id", run_id])
        assert out.exit_code == 2, out.output
        assert "Invalid value for the 'run_id' parameter" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(main, ["entrypoint"], env={"BASE_DIR": str(tmp_path), "LABKIT_RUN_ID": "../x"})
    assert out.exit_code == 2 and "environment variable LABKIT_RUN_ID: got '../x'" in out.output
    out = CliRunner().invoke(main, ["entrypoint"], env={"BASE_DIR": str(tmp_path), "LABKIT_BLAS_THREADS": "two"})
    assert out.exit_code == 2 and "environment variable LABKIT_BLAS_THREADS: got 'two'" in out.output
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "x").exists()


def test_logs_of_a_local_run_need_no_cluster(tmp_path, monkeypatch):
    from labkit import IcaParams
    from labkit.results.folder import RunFolder

    monkeypatch.delenv("LABKIT_CLUSTER_CONFIG", raising=False)
    folder = RunFolder.create(IcaParams(base_dir=str(tmp_path)), run_id="local-1")
    folder.file("run.log").write_text("step one\nstep two\n")
    out = CliRunner().invoke(main, ["logs", "local-1", "--base-dir", str(tmp_path)])
    assert out.exit_code == 0 and out.output == "step one\nstep two\n"


def test_logs_follow_a_local_run_until_it_ends(tmp_path):
    import threading
    import time

    from labkit import IcaParams
    from labkit.results.folder import RunFolder

    folder = RunFolder.create(IcaParams(base_dir=str(tmp_path)), run_id="local-2")
    folder.start()
    folder.file("run.log").write_text("started\n")

    def finish():
        time.sleep(0.6)
        with folder.file("run.log").open("a") as log:
            log.write("fitting\n")
        time.sleep(0.6)
        folder.fail("boom")

    worker = threading.Thread(target=finish)
    worker.start()
    out = CliRunner().invoke(main, ["logs", "-f", "local-2", "--base-dir", str(tmp_path)])
    worker.join()
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[:2] == ["started", "fitting"] and "FAILED: boom" in lines[2]
    assert lines[-1].startswith("run local-2: failed (boom): ") and lines[-1].endswith(".failed")


def test_render_needs_no_cluster_configuration(monkeypatch):
    import yaml

    for name in [n for n in os.environ if n.startswith("LABKIT_CLUSTER")]:
        monkeypatch.delenv(name)
    out = CliRunner().invoke(main, ["render", "--user", "alice", "--n-components", "20"])
    assert out.exit_code == 0, out.output + out.stderr
    job = yaml.safe_load(out.stdout)
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": "claim-alice"}
    assert "no storage configured" in out.stderr and "storage.pvc=claim-{user}" in out.stderr
    bad = CliRunner().invoke(main, ["render", "--user", "alice", "--run-id", "../x"])
    assert bad.exit_code == 2 and "'run_id' parameter: got '../x'" in bad.output


def test_run_summary_tells_outcome_warnings_suspects_and_report(tmp_path):
    from labkit.cli.main import run_summary, summary_lines
    from labkit.results.reading import list_runs

    _fake_runs(tmp_path)
    _, warned, clean = list_runs(tmp_path)
    (clean.path / "report.html").write_text("<html/>")
    lines = summary_lines(warned)
    assert lines[0] == "run 20260101-120001-000-bbbbbb: succeeded with warnings"
    assert lines[1] == "  warning: FastICA did not converge" and "  suspects: eog none; ecg none" in lines
    assert lines[-1] == str(warned.path) and not any(line.startswith("  report:") for line in lines)
    lines = summary_lines(clean)
    assert lines[0].endswith(": succeeded") and "  suspects: eog 0, 3; ecg none" in lines
    assert f"  report: {clean.path / 'report.html'}" in lines and lines[-1] == str(clean.path)
    assert run_summary(warned)["outcome"] == "succeeded with warnings"


def test_run_prints_a_summary_then_the_folder_or_json(demo_dir):
    import json

    args = ["labkit", "run", "--base-dir", str(demo_dir), "--raw-file-path", "labkit-demo/demo_raw.fif",
            "--n-components", "8", "--crop-tmax", "20", "--method", "picard"]
    proc = subprocess.run([*args, "--run-id", "sum-1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("run sum-1: succeeded") and lines[-1].endswith("PreExperiment_ICA_sum-1")
    assert any(line.startswith("  suspects: eog ") for line in lines)
    assert f"  report: {lines[-1]}/report.html" in lines
    proc = subprocess.run([*args, "--run-id", "sum-2", "--json"], capture_output=True, text=True, timeout=600)
    summary = json.loads(proc.stdout)
    assert summary["run_id"] == "sum-2" and summary["state"] == "succeeded" and summary["path"].endswith("sum-2")
    assert summary["outcome"] in ("succeeded", "succeeded with warnings") and isinstance(summary["warnings"], list)


def test_errors_say_which_flag_or_variable_gave_the_value(tmp_path):
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--n-components", "x"])
    assert out.exit_code == 2 and out.output.strip().endswith("allowed: a whole number. Given by --n-components.")
    out = CliRunner().invoke(main, ["entrypoint"], env={"BASE_DIR": str(tmp_path), "ICA_METHOD": "pca"})
    assert out.exit_code == 2 and out.output.strip().endswith("Given by the environment variable ICA_METHOD.")
    out = CliRunner().invoke(main, ["run", "--base-dir", str(tmp_path), "--crop-tmin", "100"])  # past crop_tmax's default
    assert out.exit_code == 2 and "'crop_tmin' parameter: got 100.0" in out.output  # the value the user gave
    assert "crop_tmax (60 s, its default" in out.output and "Given by --crop-tmin." in out.output


# -- where a parameter comes from: the help names a variable, the command reads it ---------------
def test_run_reads_the_variables_its_help_names_below_flag_and_file(demo_dir, tmp_path):
    """flag > --params file > environment variable > default, through the real command."""
    import json

    from labkit.params import FIELDS

    shown = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    assert all(f"[env {f.env}]" in shown for f in FIELDS)
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"crop_tmax": 20, "n_components": 6}))
    env = {**os.environ, "BASE_DIR": str(demo_dir), "RAW_FILE_PATH": "labkit-demo/demo_raw.fif",
           "ICA_METHOD": "picard", "ICA_COMPONENTS_COUNT": "99", "CROP_TMAX": "5"}
    proc = subprocess.run(["labkit", "run", "--params", str(params), "--n-components", "8", "--run-id", "env-1",
                           "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["path"] == str(demo_dir / "PreExperiment_ICA_env-1")  # BASE_DIR: where the folder is
    used = json.loads((demo_dir / "PreExperiment_ICA_env-1" / "params.json").read_text())["params"]
    assert (used["method"], used["n_components"], used["crop_tmax"]) == ("picard", 8, 20)  # env, flag, file
    bad = CliRunner().invoke(main, ["run"], env={"BASE_DIR": str(tmp_path), "ICA_METHOD": "pca"})
    assert bad.exit_code == 2 and bad.output.strip().endswith("Given by the environment variable ICA_METHOD.")
    assert list(tmp_path.glob("PreExperiment_ICA_*")) == []


def test_render_and_submit_read_them_too_and_a_sweep_says_it_does_not():
    import yaml

    env = {"BASE_DIR": "/home/jovyan", "RAW_FILE_PATH": "/home/jovyan/sub-01_raw.fif", "ICA_METHOD": "infomax"}
    out = CliRunner().invoke(main, ["render", "--user", "alice", "--n-components", "12"], env=env)
    assert out.exit_code == 0, out.output
    (container,) = yaml.safe_load(out.stdout)["spec"]["template"]["spec"]["containers"]
    given = {e["name"]: e.get("value") for e in container["env"]}
    # the recording is inside $BASE_DIR, so the pod sees it relative to its own mount
    assert (given["RAW_FILE_PATH"], given["ICA_METHOD"], given["ICA_COMPONENTS_COUNT"]) == (
        "sub-01_raw.fif", "infomax", "12")
    for command in ("submit", "render"):
        assert "[env ICA_METHOD]" in CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    assert "[env " not in CliRunner().invoke(main, ["sweep", "--help"], terminal_width=200).output


# -- labkit's own variables, through the CLI ------------------------------------------------------
def test_a_bad_labkit_variable_exits_2_in_words_before_anything_is_written(tmp_path):
    for variable, value, command in (("LABKIT_CACHE", "of", ["run", "--base-dir", str(tmp_path)]),
                                     ("LABKIT_CACHE_MAX_BYTES", "2G", ["cache", "info", "--base-dir", str(tmp_path)]),
                                     ("LABKIT_HEARTBEAT_S", "soon", ["entrypoint"]),
                                     ("LABKIT_STALE_S", "-1", ["sweep", "--base-dir", str(tmp_path), "--recording", "x"]),
                                     ("LABKIT_IMAGE", "", ["sweep", "--export", "argo", "--help"])):
        out = CliRunner().invoke(main, command, env={"BASE_DIR": str(tmp_path), variable: value})
        if value == "":
            assert out.exit_code == 0, out.output
            continue
        assert out.exit_code == 2, (variable, out.output)
        assert f"labkit: Invalid value for the environment variable {variable}: got {value!r}; allowed: " in out.output
        assert "Traceback" not in out.output and out.exception is None or isinstance(out.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []


# -- one exit-code table ------------------------------------------------------------------------------
def _labkit_errors():
    import importlib
    import pkgutil

    import labkit
    from labkit.errors import LabkitError

    for info in pkgutil.walk_packages(labkit.__path__, "labkit."):
        if not info.name.startswith(("labkit.hub", "labkit.runners.notebooks", "labkit.__main__")):
            importlib.import_module(info.name)
    importlib.import_module("labkit.hub.bodies")
    seen, todo = set(), [LabkitError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo += cls.__subclasses__()
    return seen


def test_every_error_exits_with_a_code_of_the_table():
    from labkit.errors import ExitCode
    from labkit.runners.cluster.manifests import LABKIT_EXIT_CODES

    errors = _labkit_errors()
    assert len(errors) > 10
    for cls in errors:
        assert cls.exit_code in set(ExitCode), f"{cls.__name__}.exit_code = {cls.exit_code} is not an ExitCode"
    # what a pod exits with and the Job's failure policy reads are the same codes
    assert set(LABKIT_EXIT_CODES) == {ExitCode.BAD_INPUT, ExitCode.BAD_RECORDING, ExitCode.RUN_FAILED}


def test_the_readme_table_is_the_codes_table():
    import re
    from pathlib import Path

    from labkit.errors import ExitCode

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \| .+ \|$", section, re.M)
    assert [(int(code), name) for code, name in rows] == [(int(c), c.name) for c in ExitCode]


def test_the_readme_lists_every_labkit_variable():
    from pathlib import Path

    from labkit.settings.model import LabkitSettings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("| variable | default | allowed |", 1)[1].split("\n\n", 1)[0]
    assert all(f"`{LabkitSettings.variable(f)}`" in table for f in LabkitSettings.model_fields)


def test_an_interrupted_command_exits_130(tmp_path):
    import signal

    from labkit import IcaParams
    from labkit.errors import ExitCode
    from labkit.results.folder import RunFolder

    folder = RunFolder.create(IcaParams(base_dir=str(tmp_path)), run_id="local-3")
    folder.start()
    folder.file("run.log").write_text("started\n")
    proc = subprocess.Popen(["labkit", "logs", "-f", "local-3", "--base-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"  # following: the run is still running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        folder.fail("test over")
    assert proc.returncode == ExitCode.CANCELLED and "labkit: interrupted" in err and "Traceback" not in err


# -- the CLI's modules: no import circle --------------------------------------------------------------
def test_the_cluster_commands_import_nothing_from_the_main_group():
    import ast
    from pathlib import Path

    import labkit.cli

    for path in Path(labkit.cli.__file__).parent.glob("*.py"):
        if path.name == "main.py":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):  # inside functions too
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        assert "labkit.cli.main" not in imported, f"{path.name} imports labkit.cli.main, which loads it"


def test_the_cli_starts_without_importing_pydantic():
    """pydantic takes a quarter of a second to import: only a command that reads a LABKIT_* variable pays it."""
    code = "import sys, labkit.cli.main; print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_command_never_compiles_rfc3987_syntaxs_grammars():
    """jsonschema (under papermill, JupyterHub, kubernetes-validate) would import rfc3987_syntax, seconds of
    grammar compiling; a labkit command keeps it out, and jsonschema still checks what labkit's schemas use."""
    # as in a plain install: rfc3987 (which the test tools add, and jsonschema would prefer) absent
    code = ("import sys\nsys.modules['rfc3987'] = None\nfrom labkit.cli.main import main\ntry:\n    main(['runs', '--base-dir', '.'])\n"
            "except SystemExit:\n    pass\nimport jsonschema\n"
            "print('rfc3987_syntax' in sys.modules and sys.modules['rfc3987_syntax'] is not None)\n"
            "print(jsonschema.Draft7Validator({'type': 'integer'}).is_valid('x'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["False", "False"], out
