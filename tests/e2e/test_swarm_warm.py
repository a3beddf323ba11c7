"""Warm starts on a real single-node Swarm: a cold start claims a warm service's task;
an idle one is retired and Swarm refills its slot; a hostile function on a claimed task
cannot reach another function's task (runtime/supply/warm_tasks.py, SECURITY.md)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Gateway, run_cli, running_gateway, wait_for

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "swarm-warm" / "functions.yaml"
WARM_TASKS = 3


@pytest.fixture(scope="module")
def victim_key() -> str:
    value = secrets.token_hex(16)
    stored = run_cli("secrets", "set", "victim-key", "-f", str(SPEC), "--value", value)
    assert stored.returncode == 0, stored.stderr
    return value


@pytest.fixture(scope="module")
def gateway(
    swarm: None,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    victim_key: str,
) -> Iterator[Gateway]:
    """Without reloading, as in production: a claim sends the code and secrets."""
    logs = tmp_path_factory.mktemp("logs")
    args = ("--backend", "swarm", "--no-reload")
    with running_gateway(docker_client, SPEC, "swarm-warm", logs, *args) as gateway:
        yield gateway


def warm_service(client: docker.DockerClient, project: str) -> dict[str, Any]:
    label = [f"faas.project={project}", "faas.role=warm"]
    found = client.api.services(filters={"label": label})
    assert len(found) == 1, found  # one kind, one set of limits
    return dict(found[0])


def warm_containers(client: docker.DockerClient, service: dict[str, Any]) -> dict[str, str]:
    """Running warm tasks: short container id (the task's hostname) -> task id."""
    tasks = client.api.tasks(filters={"service": service["ID"], "desired-state": "running"})
    return {
        t["Status"]["ContainerStatus"]["ContainerID"][:12]: t["ID"]
        for t in tasks
        if t["Status"]["State"] == "running"
    }


def all_warm(client: docker.DockerClient, project: str) -> dict[str, str]:
    return wait_for(
        lambda: (
            found
            if len(found := warm_containers(client, warm_service(client, project))) == WARM_TASKS
            else None
        ),
        60,
        f"{WARM_TASKS} running warm tasks",
    )


def claimable(gateway: Gateway) -> int:
    """Warm tasks the gateway lists as free to claim (`faas ls`: warm services)."""
    warm = gateway.admin_get("/system/functions").json()["warm"]
    return int(sum(pool["ready"] for pool in warm["pools"]))


def service_replicas(client: docker.DockerClient, project: str, function: str) -> int:
    service = client.api.inspect_service(f"faas-{project}-{function}")
    return int(service["Spec"]["Mode"]["Replicated"]["Replicas"])


def call(gateway: Gateway, function: str, body: bytes = b"", query: str = "") -> Any:
    url = f"{gateway.url}/function/{function}{query}"
    response = httpx.post(url, content=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_cold_start_claims_a_warm_task_and_an_idle_one_is_retired(
    gateway: Gateway, docker_client: docker.DockerClient
) -> None:
    before = all_warm(docker_client, gateway.project)
    wait_for(lambda: claimable(gateway) == WARM_TASKS, 30, "the gateway to list them")
    answer = call(gateway, "brief", b"first")
    # served by a claimed warm task; the function's own service was never scaled
    assert answer["host"] in before, (answer, before)
    assert service_replicas(docker_client, gateway.project, "brief") == 0
    claimed = before[answer["host"]]
    # idle_timeout is 2s: the task is told to exit, and Swarm puts a new warm task in its slot
    wait_for(
        lambda: docker_client.api.inspect_task(claimed)["Status"]["State"] == "complete",
        60,
        "the claimed task to exit",
    )
    after = all_warm(docker_client, gateway.project)
    assert answer["host"] not in after
    assert docker_client.api.inspect_task(claimed)["Status"]["ContainerStatus"]["ExitCode"] == 0
    assert "warm task retired" in gateway.log()
    assert service_replicas(docker_client, gateway.project, "brief") == 0


def warm_address(client: docker.DockerClient, project: str, host: str) -> str:
    networks = client.api.inspect_container(host)["NetworkSettings"]["Networks"]
    return str(networks[f"faas-{project}-warm"]["IPAddress"])


def test_a_hostile_function_cannot_reach_another_functions_warm_task(
    gateway: Gateway, docker_client: docker.DockerClient, victim_key: str
) -> None:
    """The hostile function (projects/swarm-warm/functions/hostile.py) looks for the shared
    key in its environment and its own memory and tries it, and every token it finds, on
    every task of the warm network: to call, to read readiness, to claim."""
    all_warm(docker_client, gateway.project)
    wait_for(lambda: claimable(gateway) == WARM_TASKS, 30, "the gateway to list them")
    victim = call(gateway, "victim", b"private")
    assert victim["secret"] == victim_key  # sent in the claim, to the victim's task alone
    report = call(gateway, "hostile")
    assert victim_key not in json.dumps(report) and "private" not in json.dumps(report)
    service = docker_client.api.inspect_service(warm_service(docker_client, gateway.project)["ID"])
    env = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    key = next(e.split("=", 1)[1] for e in env if e.startswith("FAAS_TOKEN="))

    assert report["environment_key"] != key  # erased from the environment before it ran
    # it runs as the replica user with no capabilities, and cannot re-permit its own code
    assert (report["uid"], report["cap_eff"], report["chmod_own_code"]) == (10001, 0, False)
    victim_address = warm_address(docker_client, gateway.project, victim["host"])
    tries = report["peers"][victim_address]
    assert report["keys"] >= 1 and tries, report
    for name, outcome in tries.items():
        status = outcome[0] if isinstance(outcome, list) else outcome
        assert status == 403, (name, outcome)

    # the victim's task still serves the victim alone, and got nothing of the hostile's
    again = call(gateway, "victim", b"second")
    assert again["host"] == victim["host"]
    assert again["calls"] == ["private", "second"]
    # The residual risk (SECURITY.md): the key is in the watchdog's memory, which the
    # function shares, so it opens the claim of an unclaimed task: the hostile function
    # claimed one and planted a spy there that answers as a fresh warm watchdog would.
    others = [t for address, t in report["peers"].items() if address != victim_address]
    keys = range(report["keys"])
    assert any(t[f"ready-{n}"] == 200 and t[f"claim-{n}"] == 200 for t in others for n in keys)
    assert report["planted"]["status"] == 200, report["planted"]

    # A cold start then tries that task, the one the gateway has not claimed: its claim is
    # answered, but the task's output (read through the engine) shows someone else's claim
    # first, so nothing more is sent; the function starts on its own service.
    wait_for(lambda: claimable(gateway) == 1, 30, "the spy's task to be listed as free")
    assert call(gateway, "brief", b"later")["calls"] == ["later"]
    spied = call(gateway, "hostile", query="?collect=1")
    inits = [c for c in spied["captured"] if c["path"] == "/_/init"]
    assert inits and all(c["claim"] and c["body"] == 0 for c in inits), spied
    assert "warm task claimed first by another: not used" in gateway.log()
