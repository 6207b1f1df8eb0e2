"""How long the notebook form takes to open on the demo data, header read included (target: < 2 s).

Two numbers:

* **cold** - a fresh Python process imports ``labkit.widgets``, builds ``IcaForm`` and
  chooses the demo recording (what a researcher waits for after running the cell in a
  new kernel); the median of ``--repeat`` processes;
* **warm** - in one process, build the form and choose the recording again (imports done):
  the median of ``--repeat`` rounds, and of those its header read (``recording.describe``) alone.

Prints a markdown table row (header with ``--header``); ``--out FILE`` appends the row to FILE.
Usage: ``python benchmarks/bench_form.py [--base-dir DIR] [--repeat 5] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 2.0
COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from labkit.widgets import IcaForm
t1 = time.perf_counter()
form = IcaForm(base_dir=sys.argv[1])
form.browser.choose(sys.argv[2])
t2 = time.perf_counter()
assert form.info is not None and not form.problems, form.problems
print(json.dumps({"import_s": t1 - t0, "form_s": t2 - t1, "total_s": t2 - t0}))
"""


def cold(base: Path, rel: str, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", COLD, str(base), rel], check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def warm(base: Path, rel: str, repeat: int) -> dict[str, float]:
    from labkit.analysis import recording
    from labkit.widgets import IcaForm

    IcaForm(base_dir=base).browser.choose(rel)  # warm-up: imports, first widget classes
    totals, headers = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        form = IcaForm(base_dir=base)
        form.browser.choose(rel)
        totals.append(time.perf_counter() - t0)
        assert form.info is not None
        t0 = time.perf_counter()
        recording.describe(base / rel)
        headers.append(time.perf_counter() - t0)
    return {"total_s": statistics.median(totals), "header_s": statistics.median(headers)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", type=Path, help="a base directory holding the demo (default: a fresh temp one)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--header", action="store_true", help="print the table header first")
    parser.add_argument("--out", type=Path, help="append the markdown row to this file")
    args = parser.parse_args(argv)

    from labkit.analysis.datasets import DEMO_FILENAME, write_demo

    with tempfile.TemporaryDirectory() as tmp:
        base = args.base_dir or Path(tmp)
        if not (base / DEMO_FILENAME).exists():
            write_demo(base)
        c = cold(base, DEMO_FILENAME, args.repeat)
        w = warm(base, DEMO_FILENAME, args.repeat)
    ok = c["total_s"] < TARGET_S
    header = ("| benchmark | cold total (s) | cold import (s) | cold form+header (s) | warm form+header (s) "
              "| header only (s) | target | python |\n|---|---|---|---|---|---|---|---|")
    row = (f"| form opens on demo data | {c['total_s']:.3f} | {c['import_s']:.3f} | {c['form_s']:.3f} | "
           f"{w['total_s']:.3f} | {w['header_s']:.4f} | < {TARGET_S:g} s {'✅' if ok else '❌'} | "
           f"{platform.python_version()} |")
    if args.header:
        print(header)
    print(row)
    if args.out:
        new = not args.out.exists()
        with args.out.open("a") as fh:
            fh.write((header + "\n" if new else "") + row + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
