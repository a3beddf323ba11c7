"""functions.yaml: the project file, read into frozen, fully resolved objects.

    project = load_project(Path("functions.yaml"))
    project.functions["hello"].scale.max

Every problem in the file is reported at once, in a SpecError whose Problems
carry the line and the dotted field (`functions.hello.http[0].methods[1]`).
"""

from runtime.spec._load import load_project, load_project_text
from runtime.spec._model import (
    DEFAULT_AUTH,
    DEFAULT_BASE_IMAGE,
    DEFAULT_CPUS,
    DEFAULT_GATEWAY,
    DEFAULT_HANDLER_NAME,
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MEMORY,
    DEFAULT_METHODS,
    DEFAULT_PORT,
    DEFAULT_SCALE,
    DEFAULT_SCALE_MAX,
    DEFAULT_SCALE_MIN,
    DEFAULT_TARGET_CONCURRENCY,
    DEFAULT_TIMEOUT,
    HTTP_METHODS,
    MAX_CPUS,
    MIN_MEMORY,
    RESERVED_ENV_PREFIX,
    RESERVED_PATH_PREFIXES,
    SPEC_FILENAME,
    SPEC_VERSION,
    FunctionSpec,
    GatewaySettings,
    GiB,
    JwtSettings,
    KiB,
    MiB,
    Project,
    RateLimit,
    Route,
    ScalePolicy,
    TlsSettings,
)
from runtime.spec._values import duration as parse_duration
from runtime.spec._values import format_size, reserved_prefix
from runtime.spec._values import size as parse_size

__all__ = [
    "DEFAULT_AUTH",
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_CPUS",
    "DEFAULT_GATEWAY",
    "DEFAULT_HANDLER_NAME",
    "DEFAULT_HOST",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MEMORY",
    "DEFAULT_METHODS",
    "DEFAULT_PORT",
    "DEFAULT_SCALE",
    "DEFAULT_SCALE_MAX",
    "DEFAULT_SCALE_MIN",
    "DEFAULT_TARGET_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "HTTP_METHODS",
    "MAX_CPUS",
    "MIN_MEMORY",
    "RESERVED_ENV_PREFIX",
    "RESERVED_PATH_PREFIXES",
    "SPEC_FILENAME",
    "SPEC_VERSION",
    "FunctionSpec",
    "GatewaySettings",
    "GiB",
    "JwtSettings",
    "KiB",
    "MiB",
    "Project",
    "RateLimit",
    "Route",
    "ScalePolicy",
    "TlsSettings",
    "format_size",
    "load_project",
    "load_project_text",
    "parse_duration",
    "parse_size",
    "reserved_prefix",
]
