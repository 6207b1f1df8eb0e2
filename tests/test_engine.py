"""labkit's papermill engine: found through papermill's entry point, and it keeps a notebook cut short."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import nbformat
import pytest

from labkit.runners import engine, kernel
from labkit.runners.local import _keeping_engine

ROOT = Path(__file__).resolve().parents[1]


def test_papermill_finds_the_engine_through_the_installed_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["papermill.engine"]
    installed = {ep.name: ep.value for ep in entry_points(group="papermill.engine")}
    assert installed.get(engine.NAME) == declared[engine.NAME] == "labkit.runners.engine:KeepingEngine", \
        "the installed metadata is stale: pip install -e . --no-deps"
    # a fresh interpreter, where nothing registered it by hand: papermill's own import finds it
    code = ("from papermill.engines import papermill_engines as e; from labkit.runners.engine import KeepingEngine\n"
            "assert e.get_engine('labkit') is KeepingEngine")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _keeping_engine() == engine.NAME


def _dying_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('first cell ran')"),
                                         nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
                                         nbformat.v4.new_code_cell("print('never')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("engine_name", [engine.NAME, "nbclient"])
def test_a_run_whose_kernel_dies_leaves_its_notebook_only_with_labkits_engine(tmp_path, engine_name):
    import papermill
    from nbclient.exceptions import DeadKernelError

    source, out = _dying_notebook(tmp_path / "in.ipynb"), tmp_path / "out.ipynb"
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    km = kernel.start(kernel.HEADLESS, cwd=tmp_path, sockets=str(sockets))
    try:
        with pytest.raises(DeadKernelError):
            papermill.execute_notebook(str(source), str(out), km=km, progress_bar=False,
                                       request_save_on_cell_execute=False, engine_name=engine_name,
                                       **({"keep_at": str(out)} if engine_name == engine.NAME else {}))
    finally:
        km.close()
    if engine_name == "nbclient":  # what the engine is for: papermill alone saves nothing of a run cut short
        assert not out.exists()
        return
    nb = nbformat.read(out, as_version=4)
    assert "first cell ran" in nb.cells[0].outputs[0]["text"]
    started = [c for c in nb.cells if c.metadata.get("papermill", {}).get("start_time")]
    assert started[-1] is nb.cells[1], "the saved notebook tells the cell the kernel died in"


def test_the_engine_module_imports_first_without_a_cycle():
    """papermill loads its entry points during its own import: this module imported first must not break it."""
    code = "import labkit.runners.engine, papermill; print(papermill.engines.papermill_engines.get_engine('labkit'))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "labkit.runners.engine.KeepingEngine" in out
