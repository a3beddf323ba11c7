"""The swarm backend next to the docker backend: cold start and warm throughput, one run.

Starts two gateways on bench/projects/swarm, one per backend (`faas up
--no-reload --backend docker|swarm`), and measures, alternating the two so both
see the same machine noise:

1. cold start: `hello` at zero (idle_timeout 2s), timed from the request to its
   200 through the gateway. Before each call both gateways are at zero and quiet:
   the admin API reports no replica starting, ready or draining, no container of
   `hello` runs, and for swarm no task of its service is left (the docker
   backend's warm pools are made ahead, as in normal use).
   Also: where a swarm start goes (request -> task created -> container started
   -> 200, from the engine's timestamps), how long after its 200 each backend is
   back at zero, and each gateway's CPU while idle (swarm polls its tasks);
2. warm throughput: wrk against `warm` (one replica that takes every connection
   at once) through each gateway, at 1 and 32 connections: requests/s, p50, p99.

Prints a table (metric, docker, swarm, swarm/docker) and writes every raw figure
to bench/results/swarm_vs_docker.json. Needs wrk (Debian package `wrk`) and an
engine that is a Swarm manager (`docker swarm init`).

    python bench/swarm_vs_docker.py [--runs 5] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import docker
import docker.errors
import httpx
from common import (
    ADMIN_ANY_PORT,
    REPO,
    free_port,
    function_info,
    replica_containers,
    wait_until_serving,
)

SPEC = REPO / "bench" / "projects" / "swarm" / "functions.yaml"
RESULTS = REPO / "bench" / "results" / "swarm_vs_docker.json"
BACKENDS = ("docker", "swarm")
COLD = "hello"
WARM = "warm"
TERMINAL_TASK_STATES = {"complete", "shutdown", "failed", "rejected", "remove", "orphaned"}
ZERO_TIMEOUT = 60.0


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class Side:
    backend: str
    project: str
    url: str = ""
    log: str = ""
    pid: int = 0
    idle_cpu_percent: float = float("nan")
    """The gateway process's CPU while nothing calls it (`hello` at zero, `warm` idle)."""
    cold_start_ms: list[float] = field(default_factory=list)
    """Request -> 200 through the gateway, `hello` at zero."""
    reported_cold_start_ms: list[float] = field(default_factory=list)
    """The gateway's own `last_cold_start_ms` for the same starts."""
    to_zero_ms: list[float] = field(default_factory=list)
    """From the 200 until the backend is back at zero (includes the 2 s idle_timeout)."""
    warm: dict[int, list[Sample]] = field(default_factory=dict)
    swarm_phases_ms: list[dict[str, float]] = field(default_factory=list)
    """Swarm only: request -> task created -> its container started -> 200 (engine clocks)."""


# -- gateways ------------------------------------------------------------------------


@contextlib.contextmanager
def gateway(side: Side, log_dir: Path) -> Iterator[str]:
    """`faas up --no-reload --backend ...` on a free port; SIGINT (and cleanup) after."""
    port = free_port()
    log_path = log_dir / f"{side.backend}.log"
    side.log = str(log_path)
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "faas", "up", "--no-reload", "--backend", side.backend,
             "-f", str(SPEC), "--project", side.project, "--port", str(port), *ADMIN_ANY_PORT,
             "--log-level", "info"],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(
            process,
            url,
            lambda: f"faas up --backend {side.backend} did not come up:\n{tail(log_path)}",
        )
        side.url = url
        side.pid = process.pid
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            print(f"faas up --backend {side.backend} ignored SIGINT for 90 s; killing it")
            process.kill()
            process.wait(10)


def tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text().splitlines()[-lines:])
    return ""


# -- zero and quiet ------------------------------------------------------------------


def running_containers(client: docker.DockerClient, project: str, function: str) -> list[str]:
    """Running containers of `function` that are replicas (not the docker backend's sandbox)."""
    return [c["Id"] for c in replica_containers(client, project, function)]


def live_tasks(client: docker.DockerClient, project: str, function: str) -> list[str]:
    """Tasks of the function's service that are not finished (any state short of gone)."""
    name = f"faas-{project}-{function}"
    try:
        tasks = client.api.tasks(filters={"service": name})
    except docker.errors.NotFound:
        return []
    return [t["ID"] for t in tasks if t["Status"]["State"] not in TERMINAL_TASK_STATES]


def start_ready(client: docker.DockerClient, project: str, function: str) -> bool:
    """The docker backend is ready for the next start: a warm watchdog waits in the
    project's pools, or (for a function that cannot start warm) a container of its own."""
    labels = [f"faas.project={project}", "faas.role=warm"]
    waiting = client.api.containers(filters={"label": labels})
    if any(".warm-" in c["Names"][0] for c in waiting):
        return True
    found = client.api.containers(
        all=True,
        filters={
            "label": [f"faas.project={project}", f"faas.function={function}"],
            "status": "created",
        },
    )
    return any("faas.role" not in (c.get("Labels") or {}) for c in found)


def at_zero(client: docker.DockerClient, side: Side) -> bool:
    info = function_info(side.url, COLD, SPEC)
    if info["replicas"] or info["starting"] or info["draining"] or info["in_flight"]:
        return False
    if running_containers(client, side.project, COLD):
        return False
    return not (side.backend == "swarm" and live_tasks(client, side.project, COLD))


def wait_for_zero(client: docker.DockerClient, side: Side) -> float:
    """Poll until `side` is at zero; seconds waited."""
    began = time.perf_counter()
    deadline = time.monotonic() + ZERO_TIMEOUT
    while not at_zero(client, side):
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{side.backend}: {COLD} did not return to zero in {ZERO_TIMEOUT:g} s; "
                f"{function_info(side.url, COLD, SPEC)}\n{tail(Path(side.log))}"
            )
        time.sleep(0.05)
    return time.perf_counter() - began


def engine_time(value: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, which `fromisoformat` refuses."""
    head, _, rest = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{rest[:6]:0<6}+00:00").timestamp()


def swarm_phases(
    client: docker.DockerClient, project: str, requested: float, answered: float
) -> dict[str, float]:
    """Where a swarm cold start went, from the newest task of the service and its container."""
    tasks = client.api.tasks(filters={"service": f"faas-{project}-{COLD}"})
    task = max(tasks, key=lambda t: engine_time(t["CreatedAt"]))
    created = engine_time(task["CreatedAt"])
    container_id = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
    started = engine_time(client.api.inspect_container(container_id)["State"]["StartedAt"])
    return {
        "to_task_created_ms": (created - requested) * 1000,
        "to_container_started_ms": (started - created) * 1000,
        "to_200_ms": (answered - started) * 1000,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_idle_cpu(sides: list[Side], seconds: float = 10) -> None:
    """Both gateways at once, over the same window, while neither is called."""
    before = {side.backend: cpu_seconds(side.pid) for side in sides}
    began = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - began
    for side in sides:
        side.idle_cpu_percent = (cpu_seconds(side.pid) - before[side.backend]) / elapsed * 100


def wait_quiet(client: docker.DockerClient, sides: list[Side]) -> None:
    """Both at zero, the docker backend ready to start, and a moment for the engine to settle."""
    for side in sides:
        wait_for_zero(client, side)
        if side.backend == "docker":
            deadline = time.monotonic() + 10
            while not start_ready(client, side.project, COLD) and time.monotonic() < deadline:
                time.sleep(0.05)
    time.sleep(0.5)


def cold_call(http: httpx.Client, side: Side) -> float:
    began = time.perf_counter()
    response = http.get(f"{side.url}/function/{COLD}", timeout=60)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise SystemExit(
            f"{side.backend}: {COLD} answered {response.status_code}: {response.text}\n"
            f"{tail(Path(side.log))}"
        )
    return elapsed


# -- wrk -----------------------------------------------------------------------------


def parse_wrk(output: str) -> Sample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rps is None or errors is not None:
        raise SystemExit(f"wrk failed or got errors:\n{output}")

    def percentile(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return Sample(float(rps.group(1)), percentile("50"), percentile("99"))


def wrk(url: str, connections: int, seconds: float) -> Sample:
    command = ["wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds:g}s", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if result.returncode != 0:
        raise SystemExit(f"wrk exited {result.returncode}: {result.stderr}")
    return parse_wrk(result.stdout)


# -- cleanup -------------------------------------------------------------------------


def leftovers(client: docker.DockerClient, project: str) -> list[str]:
    """Whatever of `project` is still on the engine; removed here, listed for the report."""
    api = client.api
    label = {"label": f"faas.project={project}"}
    left: list[str] = []
    for service in api.services(filters=label):
        left.append(f"service {service['Spec']['Name']}")
        with contextlib.suppress(docker.errors.APIError):
            api.remove_service(service["ID"])
    for container in api.containers(all=True, filters=label):
        left.append(f"container {container['Names'][0].lstrip('/')} ({container['State']})")
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(container["Id"], force=True)
    networks = {n["Id"]: n["Name"] for n in api.networks(filters=label)}
    networks.update(
        {
            n["Id"]: n["Name"]
            for n in api.networks(names=[f"faas-{project}"])
            if n["Name"].startswith(f"faas-{project}")
        }
    )
    for network_id, name in networks.items():
        left.append(f"network {name}")
        for _ in range(50):  # an overlay network stays in use until its tasks are gone
            try:
                api.remove_network(network_id)
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(0.2)
    for secret in api.secrets(filters=label):
        left.append(f"secret {secret['Spec']['Name']}")
        with contextlib.suppress(docker.errors.APIError):
            api.remove_secret(secret["ID"])
    return left


def settle_cleanup(client: docker.DockerClient, project: str, timeout: float = 30) -> list[str]:
    """Give `faas up`'s own teardown time to finish (swarm removes tasks asynchronously)."""
    deadline = time.monotonic() + timeout
    label = {"label": f"faas.project={project}"}
    api = client.api
    while time.monotonic() < deadline:
        if not (
            api.services(filters=label)
            or api.containers(all=True, filters=label)
            or api.networks(filters=label)
        ):
            return []
        time.sleep(0.5)
    return leftovers(client, project)


# -- report --------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rows(sides: dict[str, Side], connections: list[int]) -> list[tuple[str, float, float]]:
    docker_side, swarm_side = sides["docker"], sides["swarm"]
    table: list[tuple[str, float, float]] = []
    for label, pick in (
        ("cold start p50, ms", lambda s: median(s.cold_start_ms)),
        ("cold start min, ms", lambda s: min(s.cold_start_ms)),
        ("cold start max, ms", lambda s: max(s.cold_start_ms)),
        ("cold start p50 (gateway's own), ms", lambda s: median(s.reported_cold_start_ms)),
        ("200 -> back at zero p50, ms", lambda s: median(s.to_zero_ms)),
        ("idle gateway CPU, % of a core", lambda s: s.idle_cpu_percent),
    ):
        table.append((label, pick(docker_side), pick(swarm_side)))
    for phase, label in (
        ("to_task_created_ms", "  swarm: request -> task created p50, ms"),
        ("to_container_started_ms", "  swarm: task created -> container started p50, ms"),
        ("to_200_ms", "  swarm: container started -> 200 p50, ms"),
    ):
        table.append((label, float("nan"), median([p[phase] for p in swarm_side.swarm_phases_ms])))
    for conns in connections:
        for label, attr in (("req/s", "rps"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms")):
            values = [
                median([getattr(sample, attr) for sample in side.warm[conns]])
                for side in (docker_side, swarm_side)
            ]
            table.append((f"warm {conns:>2} conn {label}", values[0], values[1]))
    return table


def print_table(table: list[tuple[str, float, float]]) -> None:
    width = max(len(label) for label, _, _ in table)
    print(f"{'metric':<{width}} {'docker':>10} {'swarm':>10} {'swarm/docker':>13}")
    for label, docker_value, swarm_value in table:
        digits = 3 if "p50 ms" in label or "p99 ms" in label else 1
        if docker_value != docker_value:  # NaN: a swarm-only figure
            print(f"{label:<{width}} {'':>10} {swarm_value:>10.{digits}f}")
            continue
        ratio = swarm_value / docker_value if docker_value else float("nan")
        print(
            f"{label:<{width}} {docker_value:>10.{digits}f} {swarm_value:>10.{digits}f} "
            f"{ratio:>12.2f}x"
        )


# -- main ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts per backend")
    parser.add_argument("--seconds", type=float, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per backend and cell")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    client = docker.from_env()
    swarm_info = client.info().get("Swarm") or {}
    if swarm_info.get("LocalNodeState") != "active" or not swarm_info.get("ControlAvailable"):
        raise SystemExit("this engine is not a Swarm manager (`docker swarm init`)")
    tag = uuid.uuid4().hex[:6]
    sides = {name: Side(name, f"bench-svd-{name}-{tag}") for name in BACKENDS}
    began = time.time()
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per call
    print(
        f"cpus: {os.cpu_count()}; {args.runs} cold starts and {args.rounds} x "
        f"{args.seconds:g}s wrk runs per backend and cell, alternating"
    )
    log_dir = Path(tempfile.mkdtemp(prefix="swarm-vs-docker-"))
    left: dict[str, list[str]] = {}
    try:
        with (
            # One after the other: the first makes the project's admin token.
            gateway(sides["docker"], log_dir),
            gateway(sides["swarm"], log_dir),
            httpx.Client(timeout=1, limits=limits, trust_env=False) as http,
        ):
            both = list(sides.values())
            for side in both:  # first calls wait out image checks
                cold_call(http, side)
                http.get(f"{side.url}/function/{WARM}", timeout=60).raise_for_status()
            for run in range(args.runs):
                order = both if run % 2 == 0 else both[::-1]
                for side in order:
                    wait_quiet(client, both)
                    requested = time.time()
                    side.cold_start_ms.append(cold_call(http, side) * 1000)
                    if side.backend == "swarm":
                        side.swarm_phases_ms.append(
                            swarm_phases(client, side.project, requested, time.time())
                        )
                    info = function_info(side.url, COLD, SPEC)
                    reported = info["last_cold_start_ms"]
                    side.reported_cold_start_ms.append(
                        float(reported) if isinstance(reported, int | float) else float("nan")
                    )
                    side.to_zero_ms.append(wait_for_zero(client, side) * 1000)
                    print(
                        f"  cold run {run + 1} {side.backend:<6} "
                        f"{side.cold_start_ms[-1]:7.1f} ms   (gateway: "
                        f"{side.reported_cold_start_ms[-1]:.1f} ms; back at zero "
                        f"{side.to_zero_ms[-1]:.0f} ms after)",
                        flush=True,
                    )
            wait_quiet(client, both)
            measure_idle_cpu(both)
            print(
                "  idle gateway CPU: "
                + ", ".join(f"{s.backend} {s.idle_cpu_percent:.1f}%" for s in both),
                flush=True,
            )
            for side in both:
                wrk(f"{side.url}/function/{WARM}", 8, 2)  # warm the gateway's connection pool
            for conns in args.connections:
                for round_ in range(args.rounds):
                    order = both if round_ % 2 == 0 else both[::-1]
                    for side in order:
                        sample = wrk(f"{side.url}/function/{WARM}", conns, args.seconds)
                        side.warm.setdefault(conns, []).append(sample)
                        print(
                            f"  wrk {conns:>2} conn {side.backend:<6} {sample.rps:8.0f} req/s "
                            f"p50 {sample.p50_ms:.3f} ms  p99 {sample.p99_ms:.3f} ms",
                            flush=True,
                        )
    finally:
        for side in sides.values():
            left[side.backend] = settle_cleanup(client, side.project)
            if left[side.backend]:
                print(f"{side.backend}: faas up left {', '.join(left[side.backend])} (removed)")
            for queue in (SPEC.parent / ".faas").glob(f"queue-{side.project}.db*"):
                queue.unlink(missing_ok=True)  # each run's projects are new: drop their queues
    table = rows(sides, args.connections)
    print()
    print_table(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "started": began,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "engine": client.version().get("Version"),
                "arguments": vars(args),
                "sides": {
                    name: {
                        **{k: v for k, v in asdict(side).items() if k != "warm"},
                        "warm": {
                            str(conns): [asdict(sample) for sample in samples]
                            for conns, samples in side.warm.items()
                        },
                    }
                    for name, side in sides.items()
                },
                "table": [
                    {
                        "metric": label,
                        "docker": None if docker_value != docker_value else docker_value,
                        "swarm": swarm_value,
                        "ratio": swarm_value / docker_value
                        if docker_value and docker_value == docker_value
                        else None,
                    }
                    for label, docker_value, swarm_value in table
                ],
                "left_after_shutdown": left,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"raw figures: {RESULTS.relative_to(REPO)}; gateway logs: {log_dir}")


if __name__ == "__main__":
    main()
