"""What the benchmarks share: a `faas up` subprocess on a free port, wrk runs and their figures."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx

from runtime.backends.docker.containers import serving_function

REPO = Path(__file__).resolve().parents[1]
LATENCY_SCRIPT = REPO / "bench" / "latency.lua"


@dataclass
class Sample:
    """One wrk run: requests/s, latency percentiles in ms, and its latency distribution."""

    rps: float
    p50_ms: float
    p99_ms: float
    cdf: list[tuple[float, float]] = field(default_factory=list)
    """(percent, ms) from wrk's latency histogram: 0 (min), 1 ... 99, 99.5, 99.9, 99.99, 100."""


def wrk(
    url: str,
    connections: int,
    seconds: float,
    headers: dict[str, str],
    *,
    cpu: str | None = None,
    strict: bool = False,
) -> Sample:
    """One wrk run (one thread) with its latency percentiles; `cpu` pins it (taskset).

    `strict`: exit when any answer is not 2xx/3xx."""
    command = ["taskset", "-c", cpu] if cpu is not None else []
    command += ["wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds:g}s"]
    command += ["-s", str(LATENCY_SCRIPT)]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, check=False, timeout=seconds + 30
    )
    output = result.stdout
    if result.returncode != 0 or "Requests/sec" not in output:
        raise SystemExit(f"wrk failed on {url}:\n{output}{result.stderr}")
    if strict and "Non-2xx or 3xx responses" in output:
        raise SystemExit(f"{url} answered errors under load:\n{output}")
    if "Socket errors" in output:
        errors = output.split("Socket errors:")[1].splitlines()[0]
        print(f"  warning: socket errors from {url}:{errors}")
    return parse_wrk(output)


def parse_wrk(output: str) -> Sample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rps, output

    def percentile(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    cdf = []
    if "latency-percentiles" in output:
        block = output.split("latency-percentiles\n", 1)[1].split("end-latency-percentiles")[0]
        for line in block.splitlines():
            percent, micros = line.split()
            cdf.append((float(percent), int(micros) / 1000))
    return Sample(float(rps.group(1)), percentile("50"), percentile("99"), cdf)


def median_sample(samples: list[Sample]) -> Sample:
    """Medians of rps, p50 and p99; the distribution of the run with the median rps."""
    middle = sorted(samples, key=lambda s: s.rps)[len(samples) // 2]
    return Sample(
        statistics.median(s.rps for s in samples),
        statistics.median(s.p50_ms for s in samples),
        statistics.median(s.p99_ms for s in samples),
        middle.cdf,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(
    process: subprocess.Popen[Any],
    url: str,
    failure: str | Callable[[], str],
    timeout: float = 300,
) -> None:
    """Poll the gateway's /healthz until it answers; exit with `failure` if it ends or stalls.

    `failure` may be a function, to read the gateway's log only when it is needed.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(failure if isinstance(failure, str) else failure())
        time.sleep(0.1)


@contextlib.contextmanager
def gateway(spec: Path, project: str) -> Iterator[str]:
    """Serve `spec` as `project`; yields the gateway's URL and stops it (cleaning up) after.

    Admin calls (`function_info`) read the token `faas up` writes next to `spec`.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "faas", "up", "-f", str(spec), "--project", project,
         "--port", str(port), *ADMIN_ANY_PORT, "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(
            process, url, f"faas up -f {spec} did not come up; run it by hand to see why"
        )
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def admin_headers(spec: Path) -> dict[str, str]:
    token = (spec.parent / ".faas" / "admin-token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


ADMIN_ANY_PORT = ("--admin-port", "0")
"""For `faas up`: the admin listener on a free port (found again with `admin_url`)."""


def admin_url(url: str, spec: Path) -> str:
    """The admin listener of the gateway serving `url`, from the state it wrote by `spec`."""
    port = int(url.rsplit(":", 1)[1])
    for path in (spec.parent / ".faas").glob("gateway-*.json"):
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(path.read_text())
            if state.get("port") == port and state.get("admin_port"):
                return f"http://127.0.0.1:{state['admin_port']}"
    raise SystemExit(f"no admin listener recorded for {url} under {spec.parent / '.faas'}")


def function_info(url: str, name: str, spec: Path) -> dict[str, object]:
    functions = httpx.get(
        f"{admin_url(url, spec)}/system/functions", headers=admin_headers(spec), timeout=10
    ).json()["functions"]
    return next(f for f in functions if f["name"] == name)


def replica_containers(
    client: docker.DockerClient, project: str, function: str, *, running: bool = True
) -> list[dict[str, Any]]:
    """The containers serving `function`, from the low-level listing.

    A replica started on a warm watchdog has no `faas.function` label (labels are
    fixed at creation): it carries `faas.role=warm` and the name
    faas-<project>-<function>-<hex>. Network sandboxes and unassigned watchdogs are left out.
    """
    found = client.api.containers(all=not running, filters={"label": f"faas.project={project}"})
    return [
        c
        for c in found
        if serving_function(c.get("Labels") or {}, c["Names"][0].lstrip("/"), project) == function
    ]


def direct_address(client: docker.DockerClient, container_id: str) -> tuple[str, str]:
    """(http://address:8080/, token) of a replica, to call it without the gateway."""
    attrs = client.api.inspect_container(container_id)
    env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
    mode = attrs["HostConfig"]["NetworkMode"]
    if mode.startswith("container:"):  # it joined its network sandbox's namespace
        attrs = client.api.inspect_container(mode.split(":", 1)[1])
    address = next(iter(attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    return f"http://{address}:8080/", env["FAAS_TOKEN"]
