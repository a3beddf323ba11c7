"""WebSockets through a real gateway to real replicas (`websocket: true`).

The first connection wakes a function at zero; text and binary messages echo; close
codes pass both ways; a message over `max_message_size` closes with 1009 either way;
`auth: key` is checked on the upgrade, which is refused with 401 before any replica
starts; a socket quiet for the function's timeout, and open sockets when the gateway
stops, close with 1001.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import Gateway, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "websockets"


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("websockets") / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns(".faas", "__pycache__"))
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(docker_client, root / "functions.yaml", "ws", logs) as gw:
        yield gw


def ws_url(gateway: Gateway, path: str) -> str:
    return gateway.url.replace("http", "ws", 1) + path


def open_socket(gateway: Gateway, path: str, **options: object) -> ClientConnection:
    return connect(ws_url(gateway, path), open_timeout=60, close_timeout=10, **options)  # type: ignore[arg-type]


def replica_log(gateway: Gateway, function: str) -> str:
    answer = gateway.admin_get(f"/system/logs?function={function}&limit=1000")
    return "\n".join(line["message"] for line in answer.json()["lines"])


def closed_code(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server's close; (code, reason) it sent."""
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            ws.recv(timeout=30)
    received = caught.value.rcvd
    return (received.code, received.reason) if received is not None else (None, None)


def test_the_first_connection_wakes_the_function_and_messages_echo(
    gateway: Gateway, docker_client: docker.DockerClient
) -> None:
    assert running_replicas(docker_client, gateway.project, "echo") == []
    with open_socket(
        gateway,
        "/function/echo/room/1?q=yes",
        subprotocols=["echo.v1"],  # type: ignore[list-item]
        additional_headers={"X-Probe": "probed"},
    ) as ws:
        assert ws.subprotocol == "echo.v1"
        assert ws.response is not None and ws.response.headers["x-call-id"]
        ws.send("hello")
        assert ws.recv(timeout=30) == "hello"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=30) == b"\x00\x01\xff"
        ws.send("where")
        assert ws.recv(timeout=30) == "/room/1 yes probed"
        assert len(running_replicas(docker_client, gateway.project, "echo")) == 1


def test_close_codes_pass_both_ways(gateway: Gateway) -> None:
    with open_socket(gateway, "/function/echo") as ws:
        ws.send("close please")
        assert closed_code(ws) == (4001, "as asked")
    with open_socket(gateway, "/function/echo") as ws:
        ws.send("ping")
        assert ws.recv(timeout=30) == "ping"
        ws.close(4002, "client done")
    wait_for(
        lambda: "client closed with 4002 client done" in replica_log(gateway, "echo"),
        30,
        "the handler to see the client's close code",
    )


def test_messages_over_the_limit_close_with_1009_either_way(gateway: Gateway) -> None:
    with open_socket(gateway, "/function/echo") as ws:
        ws.send(b"x" * (64 * 1024 + 1))
        assert closed_code(ws)[0] == 1009
    with open_socket(gateway, "/function/echo") as ws:
        ws.send("too big")  # the handler answers 64 KiB + 1
        assert closed_code(ws)[0] == 1009
    with open_socket(gateway, "/function/echo") as ws:  # the limit itself passes
        ws.send(b"y" * (64 * 1024))
        assert ws.recv(timeout=30) == b"y" * (64 * 1024)


def test_auth_key_is_checked_on_the_upgrade_before_any_replica_starts(
    gateway: Gateway, docker_client: docker.DockerClient
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_socket(gateway, "/function/keyed")
    assert refused.value.response.status_code == 401
    assert "needs an API key" in json.loads(refused.value.response.body or b"{}")["error"]
    with pytest.raises(InvalidStatus) as wrong:
        open_socket(gateway, "/function/keyed", additional_headers={"X-API-Key": "fk_nope"})
    assert wrong.value.response.status_code == 401
    assert running_replicas(docker_client, gateway.project, "keyed") == []

    created = gateway.cli("keys", "create", "--name", "ws", "--function", "keyed", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    with open_socket(
        gateway, "/function/keyed", additional_headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        ws.send("where")
        assert ws.recv(timeout=30) == "/  "  # the key is used up, not forwarded


def test_a_function_without_websocket_and_an_unknown_one_refuse_the_upgrade(
    gateway: Gateway,
) -> None:
    with pytest.raises(InvalidStatus) as unknown:
        open_socket(gateway, "/function/nosuch")
    assert unknown.value.response.status_code == 404


def test_a_socket_quiet_for_the_functions_timeout_closes_with_1001(gateway: Gateway) -> None:
    with open_socket(gateway, "/function/quiet") as ws:
        ws.send("ping")
        assert ws.recv(timeout=30) == "ping"
        assert closed_code(ws) == (1001, "idle")


def metric(gateway: Gateway, name: str) -> float:
    for line in gateway.admin_get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_replica_leaving_service_closes_its_sockets_with_1001(gateway: Gateway) -> None:
    """A new version of the function (here: its environment changed in functions.yaml)
    replaces its replica; the old one's open sockets close with 1001 after a grace."""
    spec = gateway.spec_file
    original = spec.read_text()
    with open_socket(gateway, "/function/echo") as ws:
        ws.send("ping")
        assert ws.recv(timeout=30) == "ping"
        assert metric(gateway, 'faas_open_websockets{function="echo"}') == 1
        marker = "    websocket: true            # its module"
        assert marker in original
        spec.write_text(original.replace(marker, "    environment: {VERSION: '2'}\n" + marker, 1))
        try:
            assert closed_code(ws) == (1001, "the function's replica is leaving service")
        finally:
            spec.write_text(original)
    wait_for(lambda: metric(gateway, 'faas_open_websockets{function="echo"}') == 0, 30, "the gauge")
    with open_socket(gateway, "/function/echo") as ws:  # the function serves on
        ws.send("again")
        assert ws.recv(timeout=60) == "again"


def test_stopping_the_gateway_closes_open_sockets_with_1001(gateway: Gateway) -> None:
    """Last in this module: it stops the module's gateway (its teardown checks the cleanup)."""
    with open_socket(gateway, "/function/echo") as ws:
        ws.send("ping")
        assert ws.recv(timeout=30) == "ping"
        gateway.process.send_signal(2)  # SIGINT: `faas up` shuts down
        assert closed_code(ws)[0] == 1001
    assert gateway.stop() == 0
