"""Cold start: zero -> first 200 through the gateway, next to Docker's own start, same run.

Baseline: a container of the same function image, created ahead of time and
running a minimal standard-library HTTP server instead of the watchdog, on the
same kind of network; timed from `start` to its first HTTP 200.
Ours, two ways, each `hello` at zero timed from the request to its 200 through
the gateway:
- warm pool (the default): the gateway gives the function to a pre-started
  watchdog that belongs to no function (runtime/warm_pool.py);
- containers (`gateway.warm_pool: 0`): a container of the function's own,
  created (with a network sandbox of its own) and started at the cold start:
  nothing is made ahead for a function at zero.
Runs alternate, so all three see the same machine noise. Also reported: what a
function at zero holds, and what the warm pool holds for the whole project.

    python bench/cold_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass, field

import docker
import httpx
from common import REPO, function_info, gateway

SPEC = REPO / "bench" / "projects" / "coldstart" / "functions.yaml"
CONTAINERS_SPEC = SPEC.with_name("functions-containers.yaml")
MINIMAL_SERVER = (
    "import http.server as s\n"
    "class H(s.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()\n"
    "        self.wfile.write(b'ok')\n"
    "s.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
)


def wait_for_200(http: httpx.Client, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.001)
    raise SystemExit(f"{url} never answered")


def baseline_run(
    client: docker.DockerClient, http: httpx.Client, image: str, network: str
) -> float:
    api = client.api
    container = api.create_container(
        image,
        command=["python3", "-c", MINIMAL_SERVER],
        host_config=api.create_host_config(network_mode=network),
        labels={"faas.bench": "baseline"},
    )
    try:
        began = time.perf_counter()
        api.start(container["Id"])
        address = api.inspect_container(container["Id"])["NetworkSettings"]["Networks"][network][
            "IPAddress"
        ]
        wait_for_200(http, f"http://{address}:8080/")
        return time.perf_counter() - began
    finally:
        api.remove_container(container["Id"], force=True)


def wait_for_zero(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = function_info(url, "hello", SPEC)
        if info["replicas"] == 0 and info["starting"] == 0 and info["draining"] == 0:
            time.sleep(0.5)  # let the stopped container's removal settle
            return
        time.sleep(0.1)
    raise SystemExit("hello did not return to zero")


def ours_run(http: httpx.Client, url: str) -> float:
    began = time.perf_counter()
    response = http.get(f"{url}/function/hello", timeout=30)
    elapsed = time.perf_counter() - began
    assert response.status_code == 200, response.text
    return elapsed


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label:<28} p50 {statistics.median(samples) * 1000:7.1f} ms   "
        f"p95 {p95 * 1000:7.1f} ms   min {ordered[0] * 1000:7.1f} ms"
    )


@dataclass
class Result:
    runs: int
    image: str
    baseline: list[float]
    """Seconds from Docker's start of a pre-created container to its first 200."""
    ours: list[float]
    """Seconds from a call to a function at zero to its 200, on the warm pool."""
    phases: list[dict[str, float]]
    containers: list[float] = field(default_factory=list)
    """The same, with the warm pool off: a container start per cold start."""
    container_phases: list[dict[str, float]] = field(default_factory=list)
    held_at_zero: int = 0
    """Containers (running or created) labelled with the function, while it is at zero."""
    warm_mib: float = 0.0
    """Memory of the project's warm watchdogs together, while every function is at zero."""
    warm_count: int = 0

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)

    @property
    def container_ratio(self) -> float:
        return statistics.median(self.containers) / statistics.median(self.baseline)


def held_by_function(client: docker.DockerClient, project: str) -> int:
    labels = [f"faas.project={project}", "faas.function=hello"]
    return len(client.api.containers(all=True, filters={"label": labels}))


def warm_memory(client: docker.DockerClient, project: str) -> tuple[int, float]:
    """(count, MiB) of the project's unassigned warm watchdogs, from the engine's stats."""
    labels = [f"faas.project={project}", "faas.role=warm"]
    found = client.api.containers(filters={"label": labels})
    total = 0
    for container in found:
        stats = client.api.stats(container["Id"], stream=False)
        usage = stats["memory_stats"]
        total += usage.get("usage", 0) - usage.get("stats", {}).get("total_inactive_file", 0)
    return len(found), total / 2**20


def run(runs: int = 10) -> Result:
    client = docker.from_env()
    project = f"bench-cold-{uuid.uuid4().hex[:6]}"
    plain = f"bench-cold-{uuid.uuid4().hex[:6]}"
    result = Result(runs, "", [], [], [])
    # One client made up front: creating one loads TLS certificates (~20 ms), which must
    # not land inside a timed section. Each request still opens a new connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    with (
        gateway(SPEC, project) as url,
        gateway(CONTAINERS_SPEC, plain) as plain_url,
        httpx.Client(timeout=1, limits=limits, trust_env=False) as http,
    ):
        for first in (url, plain_url):
            ours_run(http, first)  # the first call also waits out the pools' creation
        info = function_info(url, "hello", SPEC)
        result.image, network = str(info["image"]), f"faas-{project}"
        for _ in range(runs):
            wait_for_zero(url)
            wait_for_zero(plain_url)
            # the warm pool refills after a start: keep that
            # out of the next timed section
            time.sleep(2)
            result.held_at_zero = max(result.held_at_zero, held_by_function(client, project))
            result.ours.append(ours_run(http, url))
            result.phases.append(function_info(url, "hello", SPEC)["last_cold_start_phases"])  # type: ignore[arg-type]
            time.sleep(2)
            result.containers.append(ours_run(http, plain_url))
            result.container_phases.append(
                function_info(plain_url, "hello", SPEC)["last_cold_start_phases"]  # type: ignore[arg-type]
            )
            time.sleep(2)
            result.baseline.append(baseline_run(client, http, result.image, network))
        wait_for_zero(url)
        time.sleep(2)
        result.warm_count, result.warm_mib = warm_memory(client, project)
    return result


def report(result: Result) -> None:
    print(f"{result.runs} runs each, alternating; image {result.image}")
    print(summary("docker baseline (start->200)", result.baseline))
    print(summary("faas zero->200, warm pool", result.ours))
    print(summary("faas zero->200, containers", result.containers))
    for phase in ("create_ms", "start_ms", "ready_ms"):
        values = [p.get(phase, 0.0) for p in result.container_phases]
        print(f"  containers: {phase:<10} p50 {statistics.median(values):7.1f} ms")
    print(f"ratio warm pool/baseline (p50): {result.ratio:.2f}")
    print(f"ratio containers/baseline (p50): {result.container_ratio:.2f}")
    print(f"held by hello at zero (warm pool): {result.held_at_zero} container(s)")
    print(
        f"held by the project's warm pool: {result.warm_count} watchdog(s), "
        f"{result.warm_mib:.1f} MiB together"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    report(run(args.runs))


if __name__ == "__main__":
    main()
