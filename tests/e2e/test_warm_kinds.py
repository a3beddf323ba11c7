"""Warm pools per kind of function: requirements imported before a function needs them.

A function whose requirements are numpy starts on a watchdog whose image holds
numpy and which imported it before it reported ready; functions with the same
requirements share that pool; `preload: false` moves a requirement's import to
the function's start. Every pool stays within `gateway.warm_pool_memory`, as
the kernel counts it (the containers' cgroups), under cold starts of ten
functions. The numpy wheel is resolved by scripts/test beforehand; the
requirement with a side effect is a wheel built here, installed with no index.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from runtime.backends.docker.memory import cgroup_memory
from tests.conftest import Gateway, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "warm-kinds"
MIB = 1024 * 1024
REPLICA_UID = 10001

STAMP_MODULE = b"""\
import os
import time

IMPORTED_AT = time.time()  # module-level code: it runs wherever the module is imported
IMPORTED_BY = os.getuid()
"""


def stamp_wheel() -> bytes:
    """A pure-Python wheel whose module records when, and as whom, it was imported."""
    files = {
        "stamp/__init__.py": STAMP_MODULE,
        "stamp-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: stamp\nVersion: 1.0\n",
        "stamp-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},,\n" for name in files) + "stamp-1.0.dist-info/RECORD,,\n"
    files["stamp-1.0.dist-info/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, content in files.items():
            wheel.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def kinds(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("warm-kinds") / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns(".faas", "__pycache__"))
    (root / "functions" / "stamp-1.0-py3-none-any.whl").write_bytes(stamp_wheel())
    logs = tmp_path_factory.mktemp("logs")
    spec = root / "functions.yaml"
    with running_gateway(docker_client, spec, "kinds", logs, "--no-reload") as gateway:
        yield gateway


def warm_pools(gateway: Gateway) -> list[dict[str, Any]]:
    answer = gateway.admin_get("/system/functions").json()
    return list(answer["warm"]["pools"])


def pool_of(gateway: Gateway, function: str) -> dict[str, Any]:
    (pool,) = [p for p in warm_pools(gateway) if function in p["functions"]]
    return pool


def ready_for(gateway: Gateway, function: str) -> bool:
    """The pool `function` starts from has a measured watchdog ready for it."""
    pool = pool_of(gateway, function)
    return pool["ready"] >= 1 and pool["per_watchdog"] is not None


def containers_of(client: docker.DockerClient, project: str) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters={"label": f"faas.project={project}"}))


def unassigned(client: docker.DockerClient, project: str) -> list[dict[str, Any]]:
    """Running warm watchdogs that no function has been given yet."""
    return [
        c
        for c in client.api.containers(filters={"label": f"faas.project={project}"})
        if c["Names"][0].lstrip("/").startswith(f"faas-{project}.warm-")
    ]


def at_zero(client: docker.DockerClient, project: str) -> bool:
    return not running_replicas(client, project)


def call(gateway: Gateway, function: str) -> Any:
    with httpx.Client(base_url=gateway.url, timeout=60, trust_env=False) as client:
        response = client.get(f"/function/{function}")
    assert response.status_code == 200, response.text
    return (
        response.json()
        if response.headers["content-type"].startswith("application/json")
        else response.text
    )


def test_a_numpy_function_starts_warm_with_numpy_imported_once(
    kinds: Gateway, docker_client: docker.DockerClient
) -> None:
    project = kinds.project
    wait_for(lambda: at_zero(docker_client, project), 30, "every function at zero")
    wait_for(lambda: ready_for(kinds, "numeric"), 60, "a numpy watchdog ready")
    # at zero the function holds nothing of its own: every container is a warm watchdog
    # that names no function
    held = {(c["Labels"].get("faas.role"), c["Labels"].get("faas.function")) for c in
            containers_of(docker_client, project)}  # fmt: skip
    assert held == {("warm", None)}
    assert not [c for c in containers_of(docker_client, project) if "-numeric-" in c["Names"][0]]
    pool = pool_of(kinds, "numeric")
    assert pool["preload"] == ["numpy"]
    waiting = {c["Id"] for c in unassigned(docker_client, project)}

    answer = call(kinds, "numeric")
    # numpy was in sys.modules before the handler's module imported it: the pool imported
    # it, once, before the function was given to the watchdog; and numpy works
    assert answer == {"already_imported": True, "sum": 45}
    (replica,) = running_replicas(docker_client, project, "numeric")
    assert replica["Id"] in waiting  # a warm watchdog of the pool became its replica
    logs = docker_client.api.logs(replica["Id"]).decode()
    assert '"msg": "preloaded", "modules": "numpy"' in logs
    row = {f["name"]: f for f in kinds.admin_get("/system/functions").json()["functions"]}
    assert set(row["numeric"]["last_cold_start_phases"]) == {"wait_ms", "assign_ms", "init_ms"}


def test_functions_with_the_same_requirements_share_one_pool(
    kinds: Gateway, docker_client: docker.DockerClient
) -> None:
    pools = warm_pools(kinds)
    numeric = pool_of(kinds, "numeric")
    assert numeric["functions"] == ["numeric", "numeric-too"]
    # the two stamp functions differ in preload only: two pools; numpy's is a third
    assert len(pools) == 3
    assert pool_of(kinds, "stamp-early")["pool"] != pool_of(kinds, "stamp-late")["pool"]
    # `faas ls` shows them too
    listed = json.loads(kinds.cli("ls", "--json").stdout)["warm"]
    assert sorted(p["pool"] for p in listed["pools"]) == sorted(p["pool"] for p in pools)
    assert listed["memory_budget"] == 512 * MIB
    assert "warm pools" in kinds.cli("ls").stdout
    wait_for(lambda: at_zero(docker_client, kinds.project), 30, "every function at zero")
    wait_for(lambda: ready_for(kinds, "numeric-too"), 60, "a numpy watchdog ready")
    assert call(kinds, "numeric-too") == {"already_imported": True, "dot": 11}


def test_preload_false_runs_a_requirements_import_at_the_start_not_in_the_pool(
    kinds: Gateway, docker_client: docker.DockerClient
) -> None:
    assert pool_of(kinds, "stamp-early")["preload"] == ["stamp"]
    assert pool_of(kinds, "stamp-late")["preload"] == []
    wait_for(lambda: at_zero(docker_client, kinds.project), 30, "every function at zero")
    for function in ("stamp-early", "stamp-late"):
        wait_for(lambda f=function: ready_for(kinds, f), 60, f"a watchdog ready for {function}")
    called_at = time.time()  # the host's clock is the containers' (one kernel)
    early, late = call(kinds, "stamp-early"), call(kinds, "stamp-late")
    # preloaded: imported by the pool, before this call was made
    assert early["imported_at"] < called_at
    # not preloaded: its module-level code ran when the function was given the watchdog
    assert late["imported_at"] >= called_at
    # either way the requirement's module-level code ran as the replica user, never as root
    assert early["imported_by"] == late["imported_by"] == REPLICA_UID


# -- the memory budget --------------------------------------------------------------

BUDGET = 40 * MIB
"""Two plain watchdogs (~17 MiB each here), not three."""
FUNCTIONS = [f"f{n}" for n in range(10)]
BUDGET_SPEC = f"""\
version: 1
project: budget
gateway:
  warm_pool: 8
  warm_pool_memory: {BUDGET}
defaults:
  auth: none
  scale: {{min: 0, max: 1, idle_timeout: 1s}}
functions:
""" + "".join(f"  {name}:\n    handler: functions/plain.py\n" for name in FUNCTIONS)


@pytest.fixture(scope="module")
def budget(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("warm-budget")
    (root / "functions").mkdir()
    (root / "functions" / "plain.py").write_text("def handle(event, context):\n    return 'ok'\n")
    (root / "functions.yaml").write_text(BUDGET_SPEC)
    logs = tmp_path_factory.mktemp("logs")
    spec = root / "functions.yaml"
    with running_gateway(docker_client, spec, "budget", logs, "--no-reload") as gateway:
        yield gateway


class PoolMemory:
    """Samples, until stopped, the memory the kernel charges to every unassigned warm
    watchdog of a project (their cgroups), summed."""

    def __init__(self, client: docker.DockerClient, project: str) -> None:
        self.samples: list[tuple[int, int]] = []
        """(watchdogs, bytes) at each sample."""
        self._client, self._project = client, project
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PoolMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            total, count = 0, 0
            for container in unassigned(self._client, self._project):
                try:
                    pid = self._client.api.inspect_container(container["Id"])["State"]["Pid"]
                except docker.errors.NotFound:
                    continue  # handed to a function, or removed, meanwhile
                used = cgroup_memory(pid) if pid else None
                if used is not None:
                    total, count = total + used, count + 1
            self.samples.append((count, total))


def test_the_warm_pools_stay_within_their_memory_budget(
    budget: Gateway, docker_client: docker.DockerClient
) -> None:
    project = budget.project
    wait_for(lambda: warm_pools(budget)[0]["per_watchdog"], 60, "a warm watchdog measured")
    answers: list[Any] = []

    def answer(function: str) -> None:
        try:
            answers.append(call(budget, function))
        except BaseException as exc:  # reported by the test, not lost in the thread
            answers.append(exc)

    with PoolMemory(docker_client, project) as memory:
        for _ in range(3):  # cold starts of the ten functions, two at a time, then zero
            wait_for(lambda: at_zero(docker_client, project), 30, "every function at zero")
            for pair in range(0, len(FUNCTIONS), 2):
                threads = [
                    threading.Thread(target=answer, args=(f,)) for f in FUNCTIONS[pair : pair + 2]
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        wait_for(lambda: at_zero(docker_client, project), 30, "every function at zero")
    assert answers == ["ok"] * 30
    (pool,) = warm_pools(budget)
    assert pool["per_watchdog"] * pool["target"] <= BUDGET
    assert memory.samples, "the pool's memory was never sampled"
    most = max(total for _, total in memory.samples)
    assert most <= BUDGET, f"the warm watchdogs held {most / MIB:.1f} MiB"
    # the budget was what held the pool back: ten cold starts within seconds wish for 8
    assert max(count for count, _ in memory.samples) < 8
    rows = budget.admin_get("/system/functions").json()["functions"]
    warm_starts = [r for r in rows if "assign_ms" in (r["last_cold_start_phases"] or {})]
    assert warm_starts, "no function started on a warm watchdog"
