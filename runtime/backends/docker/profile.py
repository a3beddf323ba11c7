"""Which container engine answers, and the decisions that follow from it (pure).

The gateway speaks the Docker API to Docker Engine, rootless Docker, Docker
Desktop and Podman alike; what differs is where the API is found, whether the
gateway can route to a container's address, what a container must set
explicitly, and which OCI runtimes (runc, runsc) are registered. The I/O is in
runtime/backends/docker/engine.py; what is decided here is unit-tested.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Engine = Literal["docker", "podman"]
ENGINES: tuple[Engine, ...] = ("docker", "podman")

ReplicaAccess = Literal["auto", "address", "published"]
"""How the gateway reaches a replica: "address" dials its IP on the project network
(only where the host routes to it); "published" dials a port the engine publishes
on the host's 127.0.0.1; "auto" picks the first that works here."""
REPLICA_ACCESS: tuple[ReplicaAccess, ...] = ("auto", "address", "published")

GVISOR_RUNTIME = "runsc"
ISOLATION_RUNTIMES: Mapping[str, str | None] = {"container": None, "gvisor": GVISOR_RUNTIME}
"""A function's `isolation` -> its replicas' OCI runtime (None: the engine's default)."""

PODMAN_ULIMITS = (
    {"Name": "nofile", "Soft": 1024, "Hard": 4096},
    {"Name": "nproc", "Soft": 32768, "Hard": 32768},
)
"""Podman (4.3, as root) passes its own defaults through as rlimits unless a container
sets them, and a service whose own limits are lower fails every start ("error setting
rlimit type 7: operation not permitted", type 6 for nproc). Explicit values no higher
than the service's hard limits are always accepted: nofile 1024 soft (what programs
expect; raising it is the function's business) up to 4096 hard, the lowest hard limit
common hosts give a shell (this VM's is 20000), ample for a watchdog whose callers are
one gateway's pooled connections.

nproc stays high on purpose: the kernel counts it per uid across the whole host, not
per container, and every replica of every function runs as the same uid (10001), so a
low value would let a few busy replicas keep each other from starting threads. Each
container's own processes are bounded by its pids limit (a cgroup) instead. 32768 is
the kernel's default pid_max; a service started with a lower hard limit of either
(/proc/<pid of podman system service>/limits) needs these lowered to match."""

GVISOR_FIX = (
    'register it in /etc/docker/daemon.json: {"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
    '"runtimeArgs": ["--network=host"]}}}, then `kill -HUP $(pidof dockerd)` '
    "(on Debian as root, FAAS_GVISOR=1 scripts/ensure-docker.sh does both)"
)


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """What the gateway needs to know about the engine it talks to."""

    product: str
    """ "Docker Engine", "Docker Desktop" or "Podman"."""
    version: str
    rootless: bool = False
    runtimes: frozenset[str] = field(default_factory=frozenset)
    remote: bool = False
    """The API is reached over TCP or SSH: containers run on another machine."""
    enforces_limits: bool = True
    """False where the engine has no cgroups to use (rootless Docker without cgroup v2
    and systemd): it records memory, CPU and process limits but cannot apply them,
    and refuses to change them on a running container."""

    @property
    def podman(self) -> bool:
        return self.product == "Podman"

    @property
    def desktop(self) -> bool:
        return self.product == "Docker Desktop"

    def describe(self) -> str:
        return f"{self.product} {self.version}" + (" (rootless)" if self.rootless else "")


def profile_of(version: Mapping[str, Any], info: Mapping[str, Any], base_url: str) -> EngineProfile:
    """The profile from the engine's `/version` and `/info` answers."""
    components = {str(c.get("Name", "")) for c in version.get("Components") or ()}
    security = [str(option) for option in info.get("SecurityOptions") or ()]
    if any("podman" in name.lower() for name in components):
        product = "Podman"
    elif str(info.get("OperatingSystem", "")).startswith("Docker Desktop"):
        product = "Docker Desktop"
    else:
        product = "Docker Engine"
    return EngineProfile(
        product=product,
        version=str(version.get("Version", "?")),
        # Docker names it in its security options; Podman never does, but says so itself.
        rootless=info.get("Rootless") is True
        or any(option.startswith("name=rootless") for option in security),
        runtimes=frozenset(info.get("Runtimes") or ()),
        remote=not base_url.startswith(("unix:", "npipe:", "http+unix:")),
        enforces_limits=info.get("CgroupDriver") != "none" and info.get("MemoryLimit") is not False,
    )


def replica_access(
    setting: ReplicaAccess, profile: EngineProfile, gateway_is_local: bool
) -> Literal["address", "published"]:
    """Whether replicas are dialed at their network address or at a published port.

    The host routes to a bridge network exactly when the network's gateway address
    is one of its own. Rootless engines and Docker Desktop keep their bridges in
    another network namespace or VM (whose address may collide with a local one),
    and a remote engine's bridges are on another machine: those publish.
    """
    if setting != "auto":
        return setting
    if profile.rootless or profile.desktop or profile.remote:
        return "published"
    return "address" if gateway_is_local else "published"


NetworkIsolation = Literal["engine", "iptables", "none"]


def network_isolation(profile: EngineProfile, euid: int) -> NetworkIsolation:
    """What keeps replicas on the project network from opening connections to each other.

    "engine": Docker's bridge driver, told so (enable_icc=false; rootless Docker too,
    inside its own namespace). Podman ignores that option. "iptables": as root on the
    host of a rootful Podman, the gateway names the network's bridge and drops traffic
    within it itself, as Docker does. "none": nothing can (rootless or remote Podman, or a
    gateway that is not root); each replica still refuses calls without its own token.
    """
    if not profile.podman:
        return "engine"
    if profile.rootless or profile.remote or euid != 0:
        return "none"
    return "iptables"


def engine_url(
    engine: Engine,
    environ: Mapping[str, str],
    uid: int | None = None,
    context_host: str | None = None,
) -> str:
    """Where the engine's API is: the variable the ecosystem reads, else the default socket.

    Docker's tools read DOCKER_HOST, then the current `docker context` (`context_host`:
    how Docker Desktop and rootless Docker installs point the CLI at their socket);
    Podman's read CONTAINER_HOST (Docker-compatible tools pointed at Podman use
    DOCKER_HOST, so `docker` honours it whatever answers).
    """
    uid = os.getuid() if uid is None else uid
    if engine == "podman":
        if environ.get("CONTAINER_HOST"):
            return environ["CONTAINER_HOST"]
        if uid == 0:
            return "unix:///run/podman/podman.sock"
        runtime_dir = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
        return f"unix://{runtime_dir}/podman/podman.sock"
    return environ.get("DOCKER_HOST") or context_host or "unix:///var/run/docker.sock"


def engine_help(engine: Engine, url: str) -> str:
    """What to do when nothing answers at `url`."""
    if engine == "podman":
        return (
            f"no Podman API answers at {url}. Start it with "
            f"`podman system service --time=0 {url} &` (on Debian as root, "
            "scripts/ensure-podman.sh installs Podman and does this), or set CONTAINER_HOST."
        )
    return (
        f"no Docker engine answers at {url}. Start one (on Debian as root: "
        "`apt-get install docker.io` then `dockerd`; scripts/ensure-docker.sh does both), "
        "or point DOCKER_HOST at one (rootless Docker: unix://$XDG_RUNTIME_DIR/docker.sock)."
    )


MIN_API_VERSION = (1, 40)


def unsupported(version: Mapping[str, Any]) -> str | None:
    """Why this engine cannot serve the platform; None when it can."""
    api = str(version.get("ApiVersion", "0.0"))
    try:
        found = tuple(int(part) for part in api.split(".")[:2])
    except ValueError:
        return f"the engine reports API version {api!r}, which is not a Docker API version"
    if found < MIN_API_VERSION:
        wanted = ".".join(map(str, MIN_API_VERSION))
        return (
            f"the engine speaks Docker API {api}; faas needs {wanted} or later "
            "(Docker 19.03+, Podman 3+)"
        )
    return None


def isolation_problems(
    backend: str, profile: EngineProfile | None, isolations: Mapping[str, str]
) -> list[str]:
    """What stops each function (name -> its `isolation`) from running as asked here."""
    problems = []
    for function, isolation in sorted(isolations.items()):
        runtime = ISOLATION_RUNTIMES[isolation]
        if runtime is None:
            continue
        if backend != "docker" or profile is None:
            problems.append(
                f"function {function}: isolation: {isolation} runs on the docker backend only "
                f"(the {backend} backend cannot choose a replica's runtime)"
            )
        elif runtime not in profile.runtimes:
            problems.append(
                f"function {function}: isolation: {isolation} needs the {runtime} runtime, "
                f"which {profile.describe()} does not have; {GVISOR_FIX}"
            )
    return problems
