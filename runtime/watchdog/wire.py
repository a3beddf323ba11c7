"""The host <-> watchdog contract: every name both sides of a replica's edge must agree on.

The gateway side (runtime/replica_client.py, the backends, the warm pool, the image
builder, the exporters) imports this as `runtime.watchdog.wire`; the watchdog imports
it as `.wire`, and images carry it in the package `faas_watchdog`. Each value is on
the wire of images already built: changing one is a protocol change, not a rename.
Standard library only, importing nothing the watchdog does not load anyway (`typing`).

HTTP/1.1, every request carrying the replica's token in TOKEN_HEADER:

    GET  READY_PATH    200 once the handler imported (a warm watchdog: once it
                       started), 503 with the import failure as JSON
    POST RELOAD_PATH   import the handler's current code again (development)
    POST INIT_PATH     a warm watchdog's function, as an init archive (below); a
                       watchdog of a shared warm service (CLAIM_ENV) is claimed first,
                       once: CLAIM_HEADER and no body; then the archive, with the
                       claimer's token
    POST RETIRE_PATH   a claimed warm watchdog drains its calls and exits 0
    anything else      an invocation

Request headers under INTERNAL_PREFIX are the platform's own channel: the watchdog
keeps them out of the handler's `event.headers`, and the gateway strips them from
what callers send and from what replicas answer.

Environment (set at container creation): TOKEN_ENV, HANDLER_FILE_ENV, ... below;
the watchdog reads them in config.py and erases TOKEN_ENV from its own environment.

Init archive (INIT_CONTENT_TYPE, one uncompressed tar; parsed by warm.py):

    init.json       InitSettings, as JSON
    app/<path>      the code, written to the code directory (CODE_DIR)
    deps/<path>     the requirements, written to the deps directory (DEPS_DIR)
    secrets/<name>  a secret, written to the secrets directory (SECRETS_DIR), mode 0o400

The image builder names the code and requirements of a function image the same way
(`app/`, `deps/`), so what it collects for an image is what a warm watchdog is sent.
"""

from __future__ import annotations

from typing import TypedDict

# -- paths -------------------------------------------------------------------------

CONTROL_PREFIX = "/_/"
"""The watchdog's own paths; never an invocation's (functions.yaml reserves it)."""
READY_PATH = "/_/ready"
RELOAD_PATH = "/_/reload"
INIT_PATH = "/_/init"
RETIRE_PATH = "/_/retire"

# -- headers (lower case, as both sides compare them) -----------------------------------

INTERNAL_PREFIX = "x-faas-"
CLAIM_HEADER = "x-faas-claim"
"""On POST INIT_PATH to a watchdog with CLAIM_ENV: the token it accepts from then on, in
place of the warm key every task of its service shares. Accepted once; afterwards the
warm key is refused (403), so a second claimer learns at once that it lost."""
MIN_CLAIM_TOKEN = 32
"""Characters a claim's token has at least (the gateway sends 43: 32 random bytes)."""
CLAIMED = "claimed"
"""`msg` of the JSON line a claimed watchdog writes to its output before it answers the
claim, with `claim`: `claim_digest` of the claimer's token."""
TOKEN_HEADER = "x-faas-token"
"""The replica's secret, compared in constant time; without it every path answers 403."""
CALL_ID_HEADER = "x-faas-call-id"
TIMEOUT_HEADER = "x-faas-timeout"
"""Seconds the call may take; the watchdog only ever lowers its own limit with it."""
TOPIC_HEADER = "x-faas-topic"
"""Present on event and cron deliveries: the handler's `event.topic`."""
EVENT_ID_HEADER = "x-faas-event-id"
ATTEMPT_HEADER = "x-faas-attempt"
BODY_HEADER = "x-faas-body"
"""BODY_STREAM when the function reads its request body as a stream (`request_body: stream`):
the handler is called once the head is in, and takes the body with `event.stream()`."""
BODY_STREAM = "stream"
WEBSOCKET_HEADER = "x-faas-websocket"
"""`1`: a WebSocket call. No answer follows the head: the connection carries the tunnel's
frames (runtime/watchdog/frames.py) both ways, to `handle_websocket(ws, context)`."""
MAX_MESSAGE_HEADER = "x-faas-max-message"
"""A WebSocket call's largest message (the function's max_message_size), in bytes."""
MAX_BODY_HEADER = "x-faas-max-body"
"""The request body limit for this call (gateway.max_body_size), which the gateway has
enforced already; without it, the watchdog's own (MAX_BODY_ENV, default 10 MiB)."""

# -- environment ---------------------------------------------------------------------

ENV_PREFIX = "FAAS_"
"""The watchdog's variables; a function's own environment cannot use the prefix."""
TOKEN_ENV = "FAAS_TOKEN"
HANDLER_FILE_ENV = "FAAS_HANDLER_FILE"
"""Relative to the code directory; required unless WARM_ENV is set."""
HANDLER_NAME_ENV = "FAAS_HANDLER_NAME"
FUNCTION_NAME_ENV = "FAAS_FUNCTION_NAME"
CODE_DIR_ENV = "FAAS_CODE_DIR"
DEPS_DIR_ENV = "FAAS_DEPS_DIR"
SECRETS_DIR_ENV = "FAAS_SECRETS_DIR"
HOST_ENV = "FAAS_HOST"
PORT_ENV = "FAAS_PORT"
TIMEOUT_ENV = "FAAS_TIMEOUT"
MAX_BODY_ENV = "FAAS_MAX_BODY"
THREADS_ENV = "FAAS_THREADS"
SHUTDOWN_GRACE_ENV = "FAAS_SHUTDOWN_GRACE"
DRAIN_DELAY_ENV = "FAAS_DRAIN_DELAY"
LOG_LEVEL_ENV = "FAAS_LOG_LEVEL"
WARM_ENV = "FAAS_WARM"
"""`1`: start with no function and wait for POST INIT_PATH."""
CLAIM_ENV = "FAAS_CLAIM"
"""`1`: this warm watchdog's TOKEN_ENV is a key shared by every task of its service (a
Swarm warm service): it takes a function only in a claim (CLAIM_HEADER)."""
CLAIM_IDLE_ENV = "FAAS_CLAIM_IDLE"
"""Seconds a claimed watchdog may go without a request before it exits on its own (0:
never): it is back in its warm service within seconds if its gateway vanished."""
RUN_AS_ENV = "FAAS_RUN_AS"
"""`uid:gid` a warm watchdog started as root becomes once it has written its function's
files, before it imports the handler (REPLICA_UID below)."""
PRELOAD_ENV = "FAAS_PRELOAD"
"""Comma-separated modules a warm watchdog imports before it reports ready: the
requirements baked into its image, so a function given to it finds them imported."""
DEBUG_PORT_ENV = "FAAS_DEBUG_PORT"
"""Development (`debug: true`): debugpy listens on this port before the handler is
imported, loaded from DEBUGGER_DIR (runtime/watchdog/debugging.py)."""

# -- the image's layout --------------------------------------------------------------

PORT = 8080
"""Where a replica's watchdog listens inside its container."""
PACKAGE = "faas_watchdog"
"""The name images give this package (`python3 -m faas_watchdog`)."""
HANDLER_PACKAGE = "faas"
HANDLER_MODULES = ("__init__.py", "handler.py")
"""What images carry of the host's `faas` package: `faas.handler`, the types handlers
see, which this package imports (the only import from outside it)."""
CODE_DIR = "/app"
DEPS_DIR = "/opt/faas/deps"
"""On the image's PYTHONPATH; a warm watchdog writes the requirements it is sent here."""
SECRETS_DIR = "/run/secrets"
DEBUGGER_DIR = "/opt/faas/debugger"
"""Where a debugged replica mounts debugpy (resolved on the host for the image's Python)."""
DEBUG_PORT = 5678
"""debugpy's port inside a debugged replica (its conventional one)."""
REPLICA_UID = 10001
REPLICA_GID = 10001
"""Who function code runs as. A warm watchdog starts as root (with only the capabilities
to change user), forks a writer that stays root, and becomes this user (RUN_AS_ENV)
before it imports anything of the function's (its preloaded requirements included); the
writer puts what the watchdog is sent into root-owned directories and exits, so the
function cannot write or re-permit its files (runtime/watchdog/warm.py)."""

# -- the init archive ----------------------------------------------------------------

INIT_CONTENT_TYPE = "application/x-tar"
INIT_SETTINGS = "init.json"
INIT_CODE = "app/"
INIT_DEPS = "deps/"
INIT_SECRETS = "secrets/"


class InitSettings(TypedDict):
    """init.json. The watchdog also accepts it without `handler_name` (then "handle")
    and `environment` (then none); any other key is refused."""

    function: str
    handler_file: str
    handler_name: str
    environment: dict[str, str]


def claim_digest(token: str) -> str:
    """What a claimed watchdog logs of its claimer's token (CLAIMED)."""
    import hashlib  # here: a watchdog that is never claimed does not load it

    return hashlib.sha256(token.encode()).hexdigest()[:32]
