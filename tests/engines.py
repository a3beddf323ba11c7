"""The engines and runtimes the hardening, isolation, warm-pool and example tests run on.

Each target is a way to run `faas up` on this machine: Docker with runc (always),
Docker with replicas dialed at published ports, Docker with every function under
gVisor, Podman, and rootless Docker. `scripts/test` sets up what it can (see
scripts/ensure-*.sh); a target that is not set up is skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import docker
import docker.errors
import pytest

from runtime.spec import DEFAULT_BASE_IMAGE

PODMAN_URL = "unix:///run/podman/podman.sock"
ROOTLESS_USER = "faas-rootless"


@dataclass(frozen=True)
class Target:
    name: str
    up_args: tuple[str, ...] = ()
    """Extra `faas up` arguments."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of `faas up` (where the engine is)."""
    base_url: str | None = None
    """The engine the test's own client inspects; None: Docker's default."""
    limits_in_inspect: bool = True
    """An inspect shows the limits a warm watchdog was given at its start. Not on Podman
    (its update changes the cgroup, not the recorded config), nor on rootless Docker
    without cgroups (nothing is changed: limits are not applied there at all)."""

    def client(self) -> docker.DockerClient:
        if self.base_url is None:
            return docker.from_env()
        return docker.DockerClient(base_url=self.base_url, version="auto")


def _rootless_url() -> str:
    explicit = os.environ.get("FAAS_TEST_ROOTLESS_HOST")
    if explicit:
        return explicit
    try:
        uid = pwd.getpwnam(ROOTLESS_USER).pw_uid
    except KeyError:
        return "unix:///nonexistent/docker.sock"
    return f"unix:///run/user/{uid}/docker.sock"


TARGETS = {
    "docker": Target("docker"),
    "published": Target("published", ("--replica-access", "published")),
    "gvisor": Target("gvisor", ("--isolation", "gvisor")),
    "podman": Target(
        "podman",
        ("--engine", "podman"),
        {"CONTAINER_HOST": PODMAN_URL},
        PODMAN_URL,
        limits_in_inspect=False,
    ),
    "rootless": Target(
        "rootless",
        env={"DOCKER_HOST": _rootless_url()},
        base_url=_rootless_url(),
        limits_in_inspect=False,
    ),
}
ALL = tuple(TARGETS)
SETUP = {
    "docker": "scripts/ensure-docker.sh",
    "published": "scripts/ensure-docker.sh",
    "gvisor": "FAAS_GVISOR=1 scripts/ensure-docker.sh",
    "podman": "scripts/ensure-podman.sh",
    "rootless": "scripts/ensure-rootless-docker.sh",
}


@functools.cache
def unavailable(name: str) -> str | None:
    """Why `name` cannot run here; None when it can."""
    target = TARGETS[name]
    try:
        client = target.client()
        info = client.info()
        client.close()
    except docker.errors.DockerException as exc:
        where = target.base_url or "the default socket"
        return f"{name}: no engine answers at {where} ({SETUP[name]} sets it up): {exc}"
    if name == "gvisor":
        if "runsc" not in (info.get("Runtimes") or {}):
            return f"gvisor: runsc is not registered with Docker ({SETUP[name]})"
        return _runsc_fails()
    return None


def _runsc_fails() -> str | None:
    """Why runsc, registered, still cannot run a container here (a kernel it cannot use);
    None when it can. The base image is there: scripts/test builds it before pytest."""
    client = docker.from_env()
    try:
        client.containers.run(DEFAULT_BASE_IMAGE, ["true"], runtime="runsc", remove=True)
    except docker.errors.DockerException as exc:
        return f"gvisor: runsc is registered but cannot run a container here: {exc}"
    finally:
        client.close()
    return None


def target_params() -> list[object]:
    """pytest params for every target (those FAAS_TEST_ENGINES=docker,podman names, when
    set); `require` skips one that is unavailable."""
    wanted = os.environ.get("FAAS_TEST_ENGINES")
    chosen = [name for name in ALL if not wanted or name in wanted.split(",")]
    return [pytest.param(TARGETS[name], id=name) for name in chosen]


def require(target: Target) -> None:
    reason = unavailable(target.name)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module", params=target_params())
def engine(request: pytest.FixtureRequest) -> Target:
    """Every engine and runtime this machine has; a module that imports this fixture (and
    `docker_client` below) runs once on each."""
    target: Target = request.param
    require(target)
    return target


@pytest.fixture(scope="module")
def docker_client(engine: Target) -> Iterator[docker.DockerClient]:
    """The engine under test, for the checks of what it runs (replaces conftest's)."""
    client = engine.client()
    yield client
    client.close()


def drops_every_capability(cap_drop: list[str] | None) -> bool:
    """An inspect's CapDrop for `cap_drop: [ALL]`: Docker echoes ALL, Podman lists them."""
    dropped = {cap.removeprefix("CAP_") for cap in cap_drop or ()}
    return "ALL" in dropped or {"CHOWN", "DAC_OVERRIDE", "KILL", "NET_RAW", "MKNOD"} <= dropped
