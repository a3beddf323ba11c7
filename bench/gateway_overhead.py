"""Warm `hello` through the gateway versus directly against its replica, side by side.

Starts `faas up` on bench/projects/overhead (one replica of `hello` that takes
up to 64 calls at once, so the gateway queues nothing), warms it, then
alternates wrk runs against the gateway and against the replica itself
(with the replica's token) at each connection count, several rounds, and
prints requests/s, p50/p99 latency and the gateway/direct ratios (medians).

    python bench/gateway_overhead.py [--seconds 5] [--rounds 3] [--connections 1 32]

Needs wrk (Debian package `wrk`) and a Docker engine (scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "bench" / "projects" / "overhead" / "functions.yaml"


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float


def parse_wrk(output: str) -> Sample:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return Sample(rps, percentile("50"), percentile("99"))


def wrk(url: str, connections: int, seconds: float, headers: dict[str, str]) -> Sample:
    command = ["wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds:g}s"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    return parse_wrk(output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gateway(project: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "faas", "up", "-f", str(SPEC), "--project", project,
         "--port", str(port), "--no-reload",
         "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit("faas up exited; run `faas up` by hand to see why")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def replica_of(project: str, function: str) -> tuple[str, str]:
    client = docker.from_env()
    (container,) = [
        c
        for c in client.containers.list(
            filters={"label": [f"faas.project={project}", f"faas.function={function}"]}
        )
        if "faas.role" not in c.labels
    ]
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    sandbox = client.containers.get(container.attrs["HostConfig"]["NetworkMode"].split(":", 1)[1])
    address = next(iter(sandbox.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    return f"http://{address}:8080/", env["FAAS_TOKEN"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    project = f"bench-{uuid.uuid4().hex[:6]}"
    print(f"cpus: {os.cpu_count()}, {args.rounds} rounds x {args.seconds:g}s per cell")
    with gateway(project) as url:
        assert httpx.get(f"{url}/function/hello", timeout=60).status_code == 200
        direct_url, token = replica_of(project, "hello")
        gateway_url = f"{url}/function/hello"
        wrk(gateway_url, 8, 2, {})  # warm the connection pools
        rows = []
        for connections in args.connections:
            through: list[Sample] = []
            direct: list[Sample] = []
            for _ in range(args.rounds):
                through.append(wrk(gateway_url, connections, args.seconds, {}))
                direct.append(wrk(direct_url, connections, args.seconds, {"X-Faas-Token": token}))
            rows.append((connections, through, direct))
    print(
        f"{'conns':>5} {'path':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f"   (medians of {args.rounds})"
    )
    for connections, through, direct in rows:
        g = Sample(
            *(statistics.median(getattr(s, f) for s in through) for f in Sample.__annotations__)
        )
        d = Sample(
            *(statistics.median(getattr(s, f) for s in direct) for f in Sample.__annotations__)
        )
        for label, sample in (("gateway", g), ("direct", d)):
            print(
                f"{connections:>5} {label:<8} {sample.rps:>9.0f} {sample.p50_ms:>8.3f} "
                f"{sample.p99_ms:>8.3f}"
            )
        print(
            f"{connections:>5} ratio    throughput gateway/direct = {g.rps / d.rps:.2f}, "
            f"p50 added = {g.p50_ms - d.p50_ms:+.3f} ms, p99 added = {g.p99_ms - d.p99_ms:+.3f} ms"
        )


if __name__ == "__main__":
    main()
