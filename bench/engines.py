"""Cold starts and warm throughput on each engine and runtime, next to Docker/runc, same run.

Targets (as tests/engines.py selects them on the `faas up` command line):
- docker: Docker, runc, replicas dialed at their bridge address (the reference);
- published: Docker, runc, replicas dialed at a port published on 127.0.0.1
  (`--replica-access published`);
- gvisor: Docker, every function in a gVisor sandbox (`--isolation gvisor`);
- podman: Podman's Docker-compatible API (`--engine podman`, CONTAINER_HOST);
- rootless: rootless Docker (DOCKER_HOST), whose replicas the gateway dials at
  ports published through rootlesskit, as it must there.
A target the machine does not have is left out, with the reason.

Each target serves bench/projects/engines twice, in production mode (--no-reload):
with the warm pool (functions.yaml) and without it (functions-containers.yaml,
`gateway.warm_pool: 0`). Measured, runs interleaved across targets so machine noise
hits all alike:
- cold start, warm pool: `hello` at zero -> its first 200 through the gateway
  (as bench/cold_start.py), median and p90 of --runs;
- cold start, no pool: the same, each a start of the container `hello` keeps ahead;
- throughput: wrk against `warm` (one warm replica taking 64 calls at once, as
  bench/gateway_overhead.py) through the gateway, median requests/s of --rounds
  (each round measures every target once, in a rotating order).
Each figure is also given as a ratio to docker's: cold starts as the ratio of the
medians; throughput as the median of each round's ratio (target/docker in the same
round), which a load drifting over the run skews less. The issue's two targets are
checked: gVisor's warm-pool cold start within 2x of runc's, and published-port
throughput within 10% of bridge-address throughput.

    python bench/engines.py [--runs 7] [--targets docker,published,gvisor,podman,rootless]
                            [--seconds 3] [--rounds 5] [--connections 32]

Needs wrk (Debian package `wrk`) and a Docker engine (scripts/setup.sh); gVisor
(FAAS_GVISOR=1 scripts/ensure-docker.sh), Podman (scripts/ensure-podman.sh) and rootless
Docker (scripts/ensure-rootless-docker.sh) optional.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import httpx
from common import ADMIN_ANY_PORT, REPO, free_port, function_info, wrk

sys.path.insert(0, str(REPO))  # the test suite's engine targets
from tests import engines
from tests.engines import Target

SPEC = REPO / "bench" / "projects" / "engines" / "functions.yaml"
NO_POOL_SPEC = SPEC.with_name("functions-containers.yaml")
UP_TIMEOUT = 150.0
"""Seconds a `faas up` may take to serve (the first builds the images)."""
SETTLE = 1.0
"""Seconds of quiet before each timed cold start: the previous one's container removal,
warm-pool refill and next spare container are out of the way."""
GVISOR_LIMIT = 2.0
PUBLISHED_LIMIT = 0.90

FAILURES = (httpx.HTTPError, RuntimeError, KeyError, StopIteration, SystemExit)
"""What a call, an admin query or a wait may raise (common.admin_url exits): the
gateway is left out of the rest of the run, with the reason."""

Mode = Literal["pool", "no pool"]
MODES: tuple[Mode, ...] = ("pool", "no pool")


# The targets are the test suite's (tests/engines.py): one table of how each is selected
# and set up. The reference here is always dialed at the address, never left to "auto".
TARGETS: dict[str, Target] = {
    **engines.TARGETS,
    "docker": dataclasses.replace(
        engines.TARGETS["docker"], up_args=("--replica-access", "address")
    ),
}
WHAT = {
    "docker": "Docker, runc, bridge address",
    "published": "Docker, runc, published port",
    "gvisor": "Docker, gVisor (runsc)",
    "podman": "Podman, its OCI runtime",
    "rootless": "rootless Docker, published port",
}
REFERENCE = "docker"


def engine_version(target: Target) -> str:
    with contextlib.suppress(docker.errors.DockerException):
        client = target.client()
        version = client.version()
        client.close()
        return str(version.get("Version", "?"))
    return "?"


@dataclass
class Gateway:
    """One `faas up` of a target in one mode."""

    target: Target
    mode: Mode
    project: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def label(self) -> str:
        return f"{self.target.name}/{self.mode}"

    def log_tail(self, lines: int = 6) -> str:
        with contextlib.suppress(OSError):
            tail = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
            return " | ".join(line.strip() for line in tail)
        return "(no log)"


def start_gateway(target: Target, mode: Mode, project: str, logs: Path) -> Gateway:
    """`faas up` with the target's arguments and environment (common.gateway takes
    neither), its output kept in a log to say why it failed, if it does."""
    spec = SPEC if mode == "pool" else NO_POOL_SPEC
    port = free_port()
    log = logs / f"{project}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "faas", "up", "-f", str(spec), "--project", project,
             "--port", str(port), *ADMIN_ANY_PORT, "--no-reload", "--log-level", "warning",
             *target.up_args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **target.env},
        )  # fmt: skip
    return Gateway(target, mode, project, process, f"http://127.0.0.1:{port}", log)


def wait_serving(gateways: list[Gateway], timeout: float = UP_TIMEOUT) -> dict[str, str]:
    """Wait until each answers /healthz; {label: why not} for those that did not."""
    deadline = time.monotonic() + timeout
    waiting = list(gateways)
    failed: dict[str, str] = {}
    while waiting:
        for gw in list(waiting):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{gw.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    waiting.remove(gw)
                    continue
            if gw.process.poll() is not None:
                failed[gw.label] = f"faas up exited {gw.process.returncode}: {gw.log_tail()}"
                waiting.remove(gw)
            elif time.monotonic() > deadline:
                failed[gw.label] = f"not serving after {timeout:.0f}s: {gw.log_tail()}"
                waiting.remove(gw)
        time.sleep(0.1)
    return failed


def stop_gateways(gateways: list[Gateway]) -> list[str]:
    """SIGINT all at once (each removes its containers), then wait for each."""
    problems = []
    for gw in gateways:
        if gw.process.poll() is None:
            gw.process.send_signal(signal.SIGINT)
    for gw in gateways:
        try:
            gw.process.wait(60)
        except subprocess.TimeoutExpired:
            gw.process.kill()
            gw.process.wait()
            problems.append(f"{gw.label}: did not stop within 60s after SIGINT; killed")
    return problems


def leftovers(gateways: list[Gateway]) -> list[str]:
    """What the stopped gateways left on their engines: containers (a replica's network
    sandbox, faas-...-net, last: the replica joined its namespace) and networks, each
    named with its gateway's last log lines. All of it is removed."""
    found = []
    by_engine: dict[str | None, list[Gateway]] = {}
    for gw in gateways:
        by_engine.setdefault(gw.target.base_url, []).append(gw)
    for group in by_engine.values():
        try:
            client = group[0].target.client()
            containers = client.api.containers(all=True)
            networks = client.api.networks()
        except docker.errors.DockerException as exc:
            found.append(f"{group[0].target.name}: could not list what is left: {exc}")
            continue
        containers.sort(key=lambda c: c["Names"][0].endswith("-net"))
        for container in containers:
            name = container["Names"][0].lstrip("/")
            labels = container.get("Labels") or {}
            if (owner := _owner(group, name, labels.get("faas.project"))) is not None:
                found.append(f"{owner.label}: container {name} ({container['State']})")
                with contextlib.suppress(docker.errors.DockerException):
                    client.api.remove_container(container["Id"], force=True)
        for network in networks:
            labels = network.get("Labels") or {}
            if (owner := _owner(group, network["Name"], labels.get("faas.project"))) is not None:
                found.append(f"{owner.label}: network {network['Name']}")
                with contextlib.suppress(docker.errors.DockerException):
                    client.api.remove_network(network["Id"])
        client.close()
        for gw in {gw.label: gw for gw in group}.values():
            if any(item.startswith(f"{gw.label}:") for item in found):
                found.append(f"{gw.label}: its log ends: {gw.log_tail()}")
    return found


def _owner(gateways: list[Gateway], name: str, project: str | None) -> Gateway | None:
    """The gateway whose project a container or network is (by label, else by name)."""
    for gw in gateways:
        if project == gw.project or name.startswith(f"faas-{gw.project}"):
            return gw
    return None


@dataclass
class Figures:
    """What one target measured."""

    cold: dict[Mode, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    """Seconds from a call to `hello` at zero to its 200."""
    phases: dict[Mode, list[dict[str, float]]] = field(
        default_factory=lambda: {m: [] for m in MODES}
    )
    rps: dict[int, float] = field(default_factory=dict)
    """Requests/s through the gateway, by round."""
    problems: list[str] = field(default_factory=list)

    def warm_path(self) -> int:
        """Warm-pool runs that did start on a warm watchdog (not the ordinary path)."""
        return sum("assign_ms" in p for p in self.phases["pool"])

    def throughput(self) -> float | None:
        return median(list(self.rps.values()))

    def throughput_ratios(self, reference: Figures) -> list[float]:
        """This target's requests/s over the reference's, each round with its own round."""
        return [
            rps / reference.rps[index]
            for index, rps in self.rps.items()
            if reference.rps.get(index)
        ]


def wait_for_zero(gw: Gateway, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = function_info(gw.url, "hello", SPEC)
        if info["replicas"] == 0 and info["starting"] == 0 and info["draining"] == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"hello did not return to zero within {timeout:.0f}s")


def call(http: httpx.Client, gw: Gateway, function: str = "hello") -> float:
    began = time.perf_counter()
    response = http.get(f"{gw.url}/function/{function}", timeout=60)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"/function/{function} answered {response.status_code}: {response.text}")
    return elapsed


def rotated(items: list[Any], by: int) -> list[Any]:
    by = by % len(items) if items else 0
    return items[by:] + items[:by]


def run(
    names: list[str], runs: int, seconds: float, rounds: int, connections: int
) -> tuple[dict[str, Figures], dict[str, str], dict[str, str], list[str]]:
    """(figures by target, skipped targets with why, engine versions, cleanup problems)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    skipped: dict[str, str] = {}
    targets: list[Target] = []
    for name in names:
        reason = engines.unavailable(name)
        if reason is None:
            targets.append(TARGETS[name])
        else:
            skipped[name] = reason
    if REFERENCE not in [t.name for t in targets]:
        raise SystemExit(f"the reference target {REFERENCE} is not available: {skipped}")
    versions = {t.name: engine_version(t) for t in targets}
    figures = {t.name: Figures() for t in targets}
    tag = uuid.uuid4().hex[:4]
    gateways: list[Gateway] = []
    cleanup: list[str] = []
    with tempfile.TemporaryDirectory(prefix="faas-bench-engines-") as logs_dir:
        logs = Path(logs_dir)
        try:
            # The reference first, alone: it makes the admin token the others read and
            # builds Docker's images; then the rest together.
            for group in (targets[:1], targets[1:]):
                started = [
                    start_gateway(t, mode, f"be{tag}-{t.name[:3]}-{mode[0]}", logs)
                    for t in group
                    for mode in MODES
                ]
                gateways += started
                for label, why in wait_serving(started).items():
                    figures[label.split("/")[0]].problems.append(f"{label}: {why}")
            measure(gateways, figures, runs, seconds, rounds, connections)
        finally:
            cleanup += stop_gateways(gateways)
            left = leftovers(gateways)
            cleanup += [f"left behind (now removed): {item}" for item in left]
    return figures, skipped, versions, cleanup


def measure(
    gateways: list[Gateway],
    figures: dict[str, Figures],
    runs: int,
    seconds: float,
    rounds: int,
    connections: int,
) -> None:
    live = [gw for gw in gateways if gw.process.poll() is None and not _failed(gw, figures)]

    def drop(gw: Gateway, what: str, exc: BaseException) -> None:
        figures[gw.target.name].problems.append(f"{gw.label}: {what}: {exc}")
        live.remove(gw)

    # One client made up front (making one loads TLS certificates, ~20 ms, which must not
    # land in a timed section); each request still opens a new connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(limits=limits, trust_env=False) as http:
        for gw in list(live):  # the first calls also wait out the warm pools' creation
            try:
                call(http, gw)
                if gw.mode == "pool":
                    call(http, gw, "warm")
                wait_for_zero(gw)
            except FAILURES as exc:
                drop(gw, "first call", exc)
        for index in range(runs):
            for gw in rotated(list(live), index):
                try:
                    time.sleep(SETTLE)
                    elapsed = call(http, gw)
                    phases = function_info(gw.url, "hello", SPEC)["last_cold_start_phases"]
                    wait_for_zero(gw)
                except FAILURES as exc:
                    drop(gw, f"cold start {index + 1}", exc)
                    continue
                figures[gw.target.name].cold[gw.mode].append(elapsed)
                figures[gw.target.name].phases[gw.mode].append(phases)  # type: ignore[arg-type]
            print(f"  cold-start run {index + 1}/{runs} done", file=sys.stderr, flush=True)
        pooled = [gw for gw in live if gw.mode == "pool"]
        for gw in list(pooled):
            try:
                wrk(f"{gw.url}/function/warm", 8, 2, {}, strict=True)  # warm connection pools
            except SystemExit as exc:
                figures[gw.target.name].problems.append(f"{gw.label}: throughput warm-up: {exc}")
                pooled.remove(gw)
        for index in range(rounds):
            for gw in rotated(list(pooled), index):
                url = f"{gw.url}/function/warm"
                try:
                    sample = wrk(url, connections, seconds, {}, strict=True)
                except SystemExit as exc:
                    figures[gw.target.name].problems.append(f"{gw.label}: throughput: {exc}")
                    pooled.remove(gw)
                    continue
                figures[gw.target.name].rps[index] = sample.rps
            print(f"  throughput round {index + 1}/{rounds} done", file=sys.stderr, flush=True)


def _failed(gw: Gateway, figures: dict[str, Figures]) -> bool:
    return any(p.startswith(f"{gw.label}:") for p in figures[gw.target.name].problems)


def p90(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=10, method="inclusive")[8]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def report(
    figures: dict[str, Figures],
    skipped: dict[str, str],
    versions: dict[str, str],
    cleanup: list[str],
    args: argparse.Namespace,
) -> None:
    print(
        f"cpus {os.cpu_count()}; {args.runs} cold starts per target and mode, interleaved;"
        f" throughput wrk -c{args.connections} -d{args.seconds:g}s x{args.rounds} rounds"
        " (median req/s; req/s/ref: median of each round's ratio); production mode (--no-reload)"
    )
    engines: dict[str, list[str]] = {}
    for name, version in versions.items():
        engine = {"podman": "Podman", "rootless": "rootless Docker"}.get(name, "Docker")
        engines.setdefault(f"{engine} {version}", []).append(name)
    print("engines: " + "; ".join(f"{e} ({', '.join(n)})" for e, n in engines.items()))
    ref = figures[REFERENCE]
    ref_pool, ref_plain, ref_rps = (
        median(ref.cold["pool"]),
        median(ref.cold["no pool"]),
        ref.throughput(),
    )
    print()
    print(
        f"{'target':<10} {'what':<30} {'pool p50':>9} {'pool p90':>9} {'no-pool p50':>12}"
        f" {'req/s':>8}   {'pool/ref':>8} {'nopool/ref':>10} {'req/s/ref':>9}"
    )
    print(f"{'':<10} {'':<30} {'ms':>9} {'ms':>9} {'ms':>12} {'':>8}   (ref: {REFERENCE})")
    for name, fig in figures.items():
        pool, plain, rps = median(fig.cold["pool"]), median(fig.cold["no pool"]), fig.throughput()
        print(
            f"{name:<10} {WHAT[name]:<30} {ms(pool):>9}"
            f" {ms(p90(fig.cold['pool']) if fig.cold['pool'] else None):>9} {ms(plain):>12}"
            f" {'-' if rps is None else f'{rps:.0f}':>8}   {times(ratio(pool, ref_pool)):>8}"
            f" {times(ratio(plain, ref_plain)):>10} {times(median(fig.throughput_ratios(ref))):>9}"
        )
    for name in skipped:
        print(f"{name:<10} {WHAT[name]:<30} {'(not available here)':>9}")
    print()
    for name, fig in figures.items():
        details = []
        if fig.cold["pool"]:
            details.append(
                f"warm pool: {len(fig.cold['pool'])} runs, min {ms(min(fig.cold['pool']))} ms,"
                f" {fig.warm_path()} on a warm watchdog"
            )
        if fig.cold["no pool"]:
            starts = [p.get("start_ms", 0.0) for p in fig.phases["no pool"]]
            readies = [p.get("ready_ms", 0.0) for p in fig.phases["no pool"]]
            details.append(
                f"no pool: {len(fig.cold['no pool'])} runs, container start"
                f" {statistics.median(starts):.1f} ms + ready {statistics.median(readies):.1f} ms"
            )
        if fig.rps:
            rounds = ", ".join(f"{fig.rps[i]:.0f}" for i in sorted(fig.rps))
            details.append(f"req/s by round {rounds}")
            if name != REFERENCE:
                paired = ", ".join(f"{r:.2f}" for r in fig.throughput_ratios(ref))
                details.append(f"/ref by round {paired}")
        print(f"{name}: " + "; ".join(details))
    for name, fig in figures.items():
        if name == REFERENCE:
            continue
        pool, plain = median(fig.cold["pool"]), median(fig.cold["no pool"])
        of = {"published": "address", "gvisor": "runc"}.get(name, REFERENCE)
        print(
            f"{name}: warm-pool start {times(ratio(pool, ref_pool))} of {of},"
            f" no-pool start {times(ratio(plain, ref_plain))} of {of},"
            f" throughput {times(median(fig.throughput_ratios(ref)))} of {of}"
            f" (ratio of the medians {times(ratio(fig.throughput(), ref_rps))})"
        )
    problems = [(name, why) for name, why in skipped.items()]
    problems += [(name, p) for name, fig in figures.items() for p in fig.problems]
    print()
    if problems:
        print("could not run:")
        for name, why in problems:
            print(f"  {name}: {why}")
    else:
        print("every target ran every measurement")
    if cleanup:
        print("after the gateways stopped:")
        for item in cleanup:
            print(f"  {item}")
    else:
        print("no container or network left behind")
    print()
    gvisor = figures.get("gvisor")
    gvisor_pool = median(gvisor.cold["pool"]) if gvisor else None
    gvisor_ratio = ratio(gvisor_pool, ref_pool)
    if gvisor_ratio is None:
        print("NOT MEASURED gVisor warm start within 2x of runc (see above)")
    else:
        verdict = "PASS" if gvisor_ratio <= GVISOR_LIMIT else "FAIL"
        print(
            f"{verdict} gVisor warm start within {GVISOR_LIMIT:g}x of runc:"
            f" {ms(gvisor_pool)} ms vs {ms(ref_pool)} ms = {gvisor_ratio:.2f}x"
        )
    published = figures.get("published")
    published_ratio = median(published.throughput_ratios(ref)) if published else None
    if published is None or published_ratio is None:
        print("NOT MEASURED published-port throughput within 10% of address (see above)")
    else:
        verdict = "PASS" if published_ratio >= PUBLISHED_LIMIT else "FAIL"
        print(
            f"{verdict} published-port throughput within 10% of bridge address:"
            f" {published_ratio:.2f}x, median of the rounds' ratios (>= {PUBLISHED_LIMIT:.2f});"
            f" medians {published.throughput() or 0:.0f} vs {ref_rps or 0:.0f} req/s"
            f" = {times(ratio(published.throughput(), ref_rps))}"
        )


def target_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target(s) {unknown}; known: {list(TARGETS)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)  # every ratio is to it
    return sorted(names, key=list(TARGETS).index)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="cold starts per target and mode")
    parser.add_argument("--targets", type=target_names, default=list(TARGETS))
    parser.add_argument("--seconds", type=float, default=3, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="wrk runs per target")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    began, load = time.monotonic(), os.getloadavg()[0]
    figures, skipped, versions, cleanup = run(
        args.targets, args.runs, args.seconds, args.rounds, args.connections
    )
    report(figures, skipped, versions, cleanup, args)
    print(
        f"\nwall time {time.monotonic() - began:.0f} s; load average (1 min)"
        f" {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
