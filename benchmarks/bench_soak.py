"""Soak: a long local sweep stays flat in file descriptors, threads and memory (issue 9).

Runs ``sweeps.run_sweep`` over N parameter sets (the demo recording, a tiny crop, 3
components, one seed per set: real papermill runs) in a child process limited to
``--nofile`` open files (``ulimit -n``), and samples the child's open file descriptors,
threads and resident memory after every run. ``--runner pool`` is what ``labkit sweep``
uses (2 warm kernels, runs from 2 threads); ``--runner local`` is ``LocalRunner``, a
fresh kernel per run, as ``labkit run``, the form and the server extension start them. Prints a JSON summary;
with ``--readme`` it also writes the table between ``<!-- bench_soak -->`` markers in
``benchmarks/README.md``.

    python benchmarks/bench_soak.py --sets 100 [--runner pool|local] [--nofile 256] [--readme]

``tests/test_soak.py`` runs the same child (:func:`soak`) in CI and asserts flatness.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START, END = "<!-- bench_soak -->", "<!-- /bench_soak -->"
#: a run small enough to repeat a thousand times: 4 s of the demo recording, 3 components
TINY = {"n_components": 3, "crop_tmax": 4.0, "method": "picard"}


def _usage() -> dict[str, float]:
    rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "os_threads": len(os.listdir("/proc/self/task")), "rss_mib": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20}


def child(base_dir: str, n_sets: int, runner: str = "pool") -> None:
    """The sweep itself (in the limited child): one JSON line per run, then the summary line."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # as labkit run does
    from labkit import IcaParams
    from labkit.analysis.datasets import DEMO_FILENAME, write_demo
    from labkit.runners.local import LocalRunner
    from labkit.runners.pool import PoolRunner
    from labkit.study import sweeps

    if not (Path(base_dir) / DEMO_FILENAME).exists():
        write_demo(base_dir)
    kind = {"pool": PoolRunner, "local": LocalRunner}[runner]

    printing = threading.Lock()  # two runs end at once in a pool: one whole line each

    class Sampled(kind):  # type: ignore[valid-type,misc]
        def run(self, params: IcaParams, **kwargs: Any) -> Any:
            try:
                return super().run(params, **kwargs)
            finally:
                with printing:
                    sys.stdout.write(json.dumps({"sample": _usage(), "t": time.monotonic()}) + "\n")
                    sys.stdout.flush()

    sets = sweeps.expand(IcaParams(base_dir=base_dir, raw_file_path=DEMO_FILENAME, **TINY),
                         random_state=range(n_sets))
    start = time.monotonic()
    sampled = Sampled(2) if runner == "pool" else Sampled()
    try:
        table = sweeps.run_sweep(sets, sampled, workers=2 if runner == "pool" else 1, progress=False)
    finally:
        if runner == "pool":
            sampled.close()
    states = table["state"].value_counts().to_dict() if len(table) else {}
    print(json.dumps({"done": {"rows": len(table), "states": states, "distinct_folders": table["path"].nunique(),
                               "seeds": sorted(int(s) for s in table["random_state"]), "seconds": time.monotonic() - start}}),
          flush=True)


def soak(n_sets: int, base_dir: str | None = None, nofile: int = 256, timeout: float = 7200,
         runner: str = "pool") -> dict[str, Any]:
    """Run :func:`child` in a subprocess under ``RLIMIT_NOFILE = nofile``; the samples and the outcome."""
    base = base_dir or tempfile.mkdtemp(prefix="labkit-soak-")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent),
                                                                                           os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, __file__, "--child", base, str(n_sets), runner], preexec_fn=limit, env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    samples = [line["sample"] for line in lines if "sample" in line]
    done = next((line["done"] for line in lines if "done" in line), None)
    return {"returncode": proc.returncode, "stderr_tail": proc.stderr[-3000:], "samples": samples, "done": done,
            "nofile": nofile, "base_dir": base, "runner": runner}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """First (after warm-up: the 5th run), last and peak of each measure."""
    s = result["samples"]
    warm = s[min(4, len(s) - 1)] if s else {}
    out: dict[str, Any] = {"runs": len(s), "nofile": result["nofile"], "done": result["done"], "runner": result["runner"]}
    for key in ("fds", "threads", "os_threads", "rss_mib"):
        out[key] = {"after_5": warm.get(key), "last": s[-1][key] if s else None, "max": max((x[key] for x in s), default=None)}
    return out


def write_readme(sm: dict[str, Any]) -> None:
    done = sm["done"] or {}
    row = lambda k, unit="": (f"| {k} | {sm[k]['after_5']:.4g}{unit} | {sm[k]['last']:.4g}{unit} | "  # noqa: E731
                              f"{sm[k]['max']:.4g}{unit} |")
    text = "\n".join([
        START,
        "## bench_soak: a long local sweep under `ulimit -n " + str(sm["nofile"]) + "`",
        "",
        "`python benchmarks/bench_soak.py --sets N --runner pool|local --readme`: `sweeps.run_sweep` over N sets "
        f"(demo recording, `{json.dumps(TINY)}`, one seed per set; real papermill runs) in a child limited to "
        f"{sm['nofile']} open files; usage sampled after every run. This run: `--runner {sm['runner']}` "
        + ("(`labkit sweep`'s 2 warm kernels)." if sm["runner"] == "pool" else "(a fresh kernel per run)."),
        "",
        f"Last run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {sm['runs']} runs, "
        f"{done.get('rows')} rows ({done.get('states')}), {done.get('distinct_folders')} distinct folders, "
        f"{done.get('seconds', 0):.0f} s ({done.get('seconds', 0) / max(sm['runs'], 1):.2f} s per run); "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine).",
        "",
        "| measure | after run 5 | after the last run | peak |",
        "|---|---:|---:|---:|",
        row("fds"), row("threads"), row("os_threads"), row("rss_mib", " MiB"),
        "",
        "fds: open descriptors (`/proc/self/fd`); threads: Python threads; os_threads: the process's",
        "threads including zmq's and BLAS's (`/proc/self/task`); rss_mib: resident memory at that point (not peak).",
        "",
        "`RunKernelManager.close` stops every client it made and destroys the zmq contexts, because nbclient",
        "never stops the client it makes from a kernel manager handed to it (`km=`). Without that (measured",
        "2026-11-23 in one process, 5 `LocalRunner` runs of the same tiny set): open descriptors 22, 36, 50,",
        "64, 75 and Python threads 2, 3, 4, 5, 6 after each run, about 13 descriptors and one",
        "heartbeat-channel thread per run (plus its zmq I/O threads); a 1024 limit ran out near run 84.",
        "CI (`tests/test_soak.py`) runs 100 sets on warm kernels (`--runner pool`, what `labkit sweep` uses) and",
        "50 fresh-kernel runs (`--runner local`: `labkit run`, the form, the server extension; 100 take about",
        "6 minutes, 3.5 s a run); the 1000-set tests are marked `soak` (`pytest -m soak`).",
        END,
    ])
    readme = README.read_text()
    if START in readme:
        readme = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: text, readme, flags=re.S)
    else:
        readme = readme.rstrip() + "\n\n" + text + "\n"
    README.write_text(readme)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=100)
    ap.add_argument("--nofile", type=int, default=256)
    ap.add_argument("--runner", choices=("pool", "local"), default="pool",
                    help="pool: labkit sweep's warm kernels; local: a fresh kernel per run")
    ap.add_argument("--base-dir", default=None)
    ap.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = ap.parse_args()
    result = soak(args.sets, args.base_dir, args.nofile, runner=args.runner)
    sm = summary(result)
    print(json.dumps(sm, indent=2))
    if result["returncode"] != 0:
        print(result["stderr_tail"], file=sys.stderr)
        sys.exit(1)
    if args.readme:
        write_readme(sm)


if __name__ == "__main__":
    main()
