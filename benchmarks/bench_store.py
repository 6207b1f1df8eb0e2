"""bench_store: what the artifact store uploads for a sweep, and how fast a result comes home.

(1) Bytes uploaded for a 90-run sweep of one recording: every run's submission pushes its
    recording (``push_recording``, content addressed), so the recording goes up once; beside it
    what 90 plain copies would upload.
(2) Fetch throughput from a loopback S3 server (moto's, as the tests use): ``fetch_run`` (manifest,
    every file's SHA-256 checked, a hidden folder renamed into place) against a plain ``aws s3 cp
    --recursive``-style copy of the same folder with the same boto3 client (list the prefix,
    download each object). Target: fetch within 1.2x of the plain copy (median of the repeats).

    python benchmarks/bench_store.py [--runs 90] [--repeats 5] [--folder-mb 40] [--write-readme]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
MARK = ("<!-- bench_store -->", "<!-- /bench_store -->")


def _server() -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def _result_folder(base: Path, run_id: str, megabytes: int) -> Path:
    """A result folder as labkit writes one, with an ICA file of ``megabytes`` and a few figures."""
    import json

    from labkit.params import IcaParams
    from labkit.results.folder import RunFolder
    from labkit.results.layout import ICA_FILE, METRICS_FILE

    folder = RunFolder.create(IcaParams(base_dir=str(base), raw_file_path="labkit-demo/demo_raw.fif"), run_id)
    folder.start()
    folder.file(ICA_FILE).write_bytes(os.urandom(megabytes << 20))
    for i in range(12):
        folder.file(f"topomaps_{i}.png").write_bytes(os.urandom(150_000))
    folder.file(METRICS_FILE).write_text(json.dumps({"method": "fastica", "fit_time_s": 1.0}))
    folder.succeed()
    return folder.path


def bytes_for_sweep(store, base: Path, runs: int) -> dict:
    from labkit.analysis.datasets import DEMO_FILENAME, write_demo
    from labkit.results.store import push_recording

    write_demo(base)
    raw = base / DEMO_FILENAME
    uploaded = sum(push_recording(store, raw).uploaded for _ in range(runs))
    size = raw.stat().st_size
    stored = len([k for k in store.keys("recordings/") if "/files/" in k])
    return {"runs": runs, "recording_bytes": size, "uploaded": uploaded, "naive": runs * size, "objects": stored}


def plain_copy(client, bucket: str, prefix: str, dest: Path, transfer) -> None:
    """``aws s3 cp --recursive``: list the prefix, download every object (the same client and transfer config)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target), Config=transfer)


def fetch_speed(store, work: Path, repeats: int, megabytes: int) -> dict:
    from labkit.results.store import fetch_run, upload_folder

    pod = work / "pod"
    pod.mkdir()
    folder = _result_folder(pod, "bench-fetch-1", megabytes)
    manifest = upload_folder(store, folder)
    total = sum(f["size"] for f in manifest["files"])
    prefix = f"{store.prefix}/runs/bench-fetch-1/uploads/{manifest['upload']}/"
    ours, plain = [], []
    for i in range(repeats):
        for arm in ("plain", "fetch") if i % 2 else ("fetch", "plain"):  # alternate: neither always goes first
            dest = work / f"{arm}-{i}"
            dest.mkdir()
            t0 = time.perf_counter()
            if arm == "fetch":
                fetch_run(store, "bench-fetch-1", dest)
                ours.append(time.perf_counter() - t0)
            else:
                plain_copy(store.client, store.bucket, prefix, dest, store.transfer)
                plain.append(time.perf_counter() - t0)
            shutil.rmtree(dest)
    o, p = statistics.median(ours), statistics.median(plain)
    return {"bytes": total, "files": len(manifest["files"]), "fetch_s": o, "plain_s": p, "ratio": o / p,
            "fetch_mb_s": total / o / 1e6, "plain_mb_s": total / p / 1e6}


def block(sweep: dict, speed: dict, repeats: int) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ok = "✅" if speed["ratio"] <= 1.2 else "❌"
    once = "✅" if sweep["uploaded"] == sweep["recording_bytes"] else "❌"
    return f"""{MARK[0]}
## bench_store: the artifact store (bytes uploaded by a sweep; fetch throughput)

`python benchmarks/bench_store.py` (moto's S3 server on loopback, boto3 {_version('boto3')}).
Last run {when} on {os.cpu_count()} cores, Python {platform.python_version()}; medians of {repeats} alternating repeats.

| benchmark | labkit | plain | ratio | target |
|---|---:|---:|---:|---|
| recording bytes uploaded by a {sweep['runs']}-run sweep | {sweep['uploaded']:,} (once) | {sweep['naive']:,} ({sweep['runs']} copies) | {sweep['uploaded'] / sweep['naive']:.4f} | the recording once {once} |
| fetch a result folder ({speed['files']} files, {speed['bytes'] / 1e6:.1f} MB), s | {speed['fetch_s']:.3f} ({speed['fetch_mb_s']:.0f} MB/s) | {speed['plain_s']:.3f} ({speed['plain_mb_s']:.0f} MB/s) | {speed['ratio']:.2f} | <= 1.2x {ok} |

labkit's fetch also checks every file's SHA-256 against the manifest and renames a hidden folder into
place; the plain copy (`aws s3 cp --recursive`-style: list, download each object) checks nothing.
{MARK[1]}"""


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def write_readme(text: str) -> None:
    current = README.read_text()
    if MARK[0] in current:
        head, rest = current.split(MARK[0], 1)
        current = head + text + rest.split(MARK[1], 1)[1]
    else:
        current = current.rstrip() + "\n\n" + text + "\n"
    README.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder-mb", type=int, default=40)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server, endpoint = _server()
    try:
        from labkit.results.s3 import open_store

        store = open_store("s3://labkit-bench/users/bench", endpoint=endpoint, region="us-east-1")
        store.client.create_bucket(Bucket="labkit-bench")
        with tempfile.TemporaryDirectory() as tmp:
            sweep = bytes_for_sweep(store, Path(tmp) / "home", args.runs)
            speed = fetch_speed(store, Path(tmp), args.repeats, args.folder_mb)
    finally:
        server.stop()
    text = block(sweep, speed, args.repeats)
    print(text)
    if args.write_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
