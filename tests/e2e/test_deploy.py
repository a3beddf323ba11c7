"""`faas deploy`: the example project's gateway as a Swarm service, called, then removed.

Runs on the single-node swarm of the `swarm` fixture. On a kernel
without IPVS the routing mesh cannot work, and `faas deploy` publishes in host
mode instead (its `--publish-mode auto`); the call goes through the published
port either way.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import docker
import httpx
import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.docker

FAAS = str(REPO / ".venv" / "bin" / "faas")


def leftovers(client: docker.DockerClient, project: str) -> dict[str, list[str]]:
    label = {"label": f"faas.project={project}"}
    return {
        "services": [s.name for s in client.services.list(filters=label)],
        "containers": [c.name for c in client.containers.list(all=True, filters=label)],
        "networks": [n.name for n in client.networks.list(filters=label)],
        "secrets": [s.name for s in client.secrets.list(filters=label)],
        "volumes": [v.name for v in client.volumes.list(filters=label)],
    }


def faas(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAAS, *args, "-f", str(REPO / "functions.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(300)
def test_deploy_serves_hello_then_removes_everything(
    swarm: None, docker_client: docker.DockerClient
) -> None:
    project = f"t-deploy-{uuid.uuid4().hex[:6]}"
    port = free_port()
    try:
        deployed = faas("deploy", "--project", project, "--port", str(port), timeout=240)
        assert deployed.returncode == 0, deployed.stderr
        url = deployed.stdout.strip().splitlines()[-1]
        assert url == f"http://127.0.0.1:{port}"
        service = docker_client.services.get(f"faas-{project}-gateway")
        spec = service.attrs["Spec"]
        assert spec["Labels"] == {"faas.project": project, "faas.role": "gateway"}
        assert "node.role==manager" in spec["TaskTemplate"]["Placement"]["Constraints"]
        assert spec["EndpointSpec"]["Ports"][0]["PublishedPort"] == port
        assert "FAAS_SWARM_ADDRESS=overlay" in spec["TaskTemplate"]["ContainerSpec"]["Env"]

        # The first call scales hello from zero through its Swarm service.
        deadline = time.monotonic() + 30
        while True:
            response = httpx.get(f"{url}/function/hello", timeout=30, trust_env=False)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert response.status_code == 200, response.text
        assert response.text == "Hello, world!\n"
    finally:
        removed = faas("deploy", "--remove", "--project", project, timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert leftovers(docker_client, project) == {
        "services": [],
        "containers": [],
        "networks": [],
        "secrets": [],
        "volumes": [],
    }
