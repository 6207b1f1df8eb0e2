"""bench_sweep: `labkit sweep` on warm workers against a naive loop of MNE scripts, side by side in one run.

Arms, each on a fresh copy of the demo recording with an empty preprocessing cache:

  (a) naive loop: ``benchmarks/naive_ica.py`` processes, two at a time (what a lab's bash loop does)
  (b) ``labkit sweep --workers 2``
  (c) ``labkit sweep --workers 1``
  (d) ``labkit sweep --workers 2`` with ``LABKIT_CACHE=off`` (what the shared preprocessing saves)

Throughput = runs / wall-clock second. Preprocessing time per run = ``load_s + filter_s``
from each result's ``metrics.json`` (cache on: b; off: d). The naive script has no seed
argument (random_state 97 for every run); the labkit arms run seeds 0..S-1, so the
same number of fits of the same size, with iteration counts that vary by seed.

    python benchmarks/bench_sweep.py [--seeds 30] [--methods fastica,picard,infomax] [--write-readme]
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
NAIVE = HERE / "naive_ica.py"
LABKIT = Path(sys.executable).with_name("labkit")
MARK = ("<!-- bench_sweep -->", "<!-- /bench_sweep -->")


def _fresh_base(root: Path, name: str, demo: Path) -> Path:
    base = root / name
    shutil.copytree(demo, base)
    return base


def naive_loop(base: Path, sets: list[dict], parallel: int = 2) -> dict:
    from labkit.analysis.datasets import DEMO_FILENAME

    def one(i_set):
        i, s = i_set
        out = base / f"naive-{i:03d}"
        out.mkdir()
        proc = subprocess.run([sys.executable, str(NAIVE), str(base / DEMO_FILENAME), s["method"], str(out),
                               str(s["n_components"])], capture_output=True, text=True,
                              env={**os.environ, "MPLBACKEND": "Agg"})
        return proc.returncode == 0 and (out / "report.html").exists()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        ok = list(pool.map(one, enumerate(sets)))
    return {"wall_s": time.perf_counter() - t0, "runs": len(sets), "succeeded": sum(ok)}


def labkit_sweep(base: Path, sets: list[dict], workers: int, cache: bool = True) -> dict:
    from labkit.results.reading import list_runs

    sets_file = base / "sets.json"
    sets_file.write_text(json.dumps([{**s, "base_dir": str(base)} for s in sets]))
    env = {**os.environ, "MPLBACKEND": "Agg", "LABKIT_CACHE": "on" if cache else "off"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(LABKIT) if LABKIT.exists() else "labkit", "sweep", str(sets_file),
                           "--workers", str(workers)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    runs = [r for r in list_runs(base) if r.state == "succeeded"]
    pre = [r.metrics["steps_s"]["load_s"] + r.metrics["steps_s"]["filter_s"] for r in runs]
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
    return {"wall_s": wall, "runs": len(sets), "succeeded": len(runs),
            "preprocess_median_s": statistics.median(pre) if pre else None,
            "preprocess_total_s": sum(pre), "fit_median_s": statistics.median(r.metrics["fit_time_s"] for r in runs)
            if runs else None}


def machine() -> str:
    import mne

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
            f"MNE {mne.__version__}; load average when written {load}")


def table(res: dict, n_sets: int, methods: list[str], seeds: int, components: int) -> str:
    a, b, c = res["naive"], res["w2"], res["w1"]
    d = res.get("w2_nocache")
    tp = {k: v["succeeded"] / v["wall_s"] for k, v in res.items()}
    rows = [("(a) naive loop, 2 at a time", a), ("(b) labkit sweep --workers 2", b),
            ("(c) labkit sweep --workers 1", c)]
    if d:
        rows.append(("(d) labkit sweep --workers 2, LABKIT_CACHE=off", d))
    keys = {id(a): "naive", id(b): "w2", id(c): "w1", id(d): "w2_nocache"}
    lines = [f"Last run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {n_sets} runs per arm "
             f"({len(methods)} methods x {seeds} seeds, {components} components, demo recording, crop 0-60 s).",
             f"Machine: {machine()}. The machine is shared with other sessions running tests: wall times are noisy.",
             "", "| arm | runs ok | wall (s) | runs/min | preprocessing per run, median (s) |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows:
        pre = r.get("preprocess_median_s")
        lines.append(f"| {name} | {r['succeeded']}/{r['runs']} | {r['wall_s']:.1f} | "
                     f"{60 * tp[keys[id(r)]]:.1f} | {'-' if pre is None else f'{pre:.3f}'} |")
    lines += ["", f"- (b)/(a) throughput: **{tp['w2'] / tp['naive']:.2f}x** (target >= 2x: "
              f"{'met' if tp['w2'] / tp['naive'] >= 2 else 'NOT met'})",
              f"- (b)/(c) throughput: **{tp['w2'] / tp['w1']:.2f}x** (target >= 1.8x: "
              f"{'met' if tp['w2'] / tp['w1'] >= 1.8 else 'NOT met'})"]
    if d and b.get("preprocess_median_s") and d.get("preprocess_median_s"):
        ratio = d["preprocess_median_s"] / b["preprocess_median_s"]
        lines.append(f"- preprocessing (load + filter) per run, cache off / on: **{ratio:.1f}x** (target >= 5x: "
                     f"{'met' if ratio >= 5 else 'NOT met'}); totals {d['preprocess_total_s']:.1f} s / "
                     f"{b['preprocess_total_s']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--methods", default="fastica,picard,infomax")
    ap.add_argument("--n-components", type=int, default=20)
    ap.add_argument("--arms", default="naive,w2,w1,w2_nocache")
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    from labkit.analysis.datasets import DEMO_FILENAME, write_demo

    methods = args.methods.split(",")
    sets = [{"raw_file_path": DEMO_FILENAME, "method": m, "n_components": args.n_components, "random_state": s,
             "crop_tmax": 60.0} for m in methods for s in range(args.seeds)]
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    demo = root / "demo"
    write_demo(demo)
    arms = {"naive": lambda base: naive_loop(base, sets),
            "w2": lambda base: labkit_sweep(base, sets, 2),
            "w1": lambda base: labkit_sweep(base, sets, 1),
            "w2_nocache": lambda base: labkit_sweep(base, sets, 2, cache=False)}
    res = {}
    try:
        for name in args.arms.split(","):
            res[name] = arms[name](_fresh_base(root, name, demo))
            print(name, json.dumps(res[name]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if {"naive", "w2", "w1"} <= set(res):
        text = table(res, len(sets), methods, args.seeds, args.n_components)
        print(text)
        if args.write_readme:
            body = README.read_text()
            block = (f"{MARK[0]}\n## bench_sweep: `labkit sweep` (warm workers) vs a naive loop\n\n"
                     f"`python benchmarks/bench_sweep.py` (options: `--seeds`, `--methods`, `--arms`).\n\n"
                     f"{text}\n{MARK[1]}")
            if MARK[0] in body:
                start, end = body.index(MARK[0]), body.index(MARK[1]) + len(MARK[1])
                body = body[:start] + block + body[end:]
            else:
                body = body.rstrip("\n") + "\n\n" + block + "\n"
            README.write_text(body)


if __name__ == "__main__":
    main()
