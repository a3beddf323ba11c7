"""The warm pool: a function at zero holds nothing, and starts on a shared pre-started watchdog."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests import engines
from tests.conftest import Gateway, run_cli, running_gateway, running_replicas, wait_for
from tests.engines import Target, drops_every_capability

pytestmark = pytest.mark.docker

# Every test here runs once on each engine and runtime the machine has.
engine = engines.engine
docker_client = engines.docker_client

SPEC = Path(__file__).parent / "projects" / "secure" / "functions-warm.yaml"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def secret() -> str:
    value = secrets.token_hex(16)
    result = run_cli("secrets", "set", "db-password", "-f", str(SPEC), "--value", value)
    assert result.returncode == 0, result.stderr
    return value


@pytest.fixture(scope="module")
def warm(
    engine: Target,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    secret: str,
) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("logs")
    # --no-reload: the code is sent to the warm watchdog, not mounted (development)
    args = ("--no-reload", *engine.up_args)
    with running_gateway(docker_client, SPEC, "warm", logs, *args, env=engine.env) as gateway:
        yield gateway


@pytest.fixture
def client(warm: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=warm.url, timeout=30, trust_env=False) as client:
        yield client


def unassigned(client: docker.DockerClient, project: str) -> list[dict[str, Any]]:
    """Running warm watchdogs that no function has been given yet."""
    labels = [f"faas.project={project}", "faas.role=warm"]
    found = client.api.containers(filters={"label": labels})
    return [c for c in found if c["Names"][0].lstrip("/").startswith(f"faas-{project}.warm-")]


@pytest.fixture(scope="module")
def pools(engine: Target) -> int:
    """Warm pools of the project, of one watchdog each. runsc cannot change a running
    sandbox's limits, so under gVisor each set of limits has a pool: probe's and other's."""
    return 2 if engine.name == "gvisor" else 1


OTHER_MEMORY = 256 * MIB
"""`other` has the default memory; `probe` 96 MiB."""


def at_zero(client: docker.DockerClient, project: str, pools: int) -> bool:
    return not running_replicas(client, project) and len(unassigned(client, project)) == pools


def watchdog_for(client: docker.DockerClient, project: str, memory: int) -> dict[str, Any]:
    """The unassigned warm watchdog a function with `memory` starts on: the only one, or
    under gVisor the one made with its limits."""
    waiting = unassigned(client, project)
    if len(waiting) == 1:
        return waiting[0]
    (chosen,) = [
        c
        for c in waiting
        if client.api.inspect_container(c["Id"])["HostConfig"]["Memory"] == memory
    ]
    return chosen


def wait_until_warm_ready(warm: Gateway, pools: int) -> None:
    """Running is not enough: the pool counts a watchdog once it answers ready."""
    wait_for(lambda: warm.warm_ready() == pools, 30, "the warm watchdogs counted as ready")


def test_functions_at_zero_hold_nothing(
    pools: int, warm: Gateway, docker_client: docker.DockerClient
) -> None:
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")
    everything = docker_client.api.containers(
        all=True, filters={"label": f"faas.project={warm.project}"}
    )
    held = sorted(
        (c["Labels"].get("faas.role", "replica"), c["Labels"].get("faas.function"))
        for c in everything
    )
    # no container of either function (not even one created ahead): only the project's
    # warm watchdogs, which name no function
    assert held == [("warm", None)] * pools


def test_metrics_show_the_ready_warm_watchdogs(
    pools: int, warm: Gateway, docker_client: docker.DockerClient
) -> None:
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")
    wait_until_warm_ready(warm, pools)


def test_cold_start_on_a_warm_watchdog(
    pools: int,
    engine: Target,
    warm: Gateway,
    client: httpx.Client,
    docker_client: docker.DockerClient,
    secret: str,
) -> None:
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")
    waiting = watchdog_for(docker_client, warm.project, 96 * MIB)

    response = client.get("/function/probe")
    assert response.status_code == 200, response.text
    report = response.json()
    # the function's code, environment and secret reached it; the gateway's token did not
    assert report["secrets"] == {"db-password": secret}
    assert report["environment"]["GREETING"] == "hi"
    assert "FAAS_TOKEN" not in report["environment"]
    # its own code only: not the other handler in functions/ (echo.py)
    assert report["code_files"] == ["functions/probe.py"]
    # the hardening of any replica: the watchdog left root before the function loaded
    assert report["uid"] == 10001 and report["gid"] == 10001
    assert report["cap_eff"] == report["cap_prm"] == "0000000000000000"
    # its files are root's: it can neither write them nor give itself the permission
    assert report["chmod_own_code"] == dict.fromkeys(report["chmod_own_code"], False)
    assert report["no_new_privs"] == "1"
    assert report["writable"] == {
        "/app/x": False,
        "/etc/x": False,
        "/opt/faas/x": False,
        "/run/x": False,
        "/tmp/x": True,
    }

    (replica,) = running_replicas(docker_client, warm.project, "probe")
    assert replica["Id"] == waiting["Id"]  # the warm watchdog itself became the replica
    assert replica["Names"][0].lstrip("/").startswith(f"faas-{warm.project}-probe-")
    attrs = docker_client.api.inspect_container(replica["Id"])
    host = attrs["HostConfig"]
    if engine.limits_in_inspect:  # the function's own limits, applied before its code arrived
        assert (host["Memory"], host["MemorySwap"]) == (96 * MIB, 96 * MIB)
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 256
    assert host["ReadonlyRootfs"] is True
    assert drops_every_capability(host["CapDrop"])
    assert "no-new-privileges" in host["SecurityOpt"]
    # started as root with only the capabilities to leave it (the report above)
    assert attrs["Config"]["User"] == "0:0"
    if host["CapAdd"]:
        assert sorted(cap.removeprefix("CAP_") for cap in host["CapAdd"]) == ["SETGID", "SETUID"]
    else:  # Podman records the capabilities kept as the ones not dropped
        assert not {"SETGID", "SETUID"} & {cap.removeprefix("CAP_") for cap in host["CapDrop"]}
    assert secret not in json.dumps(attrs)

    rows = {f["name"]: f for f in json.loads(warm.cli("ls", "--json").stdout)["functions"]}
    phases = rows["probe"]["last_cold_start_phases"]
    assert set(phases) == {"wait_ms", "assign_ms", "init_ms"}
    # without a faas.function label, the gateway says which container serves it
    assert rows["probe"]["replica_names"] == [replica["Names"][0].lstrip("/")]

    # the pool makes a successor for the one taken
    wait_for(lambda: len(unassigned(docker_client, warm.project)) == pools, 30, "a successor")
    assert waiting["Id"] not in {c["Id"] for c in unassigned(docker_client, warm.project)}


def test_a_warm_watchdog_serves_one_function_then_goes(
    pools: int, warm: Gateway, client: httpx.Client, docker_client: docker.DockerClient
) -> None:
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")
    assert client.get("/function/probe").status_code == 200
    (probe,) = running_replicas(docker_client, warm.project, "probe")
    wait_for(lambda: len(unassigned(docker_client, warm.project)) == pools, 30, "a successor")
    assert client.get("/function/other").status_code == 200
    (other,) = running_replicas(docker_client, warm.project, "other")
    assert other["Id"] != probe["Id"]
    # idle past idle_timeout: removed, not handed back to the pool
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")

    def removed() -> bool:
        left = {c["Id"] for c in docker_client.api.containers(all=True)}
        return probe["Id"] not in left and other["Id"] not in left

    wait_for(removed, 10, "both replicas removed")


def test_more_cold_starts_than_warm_watchdogs(
    pools: int, warm: Gateway, docker_client: docker.DockerClient
) -> None:
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")
    statuses: dict[str, int] = {}

    def call(function: str) -> None:
        with httpx.Client(base_url=warm.url, timeout=30, trust_env=False) as client:
            statuses[function] = client.get(f"/function/{function}").status_code

    threads = [threading.Thread(target=call, args=(f,)) for f in ("probe", "other")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == {"probe": 200, "other": 200}


def test_a_dead_warm_watchdog_does_not_fail_a_call(
    pools: int, warm: Gateway, client: httpx.Client, docker_client: docker.DockerClient
) -> None:
    wait_for(lambda: at_zero(docker_client, warm.project, pools), 30, "every function at zero")
    wait_until_warm_ready(warm, pools)
    waiting = watchdog_for(docker_client, warm.project, OTHER_MEMORY)
    docker_client.api.kill(waiting["Id"])
    response = client.get("/function/other")
    assert response.status_code == 200, response.text
    (replica,) = running_replicas(docker_client, warm.project, "other")
    assert replica["Id"] != waiting["Id"]
