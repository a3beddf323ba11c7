"""Images pushed to the registry named in functions.yaml, and services that run the registry's copy.

The registry is Debian's `docker-registry` (the CNCF distribution), started on
127.0.0.1 by the test; Docker trusts registries on loopback without TLS.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import REPO, free_port, run_cli, running_gateway, wait_for

pytestmark = pytest.mark.docker


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("these tests need Debian's docker-registry (scripts/setup.sh installs it)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'store'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"http://{address}/v2/", timeout=1, trust_env=False).is_success
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, 15, "the registry to answer")
        yield address
    finally:
        process.terminate()
        process.wait(10)


def test_images_are_pushed_and_services_run_the_registry_copy(
    swarm: None, registry: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    shutil.copy(REPO / "functions" / "hello.py", tmp_path / "hello.py")
    spec = tmp_path / "functions.yaml"
    spec.write_text(
        "version: 1\n"
        f"cluster: {{backend: swarm, registry: '{registry}/team'}}\n"
        "defaults: {auth: none}\n"
        "functions:\n"
        "  hello: {handler: hello.py}\n"
    )
    built = run_cli("build", "--file", str(spec), "--project", "t-registry")
    assert built.returncode == 0, built.stderr
    catalog = httpx.get(f"http://{registry}/v2/_catalog", trust_env=False).json()
    # the function's image, and its kind's warm watchdogs' (warm services, on any node)
    assert catalog["repositories"] == ["team/faas-function", "team/faas-warm"]
    tags = httpx.get(f"http://{registry}/v2/team/faas-function/tags/list", trust_env=False)
    (tag,) = tags.json()["tags"]

    with running_gateway(docker_client, spec, "registry", tmp_path, "--no-reload") as gateway:
        response = httpx.get(f"{gateway.url}/function/hello", timeout=60, trust_env=False)
        assert response.status_code == 200
        assert response.text == "Hello, world!\n"
        service = docker_client.api.inspect_service(f"faas-{gateway.project}-hello")
        image = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image.startswith(f"{registry}/team/faas-function:{tag}")
