"""The kubernetes backend's gateway side on real replicas, with the cluster's DNS stood in for.

No Kubernetes cluster runs here. What the gateway pod does is still real:
real watchdog containers (started by the test, as a Deployment's pods would
be) are found through a resolver answering what the headless Service's name
would, checked ready, put to work, called, and retired when they go.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import docker
import pytest

from runtime.backends.base import ReplicaSpec
from runtime.backends.docker import DockerBackend, containers
from runtime.backends.kubernetes import KubernetesBackend
from runtime.invocation import Invocation
from runtime.platform import Platform
from runtime.spec import load_project
from tests.conftest import REPO, unique_project, wait_for

pytestmark = pytest.mark.docker

HANDLER = "functions/hello.py"


def start_pod(
    client: docker.DockerClient, image: str, token: str, project: str, network: str
) -> str:
    """A container configured as the exported Deployment configures a pod."""
    spec = ReplicaSpec(function="hello", image=image, token=token, handler_file=HANDLER)
    api = client.api
    created = api.create_container(
        host_config=api.create_host_config(network_mode=network),
        **containers.container_args(spec, project, f"{project}-pod", "pod"),
    )
    api.start(created["Id"])
    address: str = api.inspect_container(created["Id"])["NetworkSettings"]["Networks"][network][
        "IPAddress"
    ]
    return address


async def call_hello(platform: Platform) -> tuple[int, bytes]:
    invocation = Invocation("hello", "GET", "/", b"", [], b"", secrets.token_hex(16))
    result = await platform.invoke(invocation)
    body = b"".join([chunk async for chunk in result.body])
    await result.close()
    return result.status, body


def test_gateway_finds_pods_by_dns_and_calls_them(
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project_name = unique_project("k8s")
    project = load_project(REPO / "functions.yaml", project_name=project_name)
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv("FAAS_NAMESPACE", "shop")
    monkeypatch.setenv("FAAS_REPLICA_TOKEN", token)
    answers: dict[str, list[str]] = {}

    async def scenario() -> None:
        builder = Platform(project, DockerBackend(project_name))
        try:
            await builder.build()  # the images a registry would hold
            image = builder.pools["hello"].image
            assert image is not None
            network = containers.network_name(project_name)
            pod = await asyncio.to_thread(
                start_pod, docker_client, image, token, project_name, network
            )

            platform = Platform(project, KubernetesBackend(project_name, resolver=resolve))
            await platform.deploy()
            # At zero pods, nothing resolves; once "KEDA" starts one, its address does.
            answers["hello.shop.svc.cluster.local"] = [pod]
            assert await call_hello(platform) == (200, b"Hello, world!\n")
            assert platform.pools["hello"].replicas[0].replica.address == f"{pod}:8080"
            assert list(platform.autoscaler.events) == []  # KEDA scales, not the gateway
            answers["hello.shop.svc.cluster.local"] = []
            await asyncio.to_thread(
                wait_for, lambda: not platform.pools["hello"].replicas, 10, "the pod to retire"
            )
            await platform.shutdown()
        finally:
            await builder.shutdown()

    def resolve(name: str) -> list[str]:
        return answers.get(name, [])

    asyncio.run(scenario())
