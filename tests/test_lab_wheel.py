"""The wheel a hub admin installs: built and installed with no Node on the machine, labkit is enabled in Jupyter.

The frontend is built once by ``make install-test`` (``cd extension && jlpm build:prod``); building the wheel
takes it as built (hatch-jupyter-builder's ``skip-if-exists``), so a machine without Node builds and installs it.
The venv sees this environment's packages after its own (a ``.pth`` file naming them), so nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def no_node_env(*bin_dirs: Path) -> dict[str, str]:
    """This environment with PATH holding only ``bin_dirs`` (no Node, npm or jlpm's node)."""
    path = os.pathsep.join(str(d) for d in bin_dirs)
    assert shutil.which("node", path=path) is None and shutil.which("npm", path=path) is None, path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NODE", "NPM"))}
    return {**env, "PATH": path, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """The command's output (stdout and stderr), without the colours Jupyter's lists print."""
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def test_the_wheel_builds_and_installs_without_node_and_enables_labkit_in_jupyter(tmp_path):
    built = REPO / "labkit" / "labextension" / "static" / "style.js"
    assert built.is_file(), "the frontend is not built: cd extension && jlpm build:prod (make install-test does)"
    env = no_node_env(Path(sys.executable).parent)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(REPO)], env, tmp_path)
    wheel = next((tmp_path / "dist").glob("labkit-*.whl"))

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], env, tmp_path)
    inner = next((venv / "lib").glob("python3*/site-packages"))
    # this environment's packages after the venv's own (a venv made from a venv would see only the interpreter's)
    (inner / "_this_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = no_node_env(venv / "bin")
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], env, tmp_path)

    python = str(venv / "bin" / "python")  # the venv's own Jupyter commands (their scripts live outside it)
    where = run([python, "-c", "import labkit, labkit.lab; print(labkit.__file__)"], env, tmp_path)
    assert where.strip().startswith(str(inner)), where  # the wheel's labkit, not this checkout's
    labextensions = run([python, "-m", "jupyterlab.labextensions", "list"], env, tmp_path)  # jupyter labextension list
    section = labextensions.split(f"{venv}/share/jupyter/labextensions", 1)
    assert len(section) == 2, labextensions  # the wheel's copy, in the venv's own data directory
    assert re.search(r"labkit-extension v\S+ enabled\s+\S*OK", section[1].split("\n\n")[0]), labextensions

    servers = run([python, "-m", "jupyter_server.extension.serverextension", "list"], env, tmp_path)
    venv_config = servers.split(f"Config dir: {venv}/etc/jupyter", 1)
    assert len(venv_config) == 2, servers  # enabled by the config file the wheel installs into the venv
    mine = venv_config[1].split("Config dir:", 1)[0]
    assert "labkit.lab enabled" in mine and re.search(r"labkit\.lab\s+(\S+\s+)?OK", mine), servers
