"""The contract every backend implements, in three protocols.

`Backend` is what every engine does: images, a replica's status and output,
teardown. Beyond it an engine is one of two kinds, and says which in `kind`:

- `ContainerBackend` ("containers": docker): the gateway creates, starts and
  stops each replica itself, and can run warm watchdogs;
- `ServiceBackend` ("services": swarm, kubernetes): the engine keeps each
  function's replica count and runs the replicas (tasks) itself; the gateway
  sets counts and lists tasks.

A backend makes no scaling decisions and knows nothing about HTTP routing:
the runtime decides how many replicas a function needs, and a replica supply
(runtime/supply/, chosen once by `kind`) makes it so with these verbs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from runtime.interpreter import Interpreter

ProgressCallback = Callable[[str, float | None], None]
"""Reports a long operation: (message, fraction done in 0..1 or None when unknown)."""


DEFAULT_PIDS = 256


class Limits(NamedTuple):
    """What a replica may use: bytes of memory (swap included), CPUs, processes."""

    memory: int
    cpus: float
    pids: int


@dataclass(frozen=True)
class WarmSpec:
    """What a warm watchdog is made of: one kind's (runtime/warm_kinds.py)."""

    image: str
    """A function-less image: the watchdog, and the kind's requirements if it has some."""
    limits: Limits
    code_mounts: tuple[tuple[str, str], ...] = ()
    """Development: (host, container) code directories every warm watchdog mounts read-only."""
    isolation: str = "container"
    preload: tuple[str, ...] = ()
    """Modules it imports before it reports ready."""


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
    pids: int = DEFAULT_PIDS
    timeout: float = 30.0
    """A call's time limit: how long a stopping replica may take to finish its calls."""
    secret_files: Mapping[str, str] = field(default_factory=dict)
    """Secret name -> host file, mounted read-only at /run/secrets/<name>."""
    code_mount: tuple[str, str] | None = None
    """(host path, container path) of code mounted read-only, in development."""
    isolation: str = "container"
    """container (the engine's default runtime) or gvisor (a user-space kernel, runsc)."""
    debugger: str | None = None
    """Development, a debugged function: the host directory holding debugpy, mounted
    read-only; the replica runs it on wire.DEBUG_PORT and has no call timeout."""

    @property
    def limits(self) -> Limits:
        return Limits(self.memory, self.cpus, self.pids)


@dataclass(frozen=True)
class Replica:
    """A started replica; `address` is host:port reachable from the gateway only."""

    id: str
    name: str
    function: str
    address: str
    token: str
    debug_address: str | None = None
    """host:port of its debugger, reachable from the gateway only (a debugged replica)."""


@dataclass(frozen=True)
class CreatedReplica:
    """A replica (or warm watchdog) created and not started yet: it holds no process."""

    id: str
    name: str
    function: str
    token: str
    address: str | None = None
    """Known ahead when the backend fixes the network before the start."""
    debug_address: str | None = None


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
    """The function it is built for; empty for the warm pool's image, which serves any."""
    tag: str
    context: bytes
    """A tar archive holding a Dockerfile and everything it copies."""
    code: Mapping[str, bytes] = field(default_factory=dict)
    """The function's code and requirements as the image holds them (`app/...` and
    `deps/...` -> content), which a warm watchdog is sent instead (runtime/warm_pool.py)."""


ReplicaKind = Literal["containers", "services"]
"""How an engine runs replicas; it picks the replica supply (runtime/supply/)."""


class Backend(Protocol):
    """What every engine does, whichever kind. All verbs are safe to call concurrently."""

    project: str

    @property
    def kind(self) -> ReplicaKind:
        """ "containers" (`ContainerBackend`) or "services" (`ServiceBackend`)."""

    async def prepare(self) -> None:
        """Create what replicas need before the first one starts (networks), or check
        that the engine can run them."""

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None:
        """Make `image` available locally: present, pulled, or built from distro packages."""

    async def image_id(self, image: str) -> str | None:
        """Content id of a local image, or None when it is absent."""

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        """Build one function image unless its tag already exists; True if it was built."""

    async def interpreter(self, image_id: str) -> Interpreter:
        """The facts of the python3 in a local image (runtime/interpreter.py), probed once."""

    async def build_wheel(
        self, image_id: str, sdist: str, inputs: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        """Build the source distribution `sdist` (one of `inputs`, file name -> content,
        with its build requirements' wheels) in a container of `image_id` with no network;
        the wheels built, file name -> content."""

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        """Whether the replica is still running, and its exit code if not."""

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        """The last lines a replica wrote to stdout and stderr."""

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None:
        """Call `on_line` (from another thread) with each line the replica writes, until it is
        removed."""

    async def teardown(self) -> int:
        """Remove every replica and network of this project; returns replicas removed."""

    async def close(self) -> None:
        """Release the engine connection."""


@dataclass(frozen=True)
class Task:
    """A replica that a service backend's engine runs: listed, never started by the gateway."""

    id: str
    name: str
    function: str
    running: bool
    """Running now and meant to keep running (not being shut down)."""
    created_at: float
    """Epoch seconds when the engine created it: the start of its cold start."""
    token: str
    address: str | None = None
    """host:port the gateway can reach; None while it has none, or none reachable from here."""
    lost: str | None = None
    """Why the task is gone without being stopped (its node is down), when it is: its
    calls will never answer. Such a task is listed once, not running."""


class ServiceBackend(Backend, Protocol):
    """An engine that keeps each function's replica count (Swarm services, Kubernetes
    Deployments) and runs the replicas itself.

    A gateway sets the count; the engine decides which replicas to start and
    which to stop, and every gateway learns them by listing `tasks`.
    """

    @property
    def kind(self) -> Literal["services"]: ...

    @property
    def scales_itself(self) -> bool:
        """The engine also decides the counts (KEDA): gateways only follow its tasks."""

    async def ensure_service(self, spec: ReplicaSpec) -> None:
        """Create the function's service at zero replicas, or update it to `spec`.

        An update replaces running replicas one by one, each successor started first.
        """

    async def remove_service(self, function: str) -> None: ...

    async def set_replicas(self, function: str, count: int) -> None: ...

    async def desired_replicas(self) -> dict[str, int]:
        """The replica count each function's service was set to, as of the last `tasks`."""

    async def tasks(self) -> list[Task]:
        """Every task of this project's services that runs or is about to."""


@dataclass(frozen=True)
class ListedContainer:
    """One container the engine holds for this project, as the reconcile sees it."""

    id: str
    name: str
    role: str
    """"replica" (a function's, or a warm watchdog given one), "warm" or "sandbox"."""
    created: float
    """Epoch seconds when the engine created it."""
    running: bool
    owner: str | None = None
    """For a network sandbox: the id of the replica container it holds the network of."""
    abandoned: bool = False
    """The backend made it, failed to remove it and knows nobody else will: no grace."""


class ContainerBackend(Backend, Protocol):
    """An engine whose replicas are containers the gateway creates, starts and stops
    itself (docker), one by one; it also runs warm watchdogs (runtime/warm_pool.py),
    and lists what it made so the gateway finds what it lost track of
    (runtime/reconcile.py)."""

    @property
    def kind(self) -> Literal["containers"]: ...

    async def create(self, spec: ReplicaSpec) -> CreatedReplica:
        """Create one replica without starting it, so a later start is quicker.

        A caller cancelled while the engine creates it never learns its id: the backend
        removes what it made once the engine answers.
        """

    async def start(self, created: CreatedReplica) -> Replica:
        """Start a created replica (or warm watchdog); it may not be ready to serve yet."""

    async def stop(self, replica_id: str, *, grace: float = 5.0) -> None:
        """Stop and remove one replica; missing replicas are not an error."""

    async def replicas(self) -> list[ReplicaStatus]:
        """Every replica of this project, running or not."""

    async def containers(self) -> list[ListedContainer]:
        """Every container of this project the gateway made: replicas, warm watchdogs,
        network sandboxes; running or not."""

    async def create_warm(self, spec: WarmSpec, token: str) -> CreatedReplica:
        """Create (not start) one warm watchdog on the project network: `spec.image`
        under its limits and isolation, with the replica hardening and a tmpfs where
        its function's code will go (development mounts `spec.code_mounts` instead).
        Like `create`, a cancelled caller leaves nothing behind.
        """

    async def memory_usage(self, container_id: str) -> int | None:
        """Bytes of memory a running container uses now (its cgroup's, less the file cache
        it could give back); None when the engine cannot say."""

    async def assign_warm(self, replica: Replica, spec: ReplicaSpec) -> Replica:
        """Give a started warm watchdog `spec`'s limits (unless it has them) and name it
        after the function; from then on it is a replica of `spec.function`."""


@dataclass(frozen=True)
class WarmTask:
    """A running task of a warm service (runtime/backends/swarm/warm.py), unclaimed or not."""

    id: str
    service: str
    """The warm service it belongs to."""
    key: str
    """The service's shared key: it opens the task's one claim only."""
    address: str | None
    created_at: float
    lost: str | None = None
    """Why a claimed task is gone without stopping (its node is down), as `Task.lost`:
    listed once, after it left the running ones."""


class WarmServices(Protocol):
    """Warm watchdogs an engine keeps running as a service per kind of function, which a
    gateway claims over the network (runtime/supply/warm_tasks.py)."""

    @property
    def claim_idle(self) -> float:
        """Seconds a claimed task goes without a request before it retires itself."""

    async def ensure(self, spec: WarmSpec, *, label: str, size: int) -> str:
        """Create `spec`'s warm service with `size` tasks unless it exists; its name."""

    async def remove(self, service: str) -> None: ...

    async def first_claim(self, task_id: str) -> str | None:
        """The digest of the first claim a task's watchdog logged (wire.CLAIMED), read
        through the engine; None while there is none."""

    async def tasks(self) -> list[WarmTask]:
        """The running tasks of every warm service of the project."""


@runtime_checkable
class WarmServiceBackend(Protocol):
    """A service backend that can keep warm services (swarm)."""

    def warm_services(self) -> WarmServices: ...


AnyBackend = ContainerBackend | ServiceBackend
"""A backend of either kind; `kind` tells which."""
