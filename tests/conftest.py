"""Shared fixtures: a real gateway (`faas up` in a subprocess) on a free port, on a real engine."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from runtime.backends.docker.containers import serving_function

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 240.0


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy (which is returned), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_project(prefix: str) -> str:
    return f"t-{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a Docker engine (scripts/setup.sh starts one): {exc}")
    yield client
    client.close()


def project_resources(client: docker.DockerClient, project: str) -> tuple[list[str], list[str]]:
    """Containers (and Swarm services) and networks labelled with `project`."""
    label = f"faas.project={project}"
    # the low-level listing: containers.list() inspects each one and races with removals
    found = client.api.containers(all=True, filters={"label": label})
    containers = [c["Names"][0].lstrip("/") for c in found]
    if swarm_active(client):
        services = client.api.services(filters={"label": label})
        containers += [f"service {s['Spec']['Name']}" for s in services]
    networks = [n.name for n in client.networks.list(filters={"label": label})]
    return containers, networks


def left_behind(client: docker.DockerClient, project: str) -> tuple[list[str], list[str]]:
    """What a stopped project left in the engine: `project_resources`, less the networks
    Docker 20.10 cannot remove for an endpoint of a container it already removed
    (moby#42119: no container attached, yet "has active endpoints" until dockerd restarts).
    The platform's own teardown says so in its log; nothing of the platform holds them."""
    containers, networks = project_resources(client, project)
    return containers, [n for n in networks if not _stale_in_engine(client, n)]


def _stale_in_engine(client: docker.DockerClient, name: str) -> bool:
    try:
        network = client.networks.get(name)
        if network.attrs.get("Containers"):
            return False
        network.remove()
    except docker.errors.NotFound:
        return True  # gone meanwhile: nothing left
    except docker.errors.APIError as exc:
        if "active endpoints" in str(exc):
            print(f"note: the engine keeps a stale endpoint in network {name} (moby#42119)")
            return True
        return False
    return True  # removed now: nothing left


def swarm_active(client: docker.DockerClient) -> bool:
    return bool(client.info().get("Swarm", {}).get("LocalNodeState") == "active")


@pytest.fixture(scope="session")
def swarm() -> Iterator[None]:
    """A single-node Swarm on Docker's default engine (whatever engine a module's own
    `docker_client` is); left again afterwards if this session made it."""
    client = docker.from_env()
    created = not swarm_active(client)
    if created:
        client.swarm.init(advertise_addr="127.0.0.1")
    yield
    if created:
        client.swarm.leave(force=True)
    client.close()


def running_replicas(
    client: docker.DockerClient, project: str, function: str | None = None
) -> list[dict[str, Any]]:
    """Running replica containers (not their network sandboxes), from the low-level API.

    A replica started on a warm watchdog has no `faas.function` label (labels are
    fixed at creation): it is known by the name it was given, faas-<project>-<function>-<hex>.
    """
    found = client.api.containers(filters={"label": f"faas.project={project}"})
    served = [(c, replica_function(c, project)) for c in found]
    return [c for c, name in served if name is not None and function in (None, name)]


def claimed_warm_tasks(
    client: docker.DockerClient, gateway: Gateway, function: str
) -> list[dict[str, Any]]:
    """The containers of Swarm warm tasks claimed for `function` (they keep their names:
    the gateway names each replica `<function>.warm-<task id prefix>`), as `running_replicas`."""
    listed = gateway.admin_get("/system/functions").json()["functions"]
    names = next(f for f in listed if f["name"] == function)["replica_names"]
    prefixes = [n.split(".warm-", 1)[1] for n in names if n.startswith(f"{function}.warm-")]
    label = [f"faas.project={gateway.project}", "faas.role=warm"]
    found = []
    for service in client.api.services(filters={"label": label}):
        for task in client.api.tasks(filters={"service": service["ID"]}):
            container = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
            if container and any(task["ID"].startswith(p) for p in prefixes):
                found.append({"Id": container})
    return found


def replica_function(container: dict[str, Any], project: str) -> str | None:
    """The function a listed container serves; None for sandboxes and unassigned watchdogs."""
    return serving_function(
        container.get("Labels") or {}, container["Names"][0].lstrip("/"), project
    )


@dataclass
class Gateway:
    """A `faas up` process serving one project."""

    spec_file: Path
    project: str
    port: int
    process: subprocess.Popen[str]
    log_path: Path
    admin_port: int = 0
    stopped: bool = field(default=False)
    scheme: str = "http"
    backend: str = "docker"

    @property
    def url(self) -> str:
        """The function listener."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener: the admin API and the dashboard."""
        return f"{self.scheme}://127.0.0.1:{self.admin_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def admin_headers(self) -> dict[str, str]:
        token = (self.spec_file.parent / ".faas" / "admin-token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def admin_get(self, path: str) -> httpx.Response:
        return httpx.get(
            self.admin_url + path,
            headers=self.admin_headers,
            timeout=30,
            trust_env=False,
            verify=False,
        )

    def warm_ready(self) -> float:
        """Ready warm watchdogs, summed over the warm pools, as /metrics shows them."""
        lines = self.admin_get("/metrics").text.splitlines()
        ready = [line for line in lines if line.startswith("faas_warm_pool_ready{")]
        return sum(float(line.split()[-1]) for line in ready)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--file", str(self.spec_file), "--project", self.project, input=input)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        if not self.stopped:
            self.stopped = True
            if self.process.poll() is None:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(
                    f"gateway did not stop within {timeout}s:\n{self.log()}"
                ) from None
        return int(self.process.returncode)


def run_cli(
    *args: str,
    input: str | None = None,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "faas", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def start_gateway(
    spec_file: Path,
    project: str,
    log_dir: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> Gateway:
    """`faas up` on a free port, with its admin listener on another (`env`: added to ours)."""
    port = free_port()
    admin_port = free_port()
    while admin_port == port:
        admin_port = free_port()
    log_path = log_dir / f"{project}.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "faas", "up", "-f", str(spec_file), "--project", project,
             "--port", str(port), "--admin-port", str(admin_port), *extra],
            stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
        )  # fmt: skip
    gateway = Gateway(spec_file, project, port, process, log_path, admin_port)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"faas up exited with {process.returncode}:\n{gateway.log()}")
        for scheme in ("http", "https"):  # a TLS gateway refuses plain HTTP
            with contextlib.suppress(httpx.HTTPError):
                probe = f"{scheme}://127.0.0.1:{port}/healthz"
                if httpx.get(probe, timeout=1, verify=False).status_code == 200:
                    gateway.scheme = scheme
                    return gateway
        time.sleep(0.2)
    gateway.stop(signal.SIGKILL)
    raise AssertionError(f"gateway not up within {STARTUP_TIMEOUT}s:\n{gateway.log()}")


@contextlib.contextmanager
def running_gateway(
    docker_client: docker.DockerClient,
    spec_file: Path,
    prefix: str,
    log_dir: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Gateway]:
    """Serve a project, then stop it and assert that nothing of it is left in the engine
    `docker_client` talks to."""
    project = unique_project(prefix)
    gateway = start_gateway(spec_file, project, log_dir, *extra, env=env)
    try:
        yield gateway
    finally:
        code = gateway.stop()
        containers, networks = left_behind(docker_client, project)
        for name in containers:
            with contextlib.suppress(docker.errors.DockerException):
                if name.startswith("service "):
                    docker_client.api.remove_service(name.removeprefix("service "))
                else:
                    docker_client.containers.get(name).remove(force=True)
        for name in networks:
            with contextlib.suppress(docker.errors.DockerException):
                docker_client.networks.get(name).remove()
        assert (containers, networks) == ([], []), f"left behind: {containers} {networks}"
        assert code == 0, f"faas up exited with {code}:\n{gateway.log()}"
