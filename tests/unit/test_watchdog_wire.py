"""Both sides of runtime/watchdog/wire.py agree: what the host sends, the watchdog takes.

The host side is the real code (the backends' environments, the image builder, the warm
pool's init archive, runtime/replica_client.py); the watchdog is a real subprocess, run
from the package as images hold it (`python3 -m faas_watchdog` from a copy of its files).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from runtime.backends.base import Limits, Replica, ReplicaSpec, WarmSpec
from runtime.backends.docker import containers
from runtime.backends.swarm import services
from runtime.errors import ReplicaUnreachable
from runtime.export import kubernetes as k8s
from runtime.images import plan_image, watchdog_files
from runtime.invocation import Invocation
from runtime.replica_client import ReplicaClient
from runtime.spec import load_project_text
from runtime.warm_pool import init_archive
from runtime.watchdog import wire
from runtime.watchdog.config import load_settings

TOKEN = "wire-token"
READY_WITHIN = 10.0
WARM_SPEC = WarmSpec("faas-warm:x", Limits(128 * 1024 * 1024, 1.0, 256))

HANDLER = """\
import os

def handle(event, context):
    secret = os.path.join(os.environ.get("SECRETS", "/nonexistent"), "api-key")
    return {
        "function": context.function_name,
        "call_id": context.call_id,
        "remaining": context.remaining(),
        "path": event.path,
        "headers": sorted(name.lower() for name in event.headers),
        "topic": event.topic,
        "event_id": event.event_id,
        "attempt": event.attempt,
        "greeting": os.environ.get("GREETING"),
        "secret": open(secret).read() if os.path.exists(secret) else None,
    }
"""

PROJECT = """\
version: 1
project: wire
functions:
  echo:
    handler: functions/echo.py
    environment: {GREETING: hi}
    secrets: [api-key]
"""

SPEC = ReplicaSpec(
    function="echo",
    image="faas-function:0123456789abcdef",
    token=TOKEN,
    handler_file="functions/echo.py",
    environment={"GREETING": "hi"},
)


class Recording(dict[str, str]):
    """An environment that remembers every name it was asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def function_container() -> dict[str, Any]:
    """The function's container in the exported Kubernetes Deployment."""
    project = load_project_text(PROJECT, filename="functions.yaml", root=Path("/nonexistent"))
    found = k8s.manifests(project, PROJECT, {"echo": SPEC.image})
    pod = next(m for m in found if m["kind"] == "Deployment" and m["metadata"]["name"] == "echo")
    container: dict[str, Any] = pod["spec"]["template"]["spec"]["containers"][0]
    return container


def watchdog_reads() -> set[str]:
    environ = Recording({wire.TOKEN_ENV: "t", wire.HANDLER_FILE_ENV: "h.py"})
    load_settings(environ)
    return environ.asked


def ours(names: Any) -> set[str]:
    return {name for name in names if name.startswith(wire.ENV_PREFIX)}


def test_every_variable_the_backends_set_is_one_the_watchdog_reads() -> None:
    reads = watchdog_reads()
    assert ours(reads) == reads  # the watchdog reads nothing outside the contract's prefix
    docker = containers.replica_environment(SPEC)
    warm = containers.warm_args("p", WARM_SPEC, TOKEN, "w")["environment"]
    swarm_env = services.service_args(SPEC, "p", SPEC.image, secrets={}, grace=5, constraints=[])[
        "task_template"
    ]["ContainerSpec"]["Env"]
    swarm = dict(entry.split("=", 1) for entry in swarm_env)
    kubernetes = {env["name"] for env in function_container()["env"]}
    for backend, names in {
        "docker": docker,
        "warm": warm,
        "swarm": swarm,
        "kubernetes": kubernetes,
    }.items():
        assert ours(names) <= reads, backend
        assert wire.TOKEN_ENV in names, backend


def test_the_watchdog_takes_the_settings_the_backends_give() -> None:
    settings = load_settings(containers.replica_environment(SPEC))
    assert (settings.function_name, settings.handler_file, settings.token) == (
        "echo",
        "functions/echo.py",
        TOKEN,
    )
    assert (settings.port, settings.code_dir) == (containers.REPLICA_PORT, wire.CODE_DIR)
    assert settings.secrets_dir == containers.SECRETS_DIR
    warm = load_settings(containers.warm_args("p", WARM_SPEC, TOKEN, "w")["environment"])
    assert warm.warm and warm.token == TOKEN
    swarm = services.service_args(SPEC, "p", SPEC.image, secrets={}, grace=5, constraints=[])
    env = dict(entry.split("=", 1) for entry in swarm["task_template"]["ContainerSpec"]["Env"])
    assert load_settings(env).drain_delay == services.DRAIN_DELAY


def test_the_image_runs_the_package_the_watchdog_is_copied_as(tmp_path: Path) -> None:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "echo.py").write_text(HANDLER)
    project = load_project_text(PROJECT, filename="functions.yaml", root=tmp_path)
    request = plan_image(project, project.functions["echo"], "sha256:base", lambda p: p)
    assert f"{wire.PACKAGE}/wire.py" in watchdog_files()
    assert sorted(request.code) == [f"{wire.INIT_CODE}.keep", f"{wire.INIT_CODE}functions/echo.py"]


# -- the replica client and a real watchdog ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """Starts `python3 -m faas_watchdog` as an image does, on loopback; kills it afterwards."""
    root = tmp_path / "opt"
    for name, content in watchdog_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    procs: list[subprocess.Popen[bytes]] = []

    def run(environment: Mapping[str, str], **overrides: str) -> Replica:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(wire.ENV_PREFIX)}
        env.update(environment)
        env.update({wire.HOST_ENV: "127.0.0.1", wire.PORT_ENV: str(port), **overrides})
        env["PYTHONPATH"] = str(root)
        log = (tmp_path / f"watchdog-{len(procs)}.log").open("wb")
        with log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", wire.PACKAGE],
                    cwd=tmp_path,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        name = env[wire.FUNCTION_NAME_ENV]
        return Replica(f"id-{port}", name, name, f"127.0.0.1:{port}", env[wire.TOKEN_ENV])

    yield run
    for proc in procs:
        proc.kill()
        proc.wait(timeout=READY_WITHIN)


async def wait_ready(client: ReplicaClient, replica: Replica) -> None:
    async def alive(_: Replica) -> None:
        return None

    deadline = asyncio.get_running_loop().time() + READY_WITHIN
    await client.wait_ready(replica, deadline=deadline, is_alive=alive)


async def call(client: ReplicaClient, replica: Replica, headers: list[tuple[bytes, bytes]]) -> Any:
    invocation = Invocation("echo", "GET", "/some/path", b"", headers, b"", "call-0123")
    answer = await client.send(replica, invocation, 7.5)
    try:
        body = b"".join([chunk async for chunk in answer.body])
    finally:
        await answer.close()
    assert answer.status == 200, body
    return json.loads(body)


def test_the_replica_client_speaks_the_watchdogs_paths_and_headers(
    start: Any, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    (code / "functions").mkdir(parents=True)
    (code / "functions" / "echo.py").write_text(HANDLER)
    replica = start(containers.replica_environment(SPEC), **{wire.CODE_DIR_ENV: str(code)})
    event_headers = [
        (b"user-agent", b"test"),
        (wire.TOPIC_HEADER.encode(), b"orders.created"),
        (wire.EVENT_ID_HEADER.encode(), b"ev-1"),
        (wire.ATTEMPT_HEADER.encode(), b"3"),
    ]

    async def scenario() -> tuple[Any, Any]:
        client = ReplicaClient()
        try:
            await wait_ready(client, replica)  # READY_PATH with TOKEN_HEADER
            seen = await call(client, replica, event_headers)
            await client.reload(replica)  # RELOAD_PATH
            with pytest.raises(ReplicaUnreachable):  # the token is what READY_PATH checks
                await wait_ready_briefly(client, dataclasses.replace(replica, token="wrong"))
            return seen, await call(client, replica, [])
        finally:
            await client.close()

    seen, plain = asyncio.run(scenario())
    assert (seen["function"], seen["call_id"], seen["path"]) == ("echo", "call-0123", "/some/path")
    assert 0 < seen["remaining"] <= 7.5  # TIMEOUT_HEADER lowered the watchdog's 30 s
    assert (seen["topic"], seen["event_id"], seen["attempt"]) == ("orders.created", "ev-1", 3)
    assert "user-agent" in seen["headers"]
    assert not [name for name in seen["headers"] if name.startswith(wire.INTERNAL_PREFIX)]
    assert seen["greeting"] == "hi"
    assert (plain["topic"], plain["attempt"]) == (None, 1)


async def wait_ready_briefly(client: ReplicaClient, replica: Replica) -> None:
    async def alive(_: Replica) -> None:
        return None

    deadline = asyncio.get_running_loop().time() + 0.3
    await client.wait_ready(replica, deadline=deadline, is_alive=alive)


def test_a_warm_watchdog_takes_the_archive_the_warm_pool_makes(start: Any, tmp_path: Path) -> None:
    project_root = tmp_path / "project"
    (project_root / "functions").mkdir(parents=True)
    (project_root / "functions" / "echo.py").write_text(HANDLER)
    project = load_project_text(PROJECT, filename="functions.yaml", root=project_root)
    request = plan_image(project, project.functions["echo"], "sha256:base", lambda p: p)
    (tmp_path / "api-key").write_text("s3cret")
    secrets_dir = tmp_path / "secrets"
    spec = dataclasses.replace(
        SPEC,
        environment={"GREETING": "hi", "SECRETS": str(secrets_dir)},
        secret_files={"api-key": str(tmp_path / "api-key")},
    )
    environment = containers.warm_args("p", WARM_SPEC, TOKEN, "w")["environment"]
    replica = start(
        environment,
        **{
            wire.CODE_DIR_ENV: str(tmp_path / "app"),
            wire.DEPS_DIR_ENV: str(tmp_path / "deps"),
            wire.SECRETS_DIR_ENV: str(secrets_dir),
            # stays this test's user: its temporary files are not the replica user's to read
            # (the change of user is tested on a real engine, tests/e2e/test_warm_pool.py)
            wire.RUN_AS_ENV: f"{os.getuid()}:{os.getgid()}",
        },
    )

    async def scenario() -> Any:
        client = ReplicaClient()
        try:
            await wait_ready(client, replica)
            await client.init(replica, init_archive(spec, request.code))  # INIT_PATH
            return await call(client, replica, [])
        finally:
            await client.close()

    seen = asyncio.run(scenario())
    assert (seen["function"], seen["greeting"], seen["secret"]) == ("echo", "hi", "s3cret")
    assert (tmp_path / "app" / "functions" / "echo.py").read_text() == HANDLER


def test_the_kubernetes_probe_asks_the_ready_path_with_the_token_variable() -> None:
    probe = function_container()["readinessProbe"]["exec"]["command"]
    assert wire.READY_PATH in probe[2] and f"os.environ[{wire.TOKEN_ENV!r}]" in probe[2]
    assert wire.TOKEN_HEADER in probe[2].lower()


def test_a_call_may_take_longer_than_the_watchdogs_default_when_the_gateway_says_so(
    start: Any, tmp_path: Path
) -> None:
    """Replicas are not started with their function's timeout (warm watchdogs have no
    function yet): a limit above the watchdog's 30 s default comes with each call."""
    code = tmp_path / "code"
    (code / "functions").mkdir(parents=True)
    (code / "functions" / "echo.py").write_text(HANDLER)
    replica = start(containers.replica_environment(SPEC), **{wire.CODE_DIR_ENV: str(code)})

    async def scenario() -> Any:
        client = ReplicaClient()
        try:
            await wait_ready(client, replica)
            invocation = Invocation("echo", "GET", "/", b"", [], b"", "call-long")
            answer = await client.send(replica, invocation, 90.0)
            try:
                return json.loads(b"".join([chunk async for chunk in answer.body]))
            finally:
                await answer.close()
        finally:
            await client.close()

    assert 30 < asyncio.run(scenario())["remaining"] <= 90
