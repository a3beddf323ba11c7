"""The contract every backend implements.

A backend starts, stops and lists replicas and reports their address. It
makes no scaling decisions and knows nothing about HTTP routing: the runtime
decides how many replicas a function needs, the backend makes it so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

ProgressCallback = Callable[[str, float | None], None]
"""Reports a long operation: (message, fraction done in 0..1 or None when unknown)."""


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a backend needs to start one replica of a function."""

    function: str
    image: str
    token: str
    handler_file: str = ""
    handler_name: str = "handle"
    environment: Mapping[str, str] = field(default_factory=dict)
    memory: int = 256 * 1024 * 1024
    cpus: float = 1.0
    pids: int = 256
    secret_files: Mapping[str, str] = field(default_factory=dict)
    """Secret name -> host file, mounted read-only at /run/secrets/<name>."""
    code_mount: tuple[str, str] | None = None
    """(host path, container path) of code mounted read-only, in development."""


@dataclass(frozen=True)
class Replica:
    """A started replica; `address` is host:port reachable from the gateway only."""

    id: str
    name: str
    function: str
    address: str
    token: str


@dataclass(frozen=True)
class CreatedReplica:
    """A replica created ahead of need and not started: it holds no process."""

    id: str
    name: str
    function: str
    token: str
    address: str | None = None
    """Known ahead when the backend fixes the network before the start."""


@dataclass(frozen=True)
class ReplicaStatus:
    id: str
    name: str
    function: str
    running: bool
    exit_code: int | None = None


@dataclass(frozen=True)
class ImageRequest:
    """A function image to build: `tag` names its inputs, so an existing tag is reused."""

    function: str
    tag: str
    context: bytes
    """A tar archive holding a Dockerfile and everything it copies."""


class Backend(Protocol):
    """One engine's way of running replicas. All verbs are safe to call concurrently."""

    project: str

    async def prepare(self) -> None:
        """Create what replicas need before the first one starts (networks)."""

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None:
        """Make `image` available locally: present, pulled, or built from distro packages."""

    async def image_id(self, image: str) -> str | None:
        """Content id of a local image, or None when it is absent."""

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        """Build one function image unless its tag already exists; True if it was built."""

    async def create(self, spec: ReplicaSpec) -> CreatedReplica:
        """Create one replica without starting it, so a later start is quicker."""

    async def start(self, created: CreatedReplica) -> Replica:
        """Start a created replica; it may not be ready to serve yet."""

    async def stop(self, replica_id: str, *, grace: float = 5.0) -> None:
        """Stop and remove one replica; missing replicas are not an error."""

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        """Whether the replica is still running, and its exit code if not."""

    async def replicas(self) -> list[ReplicaStatus]:
        """Every replica of this project, running or not."""

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        """The last lines a replica wrote to stdout and stderr."""

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None:
        """Call `on_line` (from another thread) with each line the replica writes, until it is
        removed."""

    async def teardown(self) -> int:
        """Remove every container and network of this project; returns containers removed."""

    async def close(self) -> None:
        """Release the engine connection."""
