"""Functions that misbehave must get clear answers while the others keep serving.

What is wrong before anything runs (a missing handler file, a syntax error, a
missing handler function) stops `faas up` instead: tests/e2e/test_config_errors.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import Gateway, running_gateway

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "faulty" / "functions.yaml"


@pytest.fixture(scope="module", params=["docker", "swarm"])
def faulty(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The same failures must get the same answers on both backends."""
    backend: str = request.param
    if backend == "swarm":
        request.getfixturevalue("swarm")
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(
        docker_client, SPEC, f"faulty-{backend}", logs, "--backend", backend
    ) as gateway:
        gateway.backend = backend
        yield gateway


@pytest.fixture
def client(faulty: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty.url, timeout=30, trust_env=False) as client:
        yield client


def test_import_error_gives_503_and_shows_in_ls(
    faulty: Gateway, client: httpx.Client, docker_client: docker.DockerClient
) -> None:
    response = client.get("/function/import-error")
    assert response.status_code == 503
    # callers learn where to look, not what the import raised (tests/e2e/test_hostile_secrets.py)
    assert "module_that_is_not_installed" not in response.text
    assert "faas logs" in response.json()["error"]
    # the second call answers from the recorded failure, without a new container
    assert client.get("/function/import-error").status_code == 503
    rows = {f["name"]: f for f in json.loads(faulty.cli("ls", "--json").stdout)["functions"]}
    assert rows["import-error"]["state"] == "failed"
    assert "failed to import" in rows["import-error"]["error"]
    assert "module_that_is_not_installed" in rows["import-error"]["error_detail"]
    assert rows["ok"]["state"] in ("idle", "ready")
    if faulty.backend == "swarm":  # the failed function's service goes back to zero tasks
        service = docker_client.services.get(f"faas-{faulty.project}-import-error")
        deadline = time.monotonic() + 10
        while service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] != 0:
            assert time.monotonic() < deadline, "the failed function's service kept its tasks"
            time.sleep(0.2)
            service.reload()


def test_handler_exception_is_500_without_traceback(client: httpx.Client) -> None:
    response = client.get("/function/raises")
    assert response.status_code == 500
    body = response.json()
    assert body["call_id"] == response.headers["x-call-id"]
    assert "Traceback" not in response.text
    assert "do-not-leak-this" not in response.text
    assert client.get("/ok").status_code == 200


@pytest.mark.parametrize("name", ["sleepy", "async-sleepy"])
def test_timeout_is_504(client: httpx.Client, name: str) -> None:
    response = client.get(f"/function/{name}")
    assert response.status_code == 504
    assert "timed out" in response.json()["error"]
    assert client.get("/ok").status_code == 200


def test_body_limit_from_gateway_settings(client: httpx.Client) -> None:
    assert client.post("/ok", content=b"x" * 65536).json()["bytes"] == 65536
    response = client.post("/ok", content=b"x" * 65537)
    assert response.status_code == 413


def test_gateway_survives_and_reports_healthy(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
