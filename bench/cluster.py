"""Swarm across nodes, next to the docker backend on this host: one run, side by side.

Brings up the multi-node test cluster (tests/cluster/nodes.py: three managers, two
workers, Docker engines in containers, a registry and NATS) and deploys
bench/projects/cluster twice with `faas deploy`:

- `across`: functions placed on the workers (`node.role==worker`), images from the
  registry, two gateway tasks on two managers sharing NATS;
- `local`: no registry, so the gateway and (placed by hostname) its functions run
  on the first manager: the same node.

and serves bench/projects/swarm with `faas up --backend docker` on this host.
Then, alternating so all sides see the same noise:

1. cold start: `hello` at zero (its service at 0 and no task left, and the warm
   task the previous start claimed retired and replaced; for docker no replica),
   timed from the request to its 200: docker backend vs `across` (gateway on a
   manager, the task on a worker: a warm task, see runtime/supply/warm_tasks.py);
2. warm throughput with wrk at 1 and 32 connections against `warm` (one replica):
   gateway -> task on another node (`across`) vs on the same node (`local`);
3. events/s: EVENTS events published over both `across` gateways, timed until the
   recorder has heard of every one; then again with one gateway task.

Prints a table with ratios and writes bench/results/cluster.json.

    python bench/cluster.py [--runs 5] [--seconds 5] [--events 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import docker
import httpx
import yaml
from common import REPO, Sample, function_info, gateway, wrk

sys.path.insert(0, str(REPO))
from tests.cluster.harness import Deployed, Recorder, deploy, faas_on, remove
from tests.cluster.nodes import Cluster, running_cluster

PROJECT = REPO / "bench" / "projects" / "cluster"
DOCKER_SPEC = REPO / "bench" / "projects" / "swarm" / "functions.yaml"
RESULTS = REPO / "bench" / "results" / "cluster.json"
ZERO_TIMEOUT = 60.0


@dataclass
class Results:
    cold_docker: list[float] = field(default_factory=list)
    cold_across: list[float] = field(default_factory=list)
    warm_across: dict[int, list[Sample]] = field(default_factory=dict)
    warm_local: dict[int, list[Sample]] = field(default_factory=dict)
    events_two: list[float] = field(default_factory=list)
    events_one: list[float] = field(default_factory=list)


def project_copy(root: Path, cluster_block: dict[str, Any]) -> Path:
    """bench/projects/cluster with `cluster_block`, in a directory of its own."""
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns(".faas"))
    spec = yaml.safe_load((root / "functions.yaml").read_text())
    spec["cluster"] = {"backend": "swarm", **cluster_block}
    (root / "functions.yaml").write_text(yaml.safe_dump(spec))
    return root


def service_tasks(cluster: Cluster, service: str) -> list[dict[str, Any]]:
    with contextlib.closing(cluster.manager.engine()) as engine:
        return list(engine.api.tasks(filters={"service": service, "desired-state": "running"}))


def swarm_at_zero(cluster: Cluster, service: str) -> bool:
    with contextlib.closing(cluster.manager.engine()) as engine:
        replicas = engine.api.inspect_service(service)["Spec"]["Mode"]["Replicated"]["Replicas"]
        stopping = engine.api.tasks(filters={"service": service})
    return replicas == 0 and not [
        t for t in stopping if t["Status"]["State"] in ("running", "starting", "preparing")
    ]


def warm_tasks(cluster: Cluster, project: str) -> tuple[frozenset[str], int]:
    """(ids of the running tasks of the project's warm services, how many they want)."""
    with contextlib.closing(cluster.manager.engine()) as engine:
        label = [f"faas.project={project}", "faas.role=warm"]
        found = engine.api.services(filters={"label": label})
        wanted = sum(s["Spec"]["Mode"]["Replicated"]["Replicas"] for s in found)
        ids = frozenset(
            t["ID"]
            for s in found
            for t in engine.api.tasks(filters={"service": s["ID"], "desired-state": "running"})
            if t["Status"]["State"] == "running"
        )
    return ids, wanted


def warm_refilled(cluster: Cluster, project: str, before: frozenset[str]) -> bool:
    """The warm task the last start claimed was retired and replaced: every warm task
    runs, and they are not the ones that ran at that start."""
    ids, wanted = warm_tasks(cluster, project)
    return len(ids) == wanted and ids != before


def until(condition: Any, what: str, timeout: float = ZERO_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def cold_call(url: str) -> float:
    began = time.perf_counter()
    response = httpx.get(f"{url}/function/hello", timeout=60, trust_env=False)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise SystemExit(f"hello answered {response.status_code} at {url}: {response.text}")
    return elapsed


async def publish_all(urls: list[str], count: int, tag: str) -> set[str]:
    """Publish `count` events over `urls`; returns their event ids."""
    ids: set[str] = set()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def publish(index: int) -> None:
            url = f"{urls[index % len(urls)]}/events/jobs"
            async with session.post(url, json={"n": index, "tag": tag}) as response:
                if response.status != 202:
                    raise SystemExit(f"publishing answered {response.status}")
                ids.add((await response.json())["event_id"])

        await asyncio.gather(*(publish(i) for i in range(count)))
    return ids


def events_per_second(urls: list[str], recorder: Recorder, count: int, tag: str) -> float:
    began = time.time()
    ids = asyncio.run(publish_all(urls, count, tag))
    until(lambda: ids <= {run.key for run in recorder.of("finish")}, "the events", 300)
    done = max(run.at for run in recorder.of("finish") if run.key in ids)
    return count / (done - began)


def scale_gateways(cluster: Cluster, project: str, replicas: int) -> None:
    with contextlib.closing(cluster.manager.engine()) as engine:
        engine.services.get(f"faas-{project}-gateway").scale(replicas)


def serving(cluster: Cluster, project: str) -> list[str]:
    names = {
        t["NodeID"]
        for t in service_tasks(cluster, f"faas-{project}-gateway")
        if t["Status"]["State"] == "running"
    }
    with contextlib.closing(cluster.manager.engine()) as engine:
        hosts = [engine.nodes.get(n).attrs["Description"]["Hostname"] for n in names]
    urls = [cluster.node(host).gateway_url for host in sorted(hosts)]
    return [u for u in urls if answers(u)]


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(results: Results, connections: list[int]) -> list[tuple[str, float, float]]:
    rows = [
        (
            "cold start p50 (ms): docker | swarm, task on a worker",
            median(results.cold_docker) * 1000,
            median(results.cold_across) * 1000,
        )
    ]
    for c in connections:
        across = statistics.median(s.rps for s in results.warm_across[c])
        local = statistics.median(s.rps for s in results.warm_local[c])
        rows.append((f"warm req/s at {c} conn: same node | other node", local, across))
        across_p50 = statistics.median(s.p50_ms for s in results.warm_across[c])
        local_p50 = statistics.median(s.p50_ms for s in results.warm_local[c])
        rows.append((f"warm p50 ms at {c} conn: same node | other node", local_p50, across_p50))
    rows.append(("events/s: one gateway | two gateways on two managers",
                 median(results.events_one), median(results.events_two)))  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{width}}  {'first':>10}  {'second':>10}  {'second/first':>12}")
    for name, first, second in rows:
        print(f"{name:<{width}}  {first:>10.1f}  {second:>10.1f}  {second / first:>12.2f}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts per side")
    parser.add_argument("--seconds", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="wrk rounds per side")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--event-rounds", type=int, default=2)
    args = parser.parse_args()
    connections = [1, 32]
    results = Results(
        warm_across={c: [] for c in connections}, warm_local={c: [] for c in connections}
    )
    host = docker.from_env()
    work = Path(tempfile.mkdtemp(prefix="faas-bench-cluster-"))
    started = time.monotonic()
    with running_cluster(host, managers=3, workers=2) as cluster:
        print(f"cluster up in {time.monotonic() - started:.1f} s", flush=True)
        recorder = Recorder(cluster.host_address, work)
        across_root = project_copy(work / "across", {
            "registry": "${REGISTRY}", "queue": "nats", "nats_url": "${NATS_URL}",
            "placement": ["node.role==worker"],
        })  # fmt: skip
        local_root = project_copy(
            work / "local", {"placement": [f"node.hostname=={cluster.manager.name}"]}
        )
        across = deploy(
            cluster,
            across_root,
            work / "across-deployed",
            "across",
            "--replicas",
            "2",
            REGISTRY=cluster.registry,
            NATS_URL=cluster.nats_url,
            SINK_URL=recorder.url,
        )
        local = deploy_local(cluster, local_root, work / "local-deployed", recorder.url)
        print(f"deployed: across {across.urls}, local {local.urls}", flush=True)
        try:
            with gateway(DOCKER_SPEC, f"bench-cluster-{int(time.time())}") as docker_url:
                # 1. cold starts, alternating
                claimed: frozenset[str] = frozenset()
                for run in range(args.runs):
                    until(
                        lambda: function_info(docker_url, "hello", DOCKER_SPEC)["replicas"] == 0,  # type: ignore[index]
                        "docker's hello at zero",
                    )
                    results.cold_docker.append(cold_call(docker_url))
                    until(
                        lambda: swarm_at_zero(cluster, "faas-across-hello"), "across hello at zero"
                    )
                    # the task the last start claimed is retired, a fresh one runs
                    until(partial(warm_refilled, cluster, "across", claimed), "the warm tasks")
                    time.sleep(1.0)  # the gateways' listing catches up with the engine
                    claimed, _ = warm_tasks(cluster, "across")
                    results.cold_across.append(cold_call(across.urls[0]))
                    print(
                        f"cold {run + 1}: docker {results.cold_docker[-1] * 1000:.0f} ms, "
                        f"swarm {results.cold_across[-1] * 1000:.0f} ms",
                        flush=True,
                    )
            # 2. warm throughput, alternating
            for _ in range(args.rounds):
                for c in connections:
                    results.warm_local[c].append(
                        wrk(f"{local.urls[0]}/function/warm", c, args.seconds, {}, strict=True)
                    )
                    results.warm_across[c].append(
                        wrk(f"{across.urls[0]}/function/warm", c, args.seconds, {}, strict=True)
                    )
            print("warm throughput measured", flush=True)
            # 3. events/s with two gateways, then one
            for index in range(args.event_rounds):
                urls = serving(cluster, "across")
                results.events_two.append(
                    events_per_second(urls, recorder, args.events, f"two{index}")
                )
            print(f"events/s with two gateways: {results.events_two}", flush=True)
            scale_gateways(cluster, "across", 1)
            until(
                lambda: (
                    len(serving(cluster, "across")) == 1
                    and len(service_tasks(cluster, "faas-across-gateway")) == 1
                ),
                "one gateway",
                90,
            )
            for index in range(args.event_rounds):
                urls = serving(cluster, "across")
                results.events_one.append(
                    events_per_second(urls, recorder, args.events, f"one{index}")
                )
        finally:
            recorder.close()
            for deployed in (across, local):
                remove(cluster, deployed)
    rows = print_table(results, connections)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": platform.node(),
        "rows": rows,
        "raw": {
            "cold_docker": results.cold_docker, "cold_across": results.cold_across,
            "warm_across": {c: [asdict(s) for s in v] for c, v in results.warm_across.items()},
            "warm_local": {c: [asdict(s) for s in v] for c, v in results.warm_local.items()},
            "events_two": results.events_two, "events_one": results.events_one,
        },
    }, indent=1))  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    print(f"raw figures: {RESULTS.relative_to(REPO)}")


LOCAL_PORT = 18090


def deploy_local(cluster: Cluster, root: Path, destination: Path, sink: str) -> Deployed:
    """`local` without a registry: its gateway is pinned to the node that built it (the
    first manager), and its functions are placed there too. On a port of its own:
    `across` has a gateway task on that node too."""
    shutil.copytree(root, destination)
    (destination / ".env").write_text(f"SINK_URL={sink}\n")
    faas_on(cluster, "deploy", "--project", "local", "--port", str(LOCAL_PORT),
            "--publish-mode", "host", cwd=destination, timeout=600)  # fmt: skip
    return Deployed(destination, "local", [f"http://{cluster.manager.address}:{LOCAL_PORT}"])


if __name__ == "__main__":
    main()
