"""How fast the JupyterLab extension's runs list answers with many runs in the base directory.

``python benchmarks/bench_lab.py`` makes 500 and 5,000 small finished result folders (as labkit
writes them, without a fit) and times the server's list answer (``LabRuns.list``, what
``GET /labkit/runs`` returns) the way the panel asks for it: the first page of 500, newest first.
Targets: under 100 ms with 500 runs, under 500 ms with 5,000, for the answers the panel gets as it
polls; the first answer after the server starts reads every folder once and is shown beside them.
Results go into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from labkit import IcaParams
from labkit.lab.runs import LabRuns
from labkit.results.folder import RunFolder
from labkit.results.layout import ICA_FILE, METRICS_FILE

TARGETS = {500: 0.100, 5000: 0.500}


def make_runs(base: Path, n: int) -> None:
    params = IcaParams(base_dir=str(base), raw_file_path="rec.fif", n_components=5)
    (base / "rec.fif").write_bytes(b"")
    for i in range(n):
        folder = RunFolder.create(params.replace(random_state=i), f"bench-{i:05d}")
        folder.file(METRICS_FILE).write_text(json.dumps({"method": "fastica", "n_components": 5}))
        folder.file(ICA_FILE).write_bytes(b"")  # the list never opens it
        folder.succeed()


def time_list(base: Path, repeats: int) -> list[float]:
    runs = LabRuns(base)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        page = runs.list({"per_page": "500"})
        times.append(time.perf_counter() - start)
        assert page.total == len(list(base.glob("PreExperiment_ICA_*")))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| runs in the base directory | first answer, cold (s) | later answers, median (s) | target | met |")
    print("|---:|---:|---:|---:|---|")
    for n, target in TARGETS.items():
        with tempfile.TemporaryDirectory() as tmp:
            make_runs(Path(tmp), n)
            times = time_list(Path(tmp), args.repeats)
        median = statistics.median(times[1:])  # the server reads a finished folder once; the panel polls
        print(f"| {n} | {times[0]:.3f} | {median:.3f} | < {target:.1f} | {'yes' if median < target else 'no'} |")


if __name__ == "__main__":
    main()
