"""A long recording: wall time and peak memory of a labkit run against the naive script (issue 10, item 8).

The recording: :func:`labkit.analysis.datasets.write_long`, 30 minutes, 64 channels (60 EEG, 2 EOG,
ECG, a stimulus channel) at 250 Hz: 115 MB of float64 samples in memory. Both sides
analyse the whole recording (``crop_tmax`` none) with the prototype's other defaults
(fastica, 30 components, 1-30 Hz, eeg, seed 97) and produce the same outputs (the ICA,
topomaps, sources, suspects' properties, labels, a report):

(a) ``benchmarks/naive_ica.py`` as a fresh ``python`` process;
(b) ``labkit.analysis.ica.run`` in a fresh ``python`` process (the analysis a run's kernel executes);
(c) ``labkit run`` (papermill and its kernel, all outputs), as a process tree.

Each side starts without labkit's preprocessing cache (removed before it): a first run, which
reads, filters and stores the entry, at the defaults. Wall time and memory come from two
separate runs of each side: sampling PSS reads ``/proc/PID/smaps`` of every process of the tree
every 50 ms, which costs CPU and holds each process's memory map lock, and it slowed the side
that uses both cores (labkit: a worker beside the run) by about 10% (measured: 1.12x sampled,
0.97x unsampled, same code, same hour). Peak memory is the largest sum of PSS (proportional set size: pages shared between processes,
such as the topomap worker's with its forkserver, are split between them rather than counted
twice) over the process tree (the run, its kernel, the topomap worker), sampled every 50 ms
with psutil. Rounds are interleaved (a, b, c per
round) and the medians go into ``benchmarks/README.md`` between ``<!-- bench_long -->`` markers.

    python benchmarks/bench_long.py [--repeats 3] [--minutes 30] [--base-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
NAIVE = HERE / "naive_ica.py"
START, END = "<!-- bench_long -->", "<!-- /bench_long -->"
N_COMPONENTS = 30
API = """
import sys
from labkit.analysis import ica
from labkit import IcaParams
params = IcaParams(base_dir=sys.argv[1], raw_file_path=sys.argv[2], crop_tmax=None, n_components=int(sys.argv[4]))
ica.run(params, sys.argv[3], verbose="warning")
"""


def measure(cmd: list[str], env: dict[str, str], *, memory: bool) -> tuple[float, float]:
    """Wall seconds and, if ``memory``, peak summed PSS (MiB) of ``cmd`` and all its descendants (else 0)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    peak, done = 0, threading.Event()

    def sample() -> None:
        if not memory:
            return
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_full_info().pss
                    except psutil.Error:
                        pass
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-3000:]}")
    return wall, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--base-dir", default=None)
    args = ap.parse_args()
    from labkit.analysis.datasets import LONG_FILENAME, write_long

    base = Path(args.base_dir or tempfile.mkdtemp(prefix="labkit-long-"))
    raw = write_long(base, minutes=args.minutes)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(HERE.parent)}
    sides = {
        "a naive script": lambda out: [sys.executable, str(NAIVE), str(raw), "fastica", str(out), str(N_COMPONENTS),
                                       "none"],
        "b labkit.analysis.ica.run": lambda out: [sys.executable, "-c", API, str(base), LONG_FILENAME, str(out),
                                         str(N_COMPONENTS)],
        "c labkit run": lambda out: [str(Path(sys.executable).with_name("labkit")), "run", "--base-dir", str(base),
                                     "--raw-file-path", LONG_FILENAME, "--crop-tmax", "none",
                                     "--n-components", str(N_COMPONENTS)],
    }
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    for r in range(args.repeats):
        for name, cmd in sides.items():
            timed = []
            for memory in (False, True):  # wall from a run nobody samples; memory from a second, sampled run
                shutil.rmtree(base / ".labkit-cache", ignore_errors=True)  # each a first run: it reads and filters
                out = Path(tempfile.mkdtemp(prefix="out-", dir=base))
                timed.append(measure(cmd(out), env, memory=memory))
            got[name].append((timed[0][0], timed[1][1]))
            print(f"round {r + 1} {name}: {got[name][-1][0]:.1f} s, {got[name][-1][1]:.0f} MiB", flush=True)
        write_table(got, args, raw)


def write_table(got: dict[str, list[tuple[float, float]]], args: argparse.Namespace, raw: Path) -> None:
    med = {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for k, v in got.items() if v}
    base_wall, base_mem = med["a naive script"]
    rows = ["| side | wall s (median) | peak MiB (median) | wall / naive | memory / naive | all rounds (s, MiB) |",
            "|---|---|---|---|---|---|"]
    for name, (wall, mem) in med.items():
        rounds = "; ".join(f"{w:.1f}, {m:.0f}" for w, m in got[name])
        rows.append(f"| {name} | {wall:.1f} | {mem:.0f} | {wall / base_wall:.2f} | {mem / base_mem:.2f} | {rounds} |")
    size = raw.stat().st_size / 2**20
    text = (f"{START}\n{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; {args.minutes:g}-minute 64-channel "
            f"recording ({size:.0f} MiB on disk), whole recording, fastica, {N_COMPONENTS} components, "
            f"{len(next(iter(got.values())))} interleaved rounds; wall from unsampled runs, memory from sampled ones; "
            f"load average {os.getloadavg()[0]:.2f} when written.\n\n"
            + "\n".join(rows) + f"\n{END}")
    readme = README.read_text()
    if START in readme:
        readme = readme[: readme.index(START)] + text + readme[readme.index(END) + len(END):]
    else:
        readme += "\n## Long recordings (bench_long.py)\n\n" + text + "\n"
    README.write_text(readme)
    print(json.dumps({k: list(v) for k, v in med.items()}))


if __name__ == "__main__":
    main()
