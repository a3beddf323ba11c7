"""The resolved project: what the rest of the platform reads, every default applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.watchdog import wire

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SPEC_FILENAME = "functions.yaml"
SPEC_VERSION = 1

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_ADMIN_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 8081
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_BODY_SIZE = 10 * MiB
DEFAULT_MAX_RESPONSE_SIZE = 100 * MiB

DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_DURATION = 600.0
DEFAULT_MAX_MESSAGE_SIZE = MiB
"""How long a streamed answer may last in all (`timeout` bounds the wait for each chunk)."""
DEFAULT_MEMORY = 256 * MiB
DEFAULT_CPUS = 1.0
DEFAULT_HANDLER_NAME = "handle"
DEFAULT_METHODS = ("GET",)

DEFAULT_SCALE_MIN = 0
DEFAULT_SCALE_MAX = 5
DEFAULT_TARGET_CONCURRENCY = 10
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_QUEUE = 100

MIN_MEMORY = 16 * MiB
MAX_CPUS = 64.0
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
RESERVED_PATH_PREFIXES = (
    "/function/",
    "/async-function/",
    "/system/",
    "/events/",
    "/ui",
    "/metrics",
    "/healthz",
    wire.CONTROL_PREFIX,  # the watchdog's own paths
)
RESERVED_ENV_PREFIX = wire.ENV_PREFIX


DEFAULT_AUTH = "key"
DEFAULT_MAX_HEADER_SIZE = 16 * KiB
DEFAULT_JWT_LEEWAY = 30.0
DEFAULT_JWKS_LIFESPAN = 300.0
"""Seconds a fetched JWKS is used before it is fetched again (PyJWKClient's default too)."""
DEFAULT_JWKS_REFETCH_INTERVAL = 30.0
"""Least seconds between two fetches, however many tokens name a key the set lacks."""

DEFAULT_TIMEZONE = "UTC"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_RETRY_ON = (408, 429, 500, 502, 503, 504)
DEFAULT_MAX_BACKLOG = 10_000
DEFAULT_EVENTS_AUTH = "key"
DEFAULT_RESULT_RETENTION = 3600.0
DEFAULT_WARM_POOL = 8
DEFAULT_WARM_TASKS = 2
DEFAULT_WARM_POOL_MEMORY = 512 * 1024 * 1024
DEFAULT_ISOLATION = "container"
DEFAULT_CORS_MAX_AGE = 600


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Which browser origins may call, and what they may send and read (gateway/cors.py).

    Origins are as browsers send them (lowercase, no default port), `*` for any, or
    `scheme://*.domain[:port]` for any subdomain of `domain`.
    """

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] | None = None
    """None: the methods of the route it applies to (every method on other paths)."""
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = DEFAULT_CORS_MAX_AGE
    """Whole seconds a browser may cache a preflight's answer."""
    allow_private_network: bool = False
    """Answer Private Network Access preflights (a public page calling a private address)."""


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    methods: tuple[str, ...] = DEFAULT_METHODS
    webhook_secret: str | None = None
    """When set, callers are checked by an HMAC-SHA256 signature of the body
    (`X-Hub-Signature-256`) made with this secret, instead of the function's `auth`."""
    cors: CorsSettings | None = None
    """`gateway.cors` with this route's own `cors` laid over it; None: no CORS here."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    requests: int
    per: float
    """Seconds: `requests` calls per `per` seconds for each caller."""


@dataclass(frozen=True, slots=True)
class JwtSettings:
    algorithms: tuple[str, ...]
    secret: str | None
    """Name of the secret holding the HMAC key (HS* algorithms)."""
    public_key_file: str | None
    """PEM file with the public key (RS* algorithms), relative to the project root."""
    issuer: str | None
    audience: str | None
    leeway: float
    jwks_url: str | None = None
    """Where the public keys are (RS* algorithms), instead of `public_key_file`."""
    jwks_lifespan: float = DEFAULT_JWKS_LIFESPAN
    jwks_refetch_interval: float = DEFAULT_JWKS_REFETCH_INTERVAL


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True)
class ScalePolicy:
    """How many replicas a function may have and when the autoscaler adds or drops one.

    `target_concurrency` is what the autoscaler aims for per replica; `concurrency`,
    when set, is a hard per-replica limit beyond which calls wait in a queue of at
    most `max_queue` before being refused.
    """

    min: int = DEFAULT_SCALE_MIN
    max: int = DEFAULT_SCALE_MAX
    target_concurrency: int = DEFAULT_TARGET_CONCURRENCY
    concurrency: int | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_queue: int = DEFAULT_MAX_QUEUE


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed event delivery, async call or cron firing is retried before the DLQ."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF
    """Seconds before the second attempt; doubled for each further one."""
    max_backoff: float = DEFAULT_MAX_BACKOFF
    retry_on: tuple[int, ...] = DEFAULT_RETRY_ON
    """Statuses worth another attempt (a timeout counts as 504, a lost replica as 502)."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE
    """Bytes of a function's answer body past which the call ends with 502."""
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    """Bytes of a request head (request line and headers) past which it gets 431."""
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    """Seconds a connection has to send a complete request head, else 408."""
    max_connections: int | None = None
    """Open caller connections at most; None: derived from the file-descriptor limit."""
    admin_host: str = DEFAULT_ADMIN_HOST
    admin_port: int = DEFAULT_ADMIN_PORT
    """The admin API and dashboard listen here, apart from the functions."""
    rate_limit: RateLimit | None = None
    jwt: JwtSettings | None = None
    tls: TlsSettings | None = None
    admin_remote: bool = False
    """Allow `admin_host` to be other than a loopback address."""
    events_auth: str = DEFAULT_EVENTS_AUTH
    """Who may publish to /events/{topic}: key, jwt or none (the admin token always may)."""
    callback_allow: tuple[str, ...] = ()
    """Where async-call results may be POSTed: URL prefixes or host patterns; empty: nowhere."""
    callback_secret: str | None = None
    """Secret signing callbacks; None: the generated key in .faas/callback-key."""
    result_retention: float = DEFAULT_RESULT_RETENTION
    """Seconds that finished async calls and deliveries stay queryable."""
    warm_pool: int = DEFAULT_WARM_POOL
    """Most pre-started watchdogs kept per kind (runtime/warm_pool.py): a function at zero
    starts on one of them; how many are kept follows recent cold starts. 0 turns them off."""
    warm_pool_memory: int = DEFAULT_WARM_POOL_MEMORY
    """Bytes the warm watchdogs may hold together; the least recently needed kinds go first."""
    warm_tasks: int = DEFAULT_WARM_TASKS
    """Swarm: tasks each warm service keeps (runtime/supply/warm_tasks.py), one service per
    kind of function and set of limits. 0 turns warm starts on Swarm off."""
    cors: CorsSettings | None = None
    """CORS for every path of the function listener but the `http:` routes, which carry
    their own (this with their `cors` laid over it); None: no CORS."""


DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where replicas run and where durable work is kept, beyond one machine."""

    backend: str = "docker"
    """docker (one engine) or swarm (Docker Swarm services, any number of nodes)."""
    registry: str | None = None
    """Registry (host[:port][/namespace]) that function images are pushed to, so every
    Swarm node can pull them; None keeps images local to the node that built them."""
    queue: str = "sqlite"
    """sqlite (embedded, one gateway) or nats (NATS JetStream, shared by several gateways)."""
    nats_url: str = DEFAULT_NATS_URL
    engine: str = "docker"
    """docker (Docker Engine, rootless Docker, Docker Desktop) or podman: which API the
    docker backend looks for when DOCKER_HOST / CONTAINER_HOST do not say."""
    replica_access: str = "auto"
    """How the gateway dials replicas: auto, address (their IP on the project network)
    or published (a port published on 127.0.0.1); auto picks what works here."""
    placement: tuple[str, ...] = ()
    """Swarm placement constraints of every function's replicas (node.role==worker, ...)."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function, with the project defaults already merged in.

    `handler_file` and `requirements` are POSIX paths relative to the project root;
    sizes are in bytes and durations in seconds.
    """

    name: str
    handler_file: str
    handler_name: str
    routes: tuple[Route, ...]
    environment: Mapping[str, str] = field(hash=False)
    timeout: float
    memory: int
    cpus: float
    requirements: str | None
    base_image: str
    scale: ScalePolicy
    auth: str = DEFAULT_AUTH
    public: bool = True
    """False keeps the function off /function/{name}: only its triggers reach it."""
    secrets: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    """Topic patterns this function subscribes to (`*` one segment, `>` the rest)."""
    schedule: str | None = None
    """A cron expression; each firing is one queued invocation."""
    timezone: str = DEFAULT_TIMEZONE
    retry: RetryPolicy = RetryPolicy()
    max_backlog: int = DEFAULT_MAX_BACKLOG
    """Stored but undelivered events and async calls beyond which new ones get 429."""
    callback_secret: str | None = None
    """Secret signing this function's callbacks; None: gateway.callback_secret's key."""
    request_body: str = "whole"
    """`stream`: the handler is called once the request's head is in and reads the body
    with `event.stream()` as it arrives; `whole`: `event.body` holds all of it."""
    max_duration: float = DEFAULT_MAX_DURATION
    """The whole of a streamed answer; `timeout` bounds its first byte and each wait after."""
    include: tuple[str, ...] = ()
    """Files and directories (project-relative) its replicas get besides its own code
    (runtime/own_code.py): data files, modules imported by name at run time."""
    isolation: str = DEFAULT_ISOLATION
    """container (runc: namespaces, seccomp, no capabilities) or gvisor (runsc: a user-space
    kernel between the function and the host's)."""
    preload: tuple[str, ...] | None = None
    """Modules its warm watchdogs import before it is given to them; None: the top-level
    modules of its requirements; (): none (imports with side effects run at its start)."""
    debug: bool = False
    """Development only: one replica, started at once, with debugpy listening and no call
    timeout (runtime/spec/debug.py)."""
    websocket: bool = False
    """Callers may open a WebSocket on its routes; its module defines
    `async def handle_websocket(ws, context)` (README "WebSockets")."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """The largest WebSocket message either way; a larger one closes the socket with 1009."""
    system_packages: tuple[str, ...] = ()
    """Debian packages installed into its image with apt, from the base image's own apt
    sources: those of `defaults`, then its own (runtime/images.py)."""


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    root: Path
    file: Path
    gateway: GatewaySettings
    functions: Mapping[str, FunctionSpec] = field(hash=False)
    cluster: ClusterSettings = ClusterSettings()
    lines: Mapping[tuple[str | int, ...], int] = field(
        default_factory=dict, hash=False, compare=False, repr=False
    )
    """Where each key is written in `file` (("functions", "hello", "secrets", 0) -> 9), so
    checks made after loading (handlers, secret values) can name the line."""


DEFAULT_GATEWAY = GatewaySettings()
DEFAULT_SCALE = ScalePolicy()
DEFAULT_RETRY = RetryPolicy()
