"""How long the notebook form takes to open on the demo data, header read included (target: < 1 s), and how long
its Run takes to show topomaps compared with ``labkit run`` on the same set (target: within 1.2x).

Three numbers:

* **cold** - a fresh kernel (the ``python3`` kernel JupyterLab starts: IPython and ipykernel loaded) runs the
  cell that imports ``labkit.widgets``, builds ``IcaForm`` and chooses the demo recording (what a researcher
  waits for after running the cell in a new kernel), timed inside the kernel; the median of ``--repeat`` kernels;
* **warm** - in one process, build the form and choose the recording again (imports done):
  the median of ``--repeat`` rounds, and of those its header read (``recording.describe``) alone;
* **run** - Run in the form until its topomaps are shown, against ``labkit run`` with the same parameters
  in a fresh process (picard, 15 components, 30 s of the demo; the best of ``--run-repeat``), each with ``--force``
  semantics (a fresh run id, nothing reused).

Prints a markdown table row (header with ``--header``); ``--out FILE`` appends the row to FILE.
Usage: ``python benchmarks/bench_form.py [--base-dir DIR] [--repeat 5] [--run-repeat 1] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
#: the form's Run may take at most this much longer than ``labkit run`` until its topomaps show
RUN_RATIO = 1.2
COLD = r"""
import json, time
t0 = time.perf_counter()
from labkit.widgets import IcaForm
t1 = time.perf_counter()
form = IcaForm(base_dir=BASE)
form.browser.choose(REL)
t2 = time.perf_counter()
assert form.info is not None and not form.problems, form.problems
print(json.dumps({"import_s": t1 - t0, "form_s": t2 - t1, "total_s": t2 - t0}))
"""


def cold(base: Path, rel: str, repeat: int) -> dict[str, float]:
    """The form's cell in a fresh kernel each time (IPython and ipykernel loaded, as in JupyterLab), timed inside it."""
    from jupyter_client.manager import start_new_kernel

    runs = []
    for _ in range(repeat):
        km, kc = start_new_kernel(kernel_name="python3", cwd=str(base))
        printed: list[str] = []

        def hook(msg: dict, printed: list[str] = printed) -> None:
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                printed.append("\n".join(msg["content"]["traceback"]))

        try:
            cell = f"BASE, REL = {str(base)!r}, {rel!r}\n" + COLD
            kc.execute_interactive(cell, output_hook=hook, timeout=300)
            runs.append(json.loads("".join(printed).strip().splitlines()[-1]))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
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


def run_times(base: Path, rel: str, repeat: int) -> dict[str, float]:
    """Seconds until the form shows the topomaps of a Run, and ``labkit run`` on the same set (best of ``repeat``)."""
    from labkit.widgets import IcaForm, export_text
    from labkit.widgets.common import png_of

    form_s, cli_s = [], []
    for i in range(repeat):
        form = IcaForm(base_dir=base)
        form.browser.choose(rel)
        for name, value in {"method": "picard", "n_components": "15", "crop_tmax": "30",
                            "random_state": str(100 + i)}.items():
            form.controls[name].value = value
        params = form.params
        assert params is not None, form.problems
        t0 = time.perf_counter()
        form.run_here()
        while not (form.result_view is not None and any(png_of(w) for w in form.result_view.topomaps.children)):
            if not form.running and form.result_view is None and form.history:
                raise RuntimeError(f"the form's run ended {form.history[-1].outcome}")
            time.sleep(0.05)
        form_s.append(time.perf_counter() - t0)
        argv = __import__("shlex").split(export_text(params, "labkit run"))  # the same set: the same work
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, text=True, cwd=base)
        cli_s.append(time.perf_counter() - t0)
    return {"form_s": min(form_s), "cli_s": min(cli_s)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", type=Path, help="a base directory holding the demo (default: a fresh temp one)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--run-repeat", type=int, default=1, help="runs of each kind for the Run comparison")
    parser.add_argument("--header", action="store_true", help="print the table header first")
    parser.add_argument("--out", type=Path, help="append the markdown row to this file")
    args = parser.parse_args(argv)

    from labkit.analysis.datasets import DEMO_FILENAME, write_demo

    loads = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        base = args.base_dir or Path(tmp)
        if not (base / DEMO_FILENAME).exists():
            write_demo(base)
        c = cold(base, DEMO_FILENAME, args.repeat)
        w = warm(base, DEMO_FILENAME, args.repeat)
        r = run_times(base, DEMO_FILENAME, args.run_repeat) if args.run_repeat > 0 else None
    ok = c["total_s"] < TARGET_S
    header = ("| benchmark | cold total (s) | cold import (s) | cold form+header (s) | warm form+header (s) "
              "| header only (s) | target | python |\n|---|---|---|---|---|---|---|---|")
    rows = [f"| form opens on demo data | {c['total_s']:.3f} | {c['import_s']:.3f} | {c['form_s']:.3f} | "
            f"{w['total_s']:.3f} | {w['header_s']:.4f} | < {TARGET_S:g} s {'✅' if ok else '❌'} | "
            f"{platform.python_version()} |"]
    if r is not None:
        ratio = r["form_s"] / r["cli_s"]
        ok = ok and ratio <= RUN_RATIO
        rows.append(f"| Run to topomaps vs labkit run (picard, 15 components, 30 s) | form {r['form_s']:.1f} s | "
                    f"labkit run {r['cli_s']:.1f} s | ratio {ratio:.2f} | | | <= {RUN_RATIO:g}x "
                    f"{'✅' if ratio <= RUN_RATIO else '❌'} | {platform.python_version()} |")
    print(f"load average (1, 5, 15 min) at the start: {loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f}, at the end: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f", {os.cpu_count()} cores", file=sys.stderr)
    if args.header:
        print(header)
    print("\n".join(rows))
    if args.out:
        new = not args.out.exists()
        with args.out.open("a") as fh:
            fh.write((header + "\n" if new else "") + "\n".join(rows) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
