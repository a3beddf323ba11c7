"""Cold starts on Swarm with and without warm services, next to the docker backend.

Starts three gateways (`faas up --no-reload`): the docker backend, and the swarm
backend with a warm service (`gateway.warm_tasks: 2`, bench/projects/swarm-cold-warm)
and without (`warm_tasks: 0`, bench/projects/swarm-cold-nowarm). Each round calls
`hello` at zero once on each, in turn, so all three see the same machine noise;
before each call the function is at zero (no replica starting, ready or draining, no
task of its service left) and the backend is ready to start it warm (the docker
backend's warm pool holds a watchdog; the warm service runs all its tasks, the one
retired after the previous start replaced). A cold start is timed from the request
to its 200 through the gateway.

Prints p50 and p90 for each and the ratios to docker; writes the raw figures to
bench/results/swarm_cold_start.json. Needs an engine that is a Swarm manager
(`docker swarm init`). About two minutes with the default 7 rounds.

    python bench/swarm_cold_start.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
import docker.errors
import httpx
from common import ADMIN_ANY_PORT, REPO, free_port, function_info, wait_until_serving

WARM_SPEC = REPO / "bench" / "projects" / "swarm-cold-warm" / "functions.yaml"
NOWARM_SPEC = REPO / "bench" / "projects" / "swarm-cold-nowarm" / "functions.yaml"
RESULTS = REPO / "bench" / "results" / "swarm_cold_start.json"
COLD = "hello"
QUIET_TIMEOUT = 60.0
LIVE = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}


@dataclass
class Side:
    name: str
    backend: str
    spec: Path
    project: str
    url: str = ""
    log: str = ""
    cold_start_ms: list[float] = field(default_factory=list)


@contextlib.contextmanager
def gateway(side: Side, log_dir: Path) -> Iterator[None]:
    port = free_port()
    log_path = log_dir / f"{side.name}.log"
    side.log = str(log_path)
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "faas", "up", "--no-reload", "--backend", side.backend,
             "-f", str(side.spec), "--project", side.project, "--port", str(port),
             *ADMIN_ANY_PORT, "--log-level", "info"],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    side.url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, side.url, lambda: f"{side.name} did not come up: {log_path}")
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def live_tasks(client: docker.DockerClient, service: str) -> list[dict[str, object]]:
    try:
        tasks = client.api.tasks(filters={"service": service})
    except docker.errors.NotFound:
        return []
    return [t for t in tasks if t["Status"]["State"] in LIVE]


def ready_to_start(client: docker.DockerClient, side: Side) -> bool:
    """`hello` at zero, and the backend ready for a warm start if it makes them."""
    info = function_info(side.url, COLD, side.spec)
    if info["replicas"] or info["starting"] or info["draining"] or info["in_flight"]:
        return False
    project = [f"faas.project={side.project}"]
    if side.backend == "docker":
        warm = client.api.containers(filters={"label": [*project, "faas.role=warm"]})
        return any(".warm-" in c["Names"][0] for c in warm)
    if live_tasks(client, f"faas-{side.project}-{COLD}"):
        return False
    if side.spec != WARM_SPEC:
        return True
    services = client.api.services(filters={"label": [*project, "faas.role=warm"]})
    if len(services) != 1:
        return False
    tasks = live_tasks(client, services[0]["ID"])
    wanted = services[0]["Spec"]["Mode"]["Replicated"]["Replicas"]
    return len(tasks) == wanted and all(t["Status"]["State"] == "running" for t in tasks)


def wait_ready(client: docker.DockerClient, side: Side) -> None:
    deadline = time.monotonic() + QUIET_TIMEOUT
    while not ready_to_start(client, side):
        if time.monotonic() > deadline:
            raise SystemExit(f"{side.name}: not back at zero in {QUIET_TIMEOUT:g} s ({side.log})")
        time.sleep(0.05)


def cold_call(http: httpx.Client, side: Side) -> float:
    began = time.perf_counter()
    response = http.get(f"{side.url}/function/{COLD}", timeout=60)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise SystemExit(f"{side.name}: {response.status_code} {response.text} ({side.log})")
    return elapsed * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    client = docker.from_env()
    if client.info().get("Swarm", {}).get("LocalNodeState") != "active":
        raise SystemExit("this engine is not in a swarm: run `docker swarm init` first")
    run = uuid.uuid4().hex[:6]
    sides = [
        Side("docker", "docker", WARM_SPEC, f"bc-d-{run}"),
        Side("swarm+warm", "swarm", WARM_SPEC, f"bc-w-{run}"),
        Side("swarm", "swarm", NOWARM_SPEC, f"bc-s-{run}"),
    ]
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
        for side in sides:
            stack.enter_context(gateway(side, Path(logs)))
        with httpx.Client(trust_env=False) as http:
            for round_ in range(args.rounds):
                for side in sides:
                    wait_ready(client, side)
                    time.sleep(0.5)  # the engine settles; the gateway has listed the tasks
                    side.cold_start_ms.append(cold_call(http, side))
                print(
                    f"round {round_ + 1}/{args.rounds}: "
                    + ", ".join(f"{s.name} {s.cold_start_ms[-1]:.0f} ms" for s in sides),
                    flush=True,
                )
    docker_p50 = statistics.median(sides[0].cold_start_ms)
    print(f"\ncold start of `hello` at zero, {args.rounds} rounds, through the gateway")
    print(f"{'':12} {'p50 ms':>8} {'p90 ms':>8} {'p50 / docker':>13}")
    for side in sides:
        p50 = statistics.median(side.cold_start_ms)
        p90 = percentile(side.cold_start_ms, 0.9)
        print(f"{side.name:12} {p50:8.1f} {p90:8.1f} {p50 / docker_p50:12.1f}x")
    warm, cold = (statistics.median(s.cold_start_ms) for s in sides[1:])
    print(f"swarm without / with the warm service: {cold / warm:.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.node(),
                "rounds": args.rounds,
                "sides": [asdict(side) for side in sides],
            },
            indent=2,
            default=str,
        )
    )
    print(f"raw figures: {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
