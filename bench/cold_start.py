"""Cold start: zero -> first 200 through the gateway, next to Docker's own start, same run.

Baseline: a container of the same function image, created ahead of time and
running a minimal standard-library HTTP server instead of the watchdog, on the
same kind of network; timed from `start` to its first HTTP 200.
Ours: `hello` at zero (no running container), timed from the request to its
200 through the gateway. Runs alternate, so both see the same machine noise.

    python bench/cold_start.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass

import docker
import httpx
from common import REPO, function_info, gateway

SPEC = REPO / "bench" / "projects" / "coldstart" / "functions.yaml"
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
            time.sleep(0.5)  # let the stopped container's removal and the next spare settle
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
    """Seconds from a call to a function at zero to its 200 through the gateway."""
    phases: list[dict[str, float]]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)


def run(runs: int = 10) -> Result:
    client = docker.from_env()
    project = f"bench-cold-{uuid.uuid4().hex[:6]}"
    baseline: list[float] = []
    ours: list[float] = []
    phases: list[dict[str, float]] = []
    # One client made up front: creating one loads TLS certificates (~20 ms), which must
    # not land inside a timed section. Each request still opens a new connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    with (
        gateway(SPEC, project) as url,
        httpx.Client(timeout=1, limits=limits, trust_env=False) as http,
    ):
        ours_run(http, url)  # first call also waits out the first spare's creation
        info = function_info(url, "hello", SPEC)
        image, network = str(info["image"]), f"faas-{project}"
        for _ in range(runs):
            wait_for_zero(url)
            ours.append(ours_run(http, url))
            phases.append(function_info(url, "hello", SPEC)["last_cold_start_phases"])  # type: ignore[arg-type]
            # the next spare is created 1 s after a start: keep it out of the baseline
            time.sleep(2)
            baseline.append(baseline_run(client, http, image, network))
    return Result(runs, image, baseline, ours, phases)


def report(result: Result) -> None:
    print(f"{result.runs} runs each, alternating; image {result.image}")
    print(summary("docker baseline (start->200)", result.baseline))
    print(summary("faas zero->200 via gateway", result.ours))
    for phase in ("create_ms", "start_ms", "ready_ms"):
        values = [p[phase] for p in result.phases]
        print(f"  of which {phase:<10} p50 {statistics.median(values):7.1f} ms")
    print(f"ratio ours/baseline (p50): {result.ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    report(run(args.runs))


if __name__ == "__main__":
    main()
