"""The swarm backend on a real single-node Swarm: services scaled from zero and back."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import Gateway, run_cli, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

SCALING = Path(__file__).parent / "projects" / "scaling" / "functions.yaml"
BASE_IMAGE = "python:3.11-slim-bookworm"


@pytest.fixture(scope="module")
def scaling(
    swarm: None, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(
        docker_client, SCALING, "swarm-scale", logs, "--backend", "swarm"
    ) as gateway:
        yield gateway


def service_replicas(client: docker.DockerClient, project: str, function: str) -> int:
    service = client.api.inspect_service(f"faas-{project}-{function}")
    return int(service["Spec"]["Mode"]["Replicated"]["Replicas"])


async def burst(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:
        return await asyncio.gather(*(client.get(url, params={"ms": "400"}) for _ in range(count)))


def test_min_replicas_run_as_service_tasks(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    assert service_replicas(docker_client, scaling.project, "fast") == 1
    assert len(running_replicas(docker_client, scaling.project, "fast")) == 1
    assert service_replicas(docker_client, scaling.project, "slow") == 0
    assert running_replicas(docker_client, scaling.project, "slow") == []


def test_scale_from_zero_to_several_and_back_to_zero(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    responses = asyncio.run(burst(f"{scaling.url}/function/slow", 16))
    assert [r.status_code for r in responses] == [200] * 16
    events = scaling.admin_get("/system/scale-events").json()["events"]
    peak = max(e["to"] for e in events if e["function"] == "slow")
    assert 2 <= peak <= 4, events
    # idle_timeout is 2s: the service goes back to zero tasks, and the gateway knows it
    wait_for(
        lambda: (
            service_replicas(docker_client, scaling.project, "slow") == 0
            and not running_replicas(docker_client, scaling.project, "slow")
        ),
        60,
        "slow's service to scale back to zero",
    )
    listed = {f["name"]: f for f in scaling.admin_get("/system/functions").json()["functions"]}
    wait_for(
        lambda: (
            {f["name"]: f for f in scaling.admin_get("/system/functions").json()["functions"]}[
                "slow"
            ]["replicas"]
            == 0
        ),
        10,
        "the gateway to retire slow's replicas",
    )
    assert listed["fast"]["replicas"] == 1
    again = httpx.get(f"{scaling.url}/function/slow", params={"ms": "1"}, timeout=60)
    assert again.status_code == 200


def test_other_containers_cannot_reach_a_replica(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    fast = running_replicas(docker_client, scaling.project, "fast")[0]
    bridge = docker_client.api.inspect_network("docker_gwbridge")["Containers"]
    address = bridge[fast["Id"]]["IPv4Address"].split("/")[0]
    # the host reaches it (and is refused without the token); a container does not
    ready = httpx.get(f"http://{address}:8080/_/ready", timeout=5, trust_env=False)
    assert ready.status_code == 403
    probe = textwrap.dedent(
        f"""
        import socket
        try:
            socket.create_connection(("{address}", 8080), timeout=3)
            print("reached")
        except OSError as exc:
            print("refused", exc)
        """
    )
    output = docker_client.containers.run(
        BASE_IMAGE, ["python3", "-c", probe], remove=True, network_mode="bridge"
    )
    assert output.decode().startswith("refused"), output


def test_secrets_are_swarm_secrets(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    (tmp_path / "reader.py").write_text(
        "def handle(event, context):\n    return open('/run/secrets/greeting').read()\n"
    )
    spec = tmp_path / "functions.yaml"
    spec.write_text(
        "version: 1\n"
        "defaults: {auth: none}\n"
        "functions:\n"
        "  reader:\n"
        "    handler: reader.py\n"
        "    secrets: [greeting]\n"
    )
    stored = run_cli("secrets", "set", "greeting", "--value", "hi there", "--file", str(spec))
    assert stored.returncode == 0, stored.stderr
    with running_gateway(
        docker_client, spec, "swarm-secret", tmp_path, "--backend", "swarm"
    ) as gateway:
        response = httpx.get(f"{gateway.url}/function/reader", timeout=60)
        assert response.status_code == 200, response.text
        assert response.text == "hi there"
        label = f"faas.project={gateway.project}"
        secrets = docker_client.api.secrets(filters={"label": label})
        assert [s["Spec"]["Name"].rsplit("-", 1)[0] for s in secrets] == [
            f"faas-{gateway.project}-greeting"
        ]
    assert docker_client.api.secrets(filters={"label": label}) == []
