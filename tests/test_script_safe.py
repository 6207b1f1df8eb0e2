"""A plain script (no ``__main__`` guard) that calls the analysis runs once, not once per worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from labkit.analysis.datasets import DEMO_FILENAME, write_demo
from labkit.results.layout import COMPONENTS_TSV, ICA_FILE, METRICS_FILE, REPORT_FILE, TOPOMAP_GLOB

MARKER = "labkit-script-marker"


def test_unguarded_script_runs_once_with_worker_processes(tmp_path: Path) -> None:
    write_demo(tmp_path)
    out = tmp_path / "out"
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(f"""
        from labkit.analysis import ica
        from labkit.params import IcaParams
        print({MARKER!r}, flush=True)
        params = IcaParams(base_dir={str(tmp_path)!r}, raw_file_path={DEMO_FILENAME!r}, n_components=10,
                           crop_tmax=30.0)
        ica.run(params, {str(out)!r}, beside="process", verbose="error")
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(MARKER) == 1, done.stdout
    assert "drawing here" not in done.stderr, "the workers started and did the side work"
    for name in (COMPONENTS_TSV, ICA_FILE, METRICS_FILE, REPORT_FILE):
        assert (out / name).is_file(), name
    assert list(out.glob(TOPOMAP_GLOB)), "the topomaps were drawn"
