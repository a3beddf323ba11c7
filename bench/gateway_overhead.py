"""Warm `hello` through the gateway versus directly against its replica, side by side.

Starts `faas up` on bench/projects/overhead (one replica of `hello` that takes
up to 64 calls at once, so the gateway queues nothing), warms it, then
alternates wrk runs against the gateway and against the replica itself
(with the replica's token) at each connection count, several rounds, and
prints requests/s, p50/p99 latency and the gateway/direct ratios (medians).

    python bench/gateway_overhead.py [--seconds 5] [--rounds 3] [--connections 1 32] [--uvloop]
                                     [--baseline GIT-REF]

--uvloop serves the gateway on uvloop, as `faas up` does; without it, on asyncio's own loop.
--baseline also serves the same project from the code at GIT-REF (a temporary git worktree),
measured in the same rounds, so a change is compared with what it replaces on one machine
at one time: "before" and "after" ratios side by side.
`run()` returns the samples as data (bench/report.py uses it).

Needs wrk (Debian package `wrk`) and a Docker engine (scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
from common import (
    Sample,
    direct_address,
    free_port,
    median_sample,
    replica_containers,
    wait_until_serving,
    wrk,
)

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "bench" / "projects" / "overhead" / "functions.yaml"


@dataclass
class Row:
    connections: int
    gateway: list[Sample] = field(default_factory=list)
    direct: list[Sample] = field(default_factory=list)
    baseline: list[Sample] = field(default_factory=list)
    """The gateway of --baseline's code, when asked for."""

    @property
    def ratio(self) -> float:
        """Throughput through the gateway / direct (medians)."""
        return median_sample(self.gateway).rps / median_sample(self.direct).rps

    @property
    def p50_added_ms(self) -> float:
        return median_sample(self.gateway).p50_ms - median_sample(self.direct).p50_ms


@dataclass
class Result:
    seconds: float
    rounds: int
    cpus: int
    rows: list[Row]

    def row(self, connections: int) -> Row:
        return next(r for r in self.rows if r.connections == connections)


@contextlib.contextmanager
def gateway(project: str, uvloop: bool = False, tree: Path = REPO) -> Iterator[str]:
    """`faas up` of the code in `tree` (`python -m faas` imports the tree it runs in)."""
    port = free_port()
    # `faas up` runs on uvloop; FAAS_EVENT_LOOP=asyncio measures asyncio's own loop.
    env = {**os.environ, "FAAS_EVENT_LOOP": "uvloop" if uvloop else "asyncio"}
    admin = ["--admin-port", str(free_port())] if _has_admin_port(tree) else []
    process = subprocess.Popen(
        [sys.executable, "-m", "faas", "up", "-f", str(tree / SPEC.relative_to(REPO)),
         "--project", project, "--port", str(port), *admin, "--no-reload",
         "--log-level", "warning"],
        cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, "faas up exited; run `faas up` by hand to see why")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def _has_admin_port(tree: Path) -> bool:
    """Whether that code's `faas up` takes --admin-port (the admin API on its own listener)."""
    return "admin-port" in (tree / "faas" / "cli.py").read_text()


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The code at `ref` in a temporary git worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="faas-baseline-") as parent:
        tree = Path(parent) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(tree), ref], cwd=REPO, check=True
        )
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO)


def replica_of(project: str, function: str) -> tuple[str, str]:
    client = docker.from_env()
    (container,) = replica_containers(client, project, function)
    return direct_address(client, container["Id"])


def run(
    seconds: float = 5,
    rounds: int = 3,
    connections: tuple[int, ...] = (1, 32),
    uvloop: bool = False,
    baseline: str | None = None,
) -> Result:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    project = f"bench-{uuid.uuid4().hex[:6]}"
    rows = [Row(c) for c in connections]
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(gateway(project, uvloop))
        assert httpx.get(f"{url}/function/hello", timeout=60).status_code == 200
        direct_url, token = replica_of(project, "hello")
        gateway_url = f"{url}/function/hello"
        baseline_url = None
        if baseline is not None:
            old = stack.enter_context(gateway(project + "-base", uvloop, stack.enter_context(
                checkout(baseline))))  # fmt: skip
            assert httpx.get(f"{old}/function/hello", timeout=60).status_code == 200
            baseline_url = f"{old}/function/hello"
            wrk(baseline_url, 8, 2, {})
        wrk(gateway_url, 8, 2, {})  # warm the connection pools
        for row in rows:
            for _ in range(rounds):
                row.gateway.append(wrk(gateway_url, row.connections, seconds, {}))
                row.direct.append(
                    wrk(direct_url, row.connections, seconds, {"X-Faas-Token": token})
                )
                if baseline_url is not None:
                    row.baseline.append(wrk(baseline_url, row.connections, seconds, {}))
    return Result(seconds, rounds, os.cpu_count() or 1, rows)


def report(result: Result) -> None:
    print(
        f"{'conns':>5} {'path':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f"   (medians of {result.rounds})"
    )
    for row in result.rows:
        g, d = median_sample(row.gateway), median_sample(row.direct)
        for label, sample in (("gateway", g), ("direct", d)):
            print(
                f"{row.connections:>5} {label:<8} {sample.rps:>9.0f} {sample.p50_ms:>8.3f} "
                f"{sample.p99_ms:>8.3f}"
            )
        print(
            f"{row.connections:>5} ratio    throughput gateway/direct = {g.rps / d.rps:.2f}, "
            f"p50 added = {g.p50_ms - d.p50_ms:+.3f} ms, p99 added = {g.p99_ms - d.p99_ms:+.3f} ms"
        )
        if row.baseline:
            b = median_sample(row.baseline)
            print(
                f"{row.connections:>5} baseline {b.rps:>9.0f} {b.p50_ms:>8.3f} {b.p99_ms:>8.3f}"
                f"   gateway/direct = {b.rps / d.rps:.2f}, p50 added = {b.p50_ms - d.p50_ms:+.3f}"
                f" ms; this code vs baseline: throughput {g.rps / b.rps:.2f}x,"
                f" p50 {g.p50_ms - b.p50_ms:+.3f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--uvloop", action="store_true", help="serve the gateway on uvloop")
    parser.add_argument("--baseline", metavar="GIT-REF", help="also measure the code at this ref")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, {args.rounds} rounds x {args.seconds:g}s per cell")
    report(run(args.seconds, args.rounds, tuple(args.connections), args.uvloop, args.baseline))


if __name__ == "__main__":
    main()
