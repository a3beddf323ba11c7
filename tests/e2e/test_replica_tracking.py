"""Starts that fail half-way leave no container behind, and the warm pool keeps its size.

The gateway runs out of file descriptors while functions cold-start: its
descriptor limit is lowered, while it runs, to the lowest descriptor it does not
hold, so every socket it opens from then on (to the engine, to a replica) fails
with EMFILE, as it did when ~20,000 slow callers held the descriptors. Lowering the
limit, rather than holding that many connections, does not depend on how many
connections the gateway admits. Starts fail at whatever step they had reached
(the engine call, the readiness check, the warm watchdog's init), and so do the
removals of what they made. Once the limit is back, the engine holds exactly
the replicas the gateway reports, and a sampler of the engine's listing never
saw more warm watchdogs than `gateway.warm_pool`.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Gateway, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

WARM_POOL = 2
HANDLER = """\
def handle(event, context):
    return "ok"
"""
PRESSURE = 3.0
"""Seconds the gateway has no descriptor to spare."""
CALLS_PER_FUNCTION = 2
ROUNDS = [["w0", "w1", "w2", "w3", "big"], ["v0", "v1", "v2", "v3"]]
"""Functions cold-started under each round of pressure (fresh ones each round)."""
AFTERWARDS = ["after0", "after1"]


def write_project(root: Path) -> Path:
    (root / "fns").mkdir()
    (root / "fns" / "hello.py").write_text(HANDLER)
    (root / "big").mkdir()
    (root / "big" / "hello.py").write_text(HANDLER)
    # over the 8 MiB a warm watchdog is sent: this one starts on a container of its own
    (root / "big" / "data.bin").write_bytes(b"\0" * (9 * 1024 * 1024))
    functions = "".join(
        f"  {name}:\n    handler: {'big' if name == 'big' else 'fns'}/hello.py\n"
        for name in [*ROUNDS[0], *ROUNDS[1], *AFTERWARDS]
    )
    spec = root / "functions.yaml"
    spec.write_text(
        "version: 1\n"
        f"gateway: {{warm_pool: {WARM_POOL}}}\n"
        "defaults:\n"
        "  auth: none\n"
        "  timeout: 10s\n"
        "  scale: {min: 0, max: 2, idle_timeout: 10m}\n"
        f"functions:\n{functions}"
    )
    return spec


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    spec = write_project(tmp_path_factory.mktemp("tracking"))
    logs = tmp_path_factory.mktemp("logs")
    # --no-reload bakes the code, so the large function's code counts against the
    # warm watchdogs' limit
    with running_gateway(docker_client, spec, "track", logs, "--no-reload") as served:
        yield served


class Sampler(threading.Thread):
    """Lists the project's running containers over and over; keeps the most unassigned
    warm watchdogs seen at once."""

    def __init__(self, client: docker.DockerClient, project: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.project = project
        self.most_warm = 0
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        prefix = f"faas-{self.project}.warm-"
        while not self.stopping.is_set():
            with contextlib.suppress(docker.errors.DockerException):
                running = self.client.api.containers(
                    filters={"label": f"faas.project={self.project}"}
                )
                warm = [c for c in running if c["Names"][0].lstrip("/").startswith(prefix)]
                self.most_warm = max(self.most_warm, len(warm))
                self.samples += 1
            self.stopping.wait(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@contextlib.contextmanager
def no_spare_descriptors(pid: int) -> Iterator[None]:
    """Lower `pid`'s descriptor limit to the lowest descriptor it does not hold: every
    descriptor it opens from then on fails with EMFILE. Restored on exit."""
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    held = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = next(fd for fd in range(len(held) + 1) if fd not in held)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, before[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, before)


def cold_starts_without_descriptors(
    pid: int, functions: list[str], call: Callable[[str], None]
) -> None:
    """Call `functions` at zero, take the gateway's spare descriptors away while their
    starts are under way, give them back, and wait for every call to end."""
    baseline = len(os.listdir(f"/proc/{pid}/fd"))
    callers = [
        threading.Thread(target=call, args=(name,), daemon=True)
        for name in functions
        for _ in range(CALLS_PER_FUNCTION)
    ]
    for caller in callers:
        caller.start()
    # once the gateway holds the callers' connections, their starts are under way
    wait_for(
        lambda: len(os.listdir(f"/proc/{pid}/fd")) >= baseline + len(callers) // 2,
        30,
        "the calls accepted",
    )
    with no_spare_descriptors(pid):
        time.sleep(PRESSURE)
    for caller in callers:
        caller.join(120)


def reported_replicas(gateway: Gateway) -> set[str]:
    functions = gateway.admin_get("/system/functions").json()["functions"]
    return {name for f in functions for name in f["replica_names"]}


def engine_replicas(client: docker.DockerClient, project: str) -> set[str]:
    return {c["Names"][0].lstrip("/") for c in running_replicas(client, project)}


def test_starts_failing_for_lack_of_descriptors_leave_nothing_untracked(
    gateway: Gateway, docker_client: docker.DockerClient
) -> None:
    project = gateway.project
    sampler = Sampler(docker_client, project)
    sampler.start()
    statuses: list[int | str] = []

    def call(function: str) -> None:
        try:
            with httpx.Client(base_url=gateway.url, timeout=90, trust_env=False) as client:
                statuses.append(client.get(f"/function/{function}").status_code)
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)

    try:
        pid = gateway.process.pid
        for functions in ROUNDS:
            wait_for(lambda: gateway.warm_ready() == WARM_POOL, 60, "the warm pool ready")
            cold_starts_without_descriptors(pid, functions, call)
        # every caller got an answer (any answer)
        assert len(statuses) == CALLS_PER_FUNCTION * sum(map(len, ROUNDS))

        # the pressure is gone: functions no start touched serve as before
        with httpx.Client(base_url=gateway.url, timeout=60, trust_env=False) as client:
            for name in AFTERWARDS:
                response = client.get(f"/function/{name}")
                assert response.status_code == 200, response.text

        # the engine runs exactly the replicas the gateway reports, and nothing else is
        # left (what the gateway lost, if anything, the reconcile removes)
        def consistent() -> bool:
            engine = engine_replicas(docker_client, project)
            return engine == reported_replicas(gateway) and not leftovers(docker_client, project)

        try:
            wait_for(consistent, 150, "the engine's containers to match the gateway's")
        except AssertionError:
            engine, reported = engine_replicas(docker_client, project), reported_replicas(gateway)
            raise AssertionError(
                f"running, not reported: {sorted(engine - reported)}; reported, not running: "
                f"{sorted(reported - engine)}; {leftovers(docker_client, project)}"
            ) from None
        listed = gateway.cli("ls", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)["functions"]
        in_ls = {name for row in rows for name in row["replica_names"]}
        assert in_ls == engine_replicas(docker_client, project)
        assert {row["name"] for row in rows if row["replica_names"]} >= set(AFTERWARDS)
    finally:
        sampler.stop()

    assert sampler.samples > 0
    assert sampler.most_warm <= WARM_POOL, f"{sampler.most_warm} warm watchdogs at once"


def leftovers(client: docker.DockerClient, project: str) -> list[str]:
    """What the project holds beyond its replicas: a network sandbox of no replica, a
    container created and never started (nothing is made ahead), more warm watchdogs
    than the pool's size."""
    everything = client.api.containers(all=True, filters={"label": f"faas.project={project}"})
    names = {c["Names"][0].lstrip("/") for c in everything}
    found = []
    for container in everything:
        labels: dict[str, Any] = container.get("Labels") or {}
        name = container["Names"][0].lstrip("/")
        if labels.get("faas.role") == "sandbox" and name.removesuffix("-net") not in names:
            found.append(f"{name} holds no replica's network")
    created_ahead = [
        c["Names"][0]
        for c in everything
        if c["State"] != "running" and "faas.role" not in c["Labels"]
    ]
    if created_ahead:
        found.append(f"created, not running: {created_ahead}")
    warm = [n for n in names if n.startswith(f"faas-{project}.warm-")]
    if len(warm) > WARM_POOL:
        found.append(f"warm watchdogs: {warm}")
    return found
