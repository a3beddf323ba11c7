"""Starting and stopping the platform: nothing is left behind, bad input starts nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import (
    REPO,
    left_behind,
    project_resources,
    replica_function,
    run_cli,
    running_replicas,
    start_gateway,
    unique_project,
)

pytestmark = pytest.mark.docker


def _warm(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        assert client.get("/hello").status_code == 200
        assert client.post("/echo", json={}).status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_removes_every_container_and_network(
    docker_client: docker.DockerClient, tmp_path: Path, sig: signal.Signals
) -> None:
    gateway = start_gateway(REPO / "functions.yaml", unique_project("sig"), tmp_path)
    try:
        _warm(gateway.url)
        running = running_replicas(docker_client, gateway.project)
        served = sorted(replica_function(c, gateway.project) for c in running)
        assert served == ["echo", "hello"]
        assert len(project_resources(docker_client, gateway.project)[1]) == 1
    finally:
        assert gateway.stop(sig) == 0, gateway.log()
    assert left_behind(docker_client, gateway.project) == ([], [])


def test_faas_down_stops_the_gateway_and_cleans_up(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    gateway = start_gateway(REPO / "functions.yaml", unique_project("down"), tmp_path)
    try:
        _warm(gateway.url)
        result = gateway.cli("down")
        assert result.returncode == 0, result.stderr
        assert gateway.process.wait(30) == 0
    finally:
        gateway.stop()
    assert left_behind(docker_client, gateway.project) == ([], [])
    listed = gateway.cli("ls", "--json")
    assert '"state": "down"' in listed.stdout


def test_down_removes_what_a_killed_gateway_left(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    gateway = start_gateway(REPO / "functions.yaml", unique_project("kill"), tmp_path)
    _warm(gateway.url)
    gateway.stop(signal.SIGKILL)
    # A create the engine was running when the gateway died still lands: count once settled.
    orphans = project_resources(docker_client, gateway.project)[0]
    while True:
        time.sleep(0.5)
        settled = project_resources(docker_client, gateway.project)[0]
        if settled == orphans:
            break
        orphans = settled
    assert len(orphans) >= 2, "expected orphans after SIGKILL"
    result = gateway.cli("down")
    assert result.returncode == 0, result.stderr
    assert f"removed {len(orphans)} replica(s)" in result.stderr
    assert left_behind(docker_client, gateway.project) == ([], [])


def test_invalid_yaml_exits_2_and_starts_nothing(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    spec = tmp_path / "functions.yaml"
    spec.write_text(
        "version: 1\nfunctions:\n  hello:\n    handler: functions/hello.py\n    timout: 5s\n"
    )
    project = unique_project("bad")
    started = time.monotonic()
    result = run_cli("up", "-f", str(spec), "--project", project, "--port", "0")
    assert result.returncode == 2
    assert f"{spec}:5: functions.hello.timout" in result.stderr
    assert "did you mean 'timeout'" in result.stderr
    assert time.monotonic() - started < 30
    assert left_behind(docker_client, project) == ([], [])


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "up", "--project", unique_project("port"), "--port", str(port),
            "-f", str(REPO / "functions.yaml"),
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
