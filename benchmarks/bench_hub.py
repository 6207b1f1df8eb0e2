"""Hub service costs: submit latency through the service vs a direct create, and list/status at 100 users x 20 Jobs.

Every request's token is checked with the hub afresh (no cache), as the service does since
issue 17; before that, HubAuth's cache answered for up to 60 s.

Real parts: JupyterHub + configurable-http-proxy, the labkit service as its own process
(``labkit hub-service``), kmock's Kubernetes emulator as the cluster (tests/hub_fixtures.py).

    PYTHONPATH=$PWD python benchmarks/bench_hub.py [--submits 40] [--users 100] [--jobs 20]

Prints a Markdown table (paste into benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import kmock  # noqa: E402
import requests  # noqa: E402
from cluster_fixtures import NS, Emulator  # noqa: E402
from hub_fixtures import Hub  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from labkit.params import IcaParams  # noqa: E402
from labkit.runners.cluster.manifests import build_job  # noqa: E402
from labkit.runners.cluster.settings import ClusterSettings  # noqa: E402


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"{statistics.median(values) * 1000:.1f} / {p95 * 1000:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submits", type=int, default=40)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=20)
    args = ap.parse_args()
    emu = Emulator()
    # U users x J Jobs already in the namespace when the service starts (put in the emulator's store:
    # creating them one by one through kmock's HTTP API slows down with its request history)
    settings = ClusterSettings.from_dict({"namespace": NS, "image": "registry.lab.example/labkit:0.1.0",
                                         "storage": {"nfs_server": "nfs.lab.example"}})
    users = [f"user{u:03d}" for u in range(args.users)]
    existing = [build_job(IcaParams(n_components=2 + j), settings, user, f"{user}-{j}")
                for user in users for j in range(args.jobs)]

    def store() -> None:
        for job in existing:
            emu.kmock.objects[kmock.resource("batch", "v1", "jobs"), NS, job["metadata"]["name"]] = job

    emu.run(store)
    hub = Hub(emu, Path(tempfile.mkdtemp(prefix="bench-hub-")))
    try:
        batch = k8s.BatchV1Api(emu.api_client())
        rows = []

        # 1. submit: a direct create of the same manifest, vs POST api/runs through the proxy and to the service
        direct, via_proxy, via_service = [], [], []
        for i in range(args.submits):
            job = build_job(IcaParams(n_components=2 + i), settings, "direct", f"d{i}")
            t = time.perf_counter()
            batch.create_namespaced_job(NS, job)
            direct.append(time.perf_counter() - t)
        session = requests.Session()
        headers = {"Authorization": f"token {hub.tokens['alice']}"}
        service = f"http://127.0.0.1:{hub.service_port}/services/labkit/"
        session.get(hub.service_url + "api/runs", headers=headers)  # warm-up (connections); every request asks the hub
        for i in range(args.submits):
            for base, out in ((hub.service_url, via_proxy), (service, via_service)):
                body = {"params": {"n_components": 2 + i, "random_state": len(out) + (0 if out is via_proxy else 9999)},
                        "run_id": f"{'p' if out is via_proxy else 's'}{i}"}
                t = time.perf_counter()
                resp = session.post(base + "api/runs", json=body, headers=headers)
                out.append(time.perf_counter() - t)
                assert resp.status_code == 201, resp.text
        added_proxy = statistics.median(via_proxy) - statistics.median(direct)
        added_service = statistics.median(via_service) - statistics.median(direct)
        rows += [("submit: direct `create_namespaced_job`", ms(direct), ""),
                 ("submit: `POST api/runs` to the service", ms(via_service), f"+{added_service * 1000:.1f} ms"),
                 ("submit: `POST api/runs` through the hub's proxy", ms(via_proxy), f"+{added_proxy * 1000:.1f} ms")]

        # 2. list/status: U users x J Jobs already in the namespace
        tokens = {u: hub.user_token(u) for u in users}
        lists, statuses = [], []
        for user in users:
            h = {"Authorization": f"token {tokens[user]}"}
            session.get(hub.service_url + "api/runs", headers=h)  # warm-up; the token is checked afresh every time
            t = time.perf_counter()
            runs = session.get(hub.service_url + "api/runs", headers=h).json()["runs"]
            lists.append(time.perf_counter() - t)
            assert len(runs) == args.jobs, len(runs)
            t = time.perf_counter()
            assert session.get(hub.service_url + f"api/runs/{runs[0]['name']}", headers=h).status_code == 200
            statuses.append(time.perf_counter() - t)
        requests_seen = emu.requests()
        watches = sum(1 for r in requests_seen if dict(r.params).get("watch") == "true")
        list_calls = sum(1 for r in requests_seen if r.method == "GET" and r.url.path.endswith(("/jobs", "/pods"))
                         and dict(r.params).get("watch") != "true")
        rows += [(f"`GET api/runs` ({args.users} users x {args.jobs} Jobs, through the proxy)", ms(lists), ""),
                 ("`GET api/runs/<name>` (same)", ms(statuses), "")]
        print(f"\n{args.users * args.jobs} Jobs in the namespace; API requests by the service for "
              f"all of it: {list_calls} lists, {watches} watch requests (Jobs + pods, renewed every "
              f"{ClusterSettings.load(hub.settings_file).watch_timeout:.0f} s)\n")
        print("| measurement | median / p95 (ms) | added vs direct (median) |")
        print("|---|---|---|")
        for name, value, added in rows:
            print(f"| {name} | {value} | {added} |")
    finally:
        hub.close()
        emu.close()


if __name__ == "__main__":
    main()
