"""functions.yaml: the project file, read into frozen, fully resolved objects.

    project = load_project(Path("functions.yaml"))
    project.functions["hello"].scale.max

Every problem in the file is reported at once, in a SpecError whose Problems
carry the line and the dotted field (`functions.hello.http[0].methods[1]`).
Values may hold `${NAME}` and `${NAME:-default}`, read from the environment and
then from `.env` beside the file (see _interpolate.py and _dotenv.py).
What lies outside the file is checked on request: the handler files
(`check_handlers=True`, or `handler_problems`), and secret values
(`missing_secrets`, given the names the secret store has values for).

Three of its value languages are public modules, pure, because the runtime
uses them past loading too: `topics` (topic names, subscription patterns,
matching), `cron` (schedules and when they fire), `allowlist` (which callback
URLs `gateway.callback_allow` permits), `origins` (the browser origins `cors`
allows).
"""

from runtime.spec._dotenv import DOTENV_FILENAME
from runtime.spec._handlers import handler_problems
from runtime.spec._load import load_project, load_project_text, placeholder_values
from runtime.spec._model import (
    DEFAULT_AUTH,
    DEFAULT_BASE_IMAGE,
    DEFAULT_CPUS,
    DEFAULT_GATEWAY,
    DEFAULT_HANDLER_NAME,
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MEMORY,
    DEFAULT_METHODS,
    DEFAULT_PORT,
    DEFAULT_RETRY,
    DEFAULT_SCALE,
    DEFAULT_SCALE_MAX,
    DEFAULT_SCALE_MIN,
    DEFAULT_TARGET_CONCURRENCY,
    DEFAULT_TIMEOUT,
    DEFAULT_TIMEZONE,
    HTTP_METHODS,
    MAX_CPUS,
    MIN_MEMORY,
    RESERVED_ENV_PREFIX,
    RESERVED_PATH_PREFIXES,
    SPEC_FILENAME,
    SPEC_VERSION,
    ClusterSettings,
    CorsSettings,
    FunctionSpec,
    GatewaySettings,
    GiB,
    JwtSettings,
    KiB,
    MiB,
    Project,
    RateLimit,
    RetryPolicy,
    Route,
    ScalePolicy,
    TlsSettings,
)
from runtime.spec._secret_refs import missing_secrets, secret_references
from runtime.spec._values import MAX_MESSAGE_SIZE, format_size, reserved_prefix
from runtime.spec._values import duration as parse_duration
from runtime.spec._values import size as parse_size

__all__ = [
    "DEFAULT_AUTH",
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_CPUS",
    "DEFAULT_GATEWAY",
    "DEFAULT_HANDLER_NAME",
    "DEFAULT_HOST",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MEMORY",
    "DEFAULT_METHODS",
    "DEFAULT_PORT",
    "DEFAULT_RETRY",
    "DEFAULT_SCALE",
    "DEFAULT_SCALE_MAX",
    "DEFAULT_SCALE_MIN",
    "DEFAULT_TARGET_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TIMEZONE",
    "DOTENV_FILENAME",
    "HTTP_METHODS",
    "MAX_CPUS",
    "MAX_MESSAGE_SIZE",
    "MIN_MEMORY",
    "RESERVED_ENV_PREFIX",
    "RESERVED_PATH_PREFIXES",
    "SPEC_FILENAME",
    "SPEC_VERSION",
    "ClusterSettings",
    "CorsSettings",
    "FunctionSpec",
    "GatewaySettings",
    "GiB",
    "JwtSettings",
    "KiB",
    "MiB",
    "Project",
    "RateLimit",
    "RetryPolicy",
    "Route",
    "ScalePolicy",
    "TlsSettings",
    "format_size",
    "handler_problems",
    "load_project",
    "load_project_text",
    "missing_secrets",
    "parse_duration",
    "parse_size",
    "placeholder_values",
    "reserved_prefix",
    "secret_references",
]
