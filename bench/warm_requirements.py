"""Warm pools per kind: functions with requirements from zero, next to Docker's own start.

Three parts, one run, on bench/projects/warmreq (a pandas function, a numpy
function, ten plain ones; each back at zero one second after its last call):

1. zero -> first 200 of `pandas` (imports pandas at module level, builds a tiny
   DataFrame) and of `numpy`, three ways, runs alternating (the order rotates
   each run) so machine noise hits every side alike:
   - warm pool (the default settings): the start takes a watchdog of the
     function's kind, whose image holds the requirements and which has already
     imported them (FAAS_PRELOAD); before each such run the pools are refilled
     (`ready` == `target` in /system/functions' `warm`), so each measures a
     warm start; `no ready watchdog` counts the runs whose start still waited
     for one (`wait_ms` over 5 ms) or created a container of its own;
   - ordinary (functions-ordinary.yaml, `gateway.warm_pool: 0`, a second
     gateway): a container of the function's image is created and started and
     the watchdog imports the requirements before it reports ready;
   - docker: a container of the same function image (pandas or numpy under
     /opt/faas/deps, on PYTHONPATH), with the function's memory and CPU limits,
     created ahead and running a minimal standard-library HTTP server that
     first imports the library: timed from Docker's `start` to its first 200,
     what a plain container that imports the library costs.
   Ratios are of the p50s (and p90s): warm/docker is the headline (target
   <= 0.25x); warm/ordinary is what the warm pools save over the same
   platform's own container start.
2. The ten plain functions cold-started at once (all requests sent together),
   five rounds back to back (each once all ten are at zero and the pools are
   refilled), on each gateway: p50, p90 and max of zero -> 200 over all calls,
   and per round how many starts found a ready watchdog, waited for one being
   made, or created a container of their own. The plain pool keeps 2 at rest
   and grows with demand, up to `gateway.warm_pool` (8 by default): the first
   round finds 2 ready, later rounds up to 8; a start beyond what the pool
   holds waits for a watchdog being made (up to TAKE_WAIT, 2 s), and when none
   comes in time (or none is on its way) creates a container of its own.
3. What the warm pools hold at rest, once the project has been idle past the
   10 s demand window: per pool and in total from the `warm` JSON (the gateway's
   own measurement), next to the memory budget, and the engine's figure for
   the same containers as a check.

Warnings and errors the gateways logged are printed at the end.

    python bench/warm_requirements.py [--runs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
from cold_start import MINIMAL_SERVER, wait_for_200
from common import (
    ADMIN_ANY_PORT,
    REPO,
    admin_headers,
    admin_url,
    free_port,
    replica_containers,
    wait_until_serving,
)

from runtime.backends.docker.memory import from_stats
from runtime.warm_pool import TAKE_WAIT

PROJECT_DIR = REPO / "bench" / "projects" / "warmreq"
SPEC = PROJECT_DIR / "functions.yaml"
ORDINARY_SPEC = PROJECT_DIR / "functions-ordinary.yaml"
LIBRARIES = {"pandas": "pandas", "numpy": "numpy"}
"""Function -> the library its module imports (and the Docker baseline imports)."""
LIMITS = {"mem_limit": 256 * 2**20, "nano_cpus": 10**9}
"""The functions' own limits (functions.yaml), given to the Docker baseline too."""
PLAIN = tuple(f"plain{i}" for i in range(10))
ROUNDS = 5
READY_WAIT_MS = 5.0
"""A warm start that waited longer than this found no ready watchdog (it waited for one
being made); taking a ready one costs well under a millisecond."""
IDLE = 12.0
"""Seconds without a cold start after which the pools are measured: past the 10 s window
(runtime/scaling/warm_sizing.py), so they are back to their minimum."""
SIDES = ("warm", "ordinary", "docker")
GAVE_UP_MS = 0.75 * TAKE_WAIT * 1000
"""A start of its own whose zero -> 200 exceeds the cold start the gateway reports by more
than this first waited TAKE_WAIT for a warm watchdog being made, then gave up (the
reported cold start, and its phases, begin only at the container's creation)."""


@dataclass
class Gateway:
    """One `faas up` of the bench project."""

    spec: Path
    project: str
    url: str
    log: Path
    exit_code: int | None = None
    """Once it has stopped (and torn the project down)."""

    def system(self) -> dict[str, Any]:
        """The admin API's /system/functions: functions and (with warm pools) `warm`."""
        answer = httpx.get(
            f"{admin_url(self.url, self.spec)}/system/functions",
            headers=admin_headers(self.spec),
            timeout=10,
            trust_env=False,
        )
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]

    def functions(self) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.system()["functions"]}

    def problems(self) -> list[str]:
        """What it logged at warning level or above (it runs with --log-level warning),
        its teardown included, and how it exited if not cleanly."""
        lines = self.log.read_text(errors="replace").splitlines()
        found = [line for line in lines if any(w in line for w in ("WARNING", "ERROR", "Trace"))]
        if self.exit_code:
            found.append(f"faas up exited with {self.exit_code}; its last lines:")
            found += [f"  {line}" for line in lines[-6:] if line not in found]
        return [f"{self.project}: {line}" for line in found]


@contextlib.contextmanager
def logged_gateway(spec: Path, project: str, logs: Path) -> Iterator[Gateway]:
    """As common.gateway, with its output kept (to report warnings and errors)."""
    port = free_port()
    log = logs / f"{project}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "faas", "up", "-f", str(spec), "--project", project,
             "--port", str(port), *ADMIN_ANY_PORT, "--log-level", "warning"],
            cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    gateway = Gateway(spec, project, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_serving(
            process, gateway.url, lambda: f"faas up -f {spec} did not come up:\n{log.read_text()}"
        )
        yield gateway
    finally:
        process.send_signal(signal.SIGINT)
        gateway.exit_code = process.wait(60)


@dataclass
class Problems:
    """What did not behave as it should; printed at the end."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        print(f"  problem: {line}", flush=True)
        self.lines.append(line)


def wait_for_zero(gateway: Gateway, names: tuple[str, ...], client: docker.DockerClient) -> None:
    """Until `names` hold no replica, start or drain, and their containers are gone (so a
    removal does not land in the next timed section)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        functions = gateway.functions()
        busy = [
            n
            for n in names
            if functions[n]["replicas"] or functions[n]["starting"] or functions[n]["draining"]
        ]
        if not busy and not any(
            replica_containers(client, gateway.project, n, running=False) for n in names
        ):
            return
        time.sleep(0.1)
    raise SystemExit(f"{', '.join(names)} did not return to zero on {gateway.project}")


def wait_for_pools(gateway: Gateway, problems: Problems, timeout: float = 30) -> dict[str, Any]:
    """Until every warm pool holds its target, all ready (none being made, handed over or
    removed); returns the `warm` JSON then. A pool that does not get there is a problem."""
    deadline = time.monotonic() + timeout
    while True:
        warm = gateway.system()["warm"]
        pools = warm["pools"]
        if all(p["ready"] == p["target"] == p["held"] for p in pools):
            return warm  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            state = ", ".join(
                f"{p['pool']} ready {p['ready']} held {p['held']} target {p['target']}"
                for p in pools
            )
            problems.add(f"warm pools not refilled after {timeout:g} s: {state}")
            return warm  # type: ignore[no-any-return]
        time.sleep(0.05)


def settle(
    warm: Gateway,
    ordinary: Gateway,
    names: tuple[str, ...],
    client: docker.DockerClient,
    problems: Problems,
) -> dict[str, Any]:
    """Both gateways quiet, `names` at zero, the warm pools full; the `warm` JSON then."""
    wait_for_zero(warm, names, client)
    wait_for_zero(ordinary, names, client)
    pools = wait_for_pools(warm, problems)
    time.sleep(0.3)  # the engine's own bookkeeping after the removals
    return pools


def call(http: httpx.Client, url: str, name: str) -> float:
    """Seconds from the request for `name` (at zero) to its 200."""
    began = time.perf_counter()
    response = http.get(f"{url}/function/{name}", timeout=60)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise SystemExit(f"{name} answered {response.status_code}: {response.text}")
    return elapsed


def docker_start(
    client: docker.DockerClient, http: httpx.Client, image: str, network: str, library: str
) -> float:
    """Docker's start of a container of `image`, created ahead, to its first 200: a minimal
    HTTP server that imports `library` first."""
    api = client.api
    container = api.create_container(
        image,
        command=["python3", "-c", f"import {library}\n{MINIMAL_SERVER}"],
        host_config=api.create_host_config(network_mode=network, **LIMITS),
        labels={"faas.bench": "baseline"},
    )
    try:
        began = time.perf_counter()
        api.start(container["Id"])
        networks = api.inspect_container(container["Id"])["NetworkSettings"]["Networks"]
        wait_for_200(http, f"http://{networks[network]['IPAddress']}:8080/")
        return time.perf_counter() - began
    finally:
        api.remove_container(container["Id"], force=True)


def how_started(phases: dict[str, float]) -> str:
    """ready (took a ready warm watchdog), waited (for one being made) or own (a container
    of its own: no warm watchdog came)."""
    if "wait_ms" not in phases:
        return "own"
    return "ready" if phases["wait_ms"] <= READY_WAIT_MS else "waited"


@dataclass
class Single:
    """Part 1, for one function."""

    name: str
    image: str = ""
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    warm_phases: list[dict[str, float]] = field(default_factory=list)
    ordinary_phases: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Round:
    """Part 2, one round of ten simultaneous cold starts."""

    times: list[float]
    started: dict[str, int]
    """how_started (or "gave up": own, after waiting TAKE_WAIT) -> count."""
    pool_ready: int
    """Plain watchdogs ready when the round began (0 on the ordinary path)."""


@dataclass
class Result:
    runs: int
    singles: dict[str, Single]
    bursts: dict[str, list[Round]] = field(default_factory=lambda: {"warm": [], "ordinary": []})
    at_rest: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, list[int]] = field(default_factory=dict)
    """The warm watchdogs at rest as the engine measures them: image -> working sets."""
    load: list[tuple[float, float, float]] = field(default_factory=list)
    """The machine's load averages at the start and at the end."""
    problems: Problems = field(default_factory=Problems)
    logged: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    logs: str | None = None
    """Where the gateways' logs were kept (when they logged problems or left something)."""


def part_single(
    result: Result,
    warm: Gateway,
    ordinary: Gateway,
    client: docker.DockerClient,
    http: httpx.Client,
) -> None:
    network = f"faas-{warm.project}"
    for run in range(result.runs):
        order = SIDES[run % 3 :] + SIDES[: run % 3]
        for name, single in result.singles.items():
            for side in order:
                settle(warm, ordinary, (name,), client, result.problems)
                if side == "docker":
                    elapsed = docker_start(client, http, single.image, network, LIBRARIES[name])
                    single.times[side].append(elapsed)
                    continue
                gateway = warm if side == "warm" else ordinary
                single.times[side].append(call(http, gateway.url, name))
                phases = gateway.functions()[name]["last_cold_start_phases"]
                (single.warm_phases if side == "warm" else single.ordinary_phases).append(phases)
                if side == "warm" and how_started(phases) != "ready":
                    result.problems.add(
                        f"run {run + 1}: {name} found no ready watchdog on a full pool: {phases}"
                    )
        print(f"  part 1: run {run + 1}/{result.runs} done", flush=True)


def burst(http: httpx.Client, url: str, names: tuple[str, ...]) -> list[float]:
    """Call every function in `names` at once (one thread each, released together)."""
    barrier = threading.Barrier(len(names))

    def one(name: str) -> float:
        barrier.wait()
        return call(http, url, name)

    with ThreadPoolExecutor(len(names)) as threads:
        return list(threads.map(one, names))


def part_burst(
    result: Result,
    warm: Gateway,
    ordinary: Gateway,
    client: docker.DockerClient,
    http: httpx.Client,
) -> None:
    # Rounds follow each other within the demand window (a round, its return to zero and
    # the refill take a few seconds): the warm rounds first, so the ordinary ones do not
    # stretch the gaps between them.
    for side, gateway in (("warm", warm), ("ordinary", ordinary)):
        for number in range(ROUNDS):
            pools = settle(warm, ordinary, PLAIN, client, result.problems)
            plain = next(p for p in pools["pools"] if not p["preload"])
            times = burst(http, gateway.url, PLAIN)
            functions = gateway.functions()
            started = {"ready": 0, "waited": 0, "own": 0, "gave up": 0}
            for name, elapsed in zip(PLAIN, times, strict=True):
                info = functions[name]
                how = how_started(info["last_cold_start_phases"])
                unreported = elapsed * 1000 - (info["last_cold_start_ms"] or 0)
                if how == "own" and side == "warm" and unreported > GAVE_UP_MS:
                    how = "gave up"
                started[how] += 1
            ready = plain["ready"] if side == "warm" else 0
            result.bursts[side].append(Round(times, started, ready))
            print(f"  part 2: {side} round {number + 1}/{ROUNDS} done", flush=True)


def part_rest(result: Result, warm: Gateway, client: docker.DockerClient) -> None:
    wait_for_zero(warm, PLAIN, client)
    time.sleep(IDLE)
    # the pools shrink back at the next refresh (every second); wait until they are steady
    deadline = time.monotonic() + 30
    while True:
        pools = wait_for_pools(warm, result.problems)
        if all(p["target"] == min(2, pools["maximum"]) for p in pools["pools"]):
            break
        if time.monotonic() > deadline:
            result.problems.add(f"pools not back to their minimum after {IDLE:g} s idle: {pools}")
            break
        time.sleep(0.2)
    # measured again once they are steady (a pool re-measures every 10 s)
    time.sleep(1)
    result.at_rest = wait_for_pools(warm, result.problems)
    labels = [f"faas.project={warm.project}", "faas.role=warm"]
    for container in client.api.containers(filters={"label": labels}):
        stats = client.api.stats(container["Id"], stream=False, one_shot=True)
        used = from_stats(stats.get("memory_stats") or {}) or 0
        result.engine.setdefault(container["Image"], []).append(used)


def run(runs: int = 10) -> Result:
    client = docker.from_env()
    suffix = uuid.uuid4().hex[:6]
    result = Result(runs, {name: Single(name) for name in LIBRARIES})
    result.load.append(os.getloadavg())
    # One client made up front: creating one loads TLS certificates (~20 ms), which must
    # not land inside a timed section. Each request still opens a new connection.
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=100)
    projects = (f"bench-warmreq-{suffix}", f"bench-ordinary-{suffix}")
    logs = tempfile.mkdtemp(prefix="warm-requirements-")
    gateways: list[Gateway] = []
    try:
        with (
            logged_gateway(SPEC, projects[0], Path(logs)) as warm,
            logged_gateway(ORDINARY_SPEC, projects[1], Path(logs)) as ordinary,
            httpx.Client(timeout=1, limits=limits, trust_env=False) as http,
        ):
            gateways += [warm, ordinary]
            functions = warm.functions()
            for name, single in result.singles.items():
                single.image = str(functions[name]["image"])
            for name in (*LIBRARIES, PLAIN[0]):  # first calls, untimed: pools' creation
                call(http, warm.url, name)
                call(http, ordinary.url, name)
            part_single(result, warm, ordinary, client, http)
            part_burst(result, warm, ordinary, client, http)
            part_rest(result, warm, client)
    finally:  # once both have stopped: what their teardown logged too
        result.logged = [line for g in gateways for line in g.problems()]
        if sys.exc_info()[0] is not None:
            print(f"gateway logs kept in {logs}", file=sys.stderr)
    result.load.append(os.getloadavg())
    for project in projects:
        listing = client.api.containers(all=True, filters={"label": f"faas.project={project}"})
        result.left_behind += [c["Names"][0].lstrip("/") for c in listing]
        result.left_behind += [n.name for n in client.networks.list(names=[f"faas-{project}"])]
    if result.logged or result.left_behind:
        result.logs = logs
    else:
        shutil.rmtree(logs)
    return result


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(label: str, samples: list[float]) -> str:
    return (
        f"  {label:<30} p50 {statistics.median(samples) * 1000:7.1f} ms   "
        f"p90 {percentile(samples, 0.9) * 1000:7.1f} ms   "
        f"min {min(samples) * 1000:7.1f} ms   max {max(samples) * 1000:7.1f} ms"
    )


def ratio(label: str, ours: list[float], other: list[float]) -> str:
    p50 = statistics.median(ours) / statistics.median(other)
    p90 = percentile(ours, 0.9) / percentile(other, 0.9)
    return f"  ratio {label:<24} p50 {p50:5.2f}x   p90 {p90:5.2f}x"


def phase_medians(phases: list[dict[str, float]]) -> str:
    names = sorted({name for p in phases for name in p})
    return "  ".join(
        f"{name} {statistics.median(p.get(name, 0.0) for p in phases):.1f}" for name in names
    )


def mib(count: float) -> str:
    return f"{count / 2**20:6.1f} MiB"


def report(result: Result) -> None:
    loads = " -> ".join("/".join(f"{x:.1f}" for x in load) for load in result.load)
    print(f"\nload average (1, 5, 15 min), start -> end: {loads} ({os.cpu_count()} CPUs)")
    print(f"\n1. zero -> first 200, {result.runs} runs per side, alternating")
    for single in result.singles.values():
        times = single.times
        print(f"{single.name} (imports {LIBRARIES[single.name]}; image {single.image})")
        print(summary("warm pool (default)", times["warm"]))
        print(summary("ordinary (warm_pool: 0)", times["ordinary"]))
        print(summary("docker start->200 + import", times["docker"]))
        print(ratio("warm/docker", times["warm"], times["docker"]) + "   (target <= 0.25x)")
        print(ratio("warm/ordinary", times["warm"], times["ordinary"]))
        missed = sum(how_started(p) != "ready" for p in single.warm_phases)
        print(f"  warm runs that found no ready watchdog: {missed} of {len(single.warm_phases)}")
        print(f"  warm phases, p50 ms:     {phase_medians(single.warm_phases)}")
        print(f"  ordinary phases, p50 ms: {phase_medians(single.ordinary_phases)}")
    print(f"\n2. {len(PLAIN)} plain functions cold-started at once, {ROUNDS} rounds back to back")
    for side, rounds in result.bursts.items():
        calls = [t for r in rounds for t in r.times]
        label = "warm pool (default)" if side == "warm" else "ordinary (warm_pool: 0)"
        print(summary(label, calls))
        for number, played in enumerate(rounds, 1):
            started = played.started
            own = started["own"] + started["gave up"]
            print(
                f"    round {number}: p50 {statistics.median(played.times) * 1000:6.1f} ms  "
                f"max {max(played.times) * 1000:6.1f} ms;  {started['ready']:2} found a ready "
                f"watchdog ({played.pool_ready} ready at the start), {started['waited']:2} "
                f"waited for one being made, {own:2} own container"
                + (f" ({started['gave up']} after waiting {TAKE_WAIT:g} s)" if own else "")
            )
    warm = result.at_rest
    print(f"\n3. warm pools at rest (after {IDLE:g} s idle)")
    for pool in warm["pools"]:
        per = pool["per_watchdog"]
        print(
            f"  {pool['pool']:<34} ready {pool['ready']} target {pool['target']}  "
            f"{mib(pool['memory'])}  ({mib(per) if per else '  unmeasured'} each)"
        )
    print(
        f"  total {mib(warm['memory'])} of a {mib(warm['memory_budget'])} budget "
        f"(at most {warm['maximum']} per pool)"
    )
    engine = [used for image in result.engine.values() for used in image]
    print(f"  engine's figure for the same: {len(engine)} watchdog(s), {mib(sum(engine))}")
    for image, sizes in sorted(result.engine.items()):
        print(f"    {image:<32} {len(sizes)} x {', '.join(mib(s).strip() for s in sizes)}")
    print("\nproblems")
    for line in result.problems.lines:
        print(f"  {line}")
    for line in result.logged:
        print(f"  gateway log: {line}")
    if result.left_behind:
        print(f"  left behind: {', '.join(result.left_behind)}")
    if result.logs:
        print(f"  the gateways' logs are kept in {result.logs}")
    if not (result.problems.lines or result.logged or result.left_behind):
        print("  none (no warnings logged, no containers or networks left behind)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    report(run(args.runs))


if __name__ == "__main__":
    main()
