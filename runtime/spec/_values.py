"""Parsers for the scalar values of functions.yaml.

Each takes whatever YAML produced and returns the typed value, or raises
ValueError with a message saying what was expected and what was found.
"""

from __future__ import annotations

import keyword
import math
import posixpath
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PureWindowsPath
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from runtime.spec import allowlist, cron, origins, topics
from runtime.spec._model import (
    DEFAULT_HANDLER_NAME,
    HTTP_METHODS,
    MAX_CPUS,
    MIN_MEMORY,
    RESERVED_ENV_PREFIX,
    RESERVED_PATH_PREFIXES,
    SPEC_VERSION,
    GiB,
    KiB,
    MiB,
)

T = TypeVar("T")

_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(_NUMBER + r"\s*(ms|s|m|h)?", re.IGNORECASE)
_SIZE = re.compile(_NUMBER + r"\s*([kmg]i?b?|b)?", re.IGNORECASE)
_SECONDS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|float|path|uuid))?\}")

DURATION_EXAMPLES = '30, "500ms", "30s" or "5m"'
SIZE_EXAMPLES = '1048576, "512KiB", "256MiB", "1GB" or "256m"'


class HandlerRef(NamedTuple):
    file: str
    function: str


def describe(value: object) -> str:
    """Show a YAML value the way the user wrote it, or say what kind it is."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value) if isinstance(value, str | int | float) else str(value)


def name(noun: str) -> Callable[[object], str]:
    """Project and function names end up in container and image names, hence the strict form."""

    def check(value: object) -> str:
        if isinstance(value, str) and _NAME.fullmatch(value):
            return value
        raise ValueError(
            f"expected a {noun} of at most 40 lowercase letters, digits and '-', "
            f"starting with a letter (it becomes part of container names), got {describe(value)}"
        )

    return check


def integer(
    minimum: int, maximum: int | None = None, *, noun: str = "an integer"
) -> Callable[[object], int]:
    def check(value: object) -> int:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and minimum <= value
            and (maximum is None or value <= maximum)
        ):
            return value
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"expected {noun} {bounds}, got {describe(value)}")

    return check


def optional(check: Callable[[object], T]) -> Callable[[object], T | None]:
    return lambda value: None if value is None else check(value)


def word(noun: str) -> Callable[[object], str]:
    """A non-empty string without whitespace, such as a host or an image reference."""

    def check(value: object) -> str:
        if isinstance(value, str) and value and not any(c.isspace() for c in value):
            return value
        raise ValueError(f"expected {noun}, got {describe(value)}")

    return check


def version(value: object) -> int:
    if type(value) is int and value == SPEC_VERSION:
        return value
    raise ValueError(
        f"expected {SPEC_VERSION}, the only version this platform reads, got {describe(value)}"
    )


def duration(value: object) -> float:
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError(f"expected a duration like {DURATION_EXAMPLES}, got {describe(value)}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"expected a duration greater than 0, got {describe(value)}")
    return seconds


def duration_or_zero(value: object) -> float:
    """A duration where 0 means "no wait" (e.g. `jwks_refetch_interval: 0s`)."""
    return 0.0 if _seconds(value) == 0 else duration(value)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        number, unit = match.groups()
        return float(Decimal(number) * _SECONDS[(unit or "s").lower()])
    return None


def size(value: object) -> int:
    count = _bytes(value)
    if count is None:
        raise ValueError(f"expected a size like {SIZE_EXAMPLES}, got {describe(value)}")
    if count <= 0:
        raise ValueError(f"expected a size greater than 0, got {describe(value)}")
    return count


MAX_MESSAGE_SIZE = 16 * 1024 * 1024
"""The gateway's WebSocket server refuses larger messages whatever a function sets."""


def message_size(value: object) -> int:
    count = size(value)
    if count > MAX_MESSAGE_SIZE:
        raise ValueError(f"expected a size up to 16MiB, got {describe(value)}")
    return count


def _bytes(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        number, unit = match.group(1), (match.group(2) or "b").lower()
        return int((Decimal(number) * _unit_factor(unit)).to_integral_value())
    return None


def _unit_factor(unit: str) -> int:
    """K, Ki, KiB (and M, G alike) are powers of 1024; KB, MB, GB are powers of 1000."""
    if unit == "b":
        return 1
    base = 1000 if unit.endswith("b") and "i" not in unit else 1024
    return int(base ** ("kmg".index(unit[0]) + 1))


def format_size(count: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if count and count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count}B"


def memory(value: object) -> int:
    count = size(value)
    if count < MIN_MEMORY:
        raise ValueError(
            f"expected at least {format_size(MIN_MEMORY)} of memory, got {describe(value)}: "
            "a Python worker needs about that much to start "
            "(Docker itself refuses anything under 6MB)"
        )
    return count


def cpus(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_CPUS:
        return float(value)
    raise ValueError(
        f"expected a number of CPUs greater than 0 and at most {MAX_CPUS:g}, like 0.5 or 2, "
        f"got {describe(value)}"
    )


def project_path(value: object) -> str:
    """A file path relative to the project root, normalised, that cannot climb out of it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"expected a path relative to the project directory, got {describe(value)}"
        )
    if "\\" in value:
        raise ValueError(f"expected '/' as the path separator, got {value!r}")
    if value.startswith("/") or PureWindowsPath(value).drive:
        raise ValueError(f"expected a path relative to the project directory, got {value!r}")
    normal = posixpath.normpath(value)
    if normal == ".." or normal.startswith("../"):
        raise ValueError(f"expected a path inside the project directory, got {value!r}")
    if normal == ".":
        raise ValueError(f"expected a path to a file, got {value!r}")
    return normal


def handler(value: object) -> HandlerRef:
    expected = 'expected "path/to/file.py" or "path/to/file.py:function"'
    if not isinstance(value, str):
        raise ValueError(f"{expected}, got {describe(value)}")
    file, colon, function = value.partition(":")
    if colon and not function:
        raise ValueError(f"{expected}: the function name after ':' is missing in {value!r}")
    function = function or DEFAULT_HANDLER_NAME
    if not function.isidentifier() or keyword.iskeyword(function):
        raise ValueError(
            f"expected the handler function to be a Python identifier, got {function!r}"
        )
    file = project_path(file)
    if not file.endswith(".py"):
        raise ValueError(f"{expected}, got {value!r}")
    return HandlerRef(file, function)


def reserved_prefix(path: str) -> str | None:
    """The gateway prefix that `path` falls under, matching whole path segments."""
    for prefix in RESERVED_PATH_PREFIXES:
        stem = prefix.rstrip("/")
        if path == stem or path.startswith(stem + "/"):
            return prefix
    return None


def route_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(
            f"expected a path starting with '/', like \"/hello\", got {describe(value)}"
        )
    if any(c.isspace() or c in "?#" for c in value):
        raise ValueError(f"expected a path without spaces, '?' or '#', got {value!r}")
    leftover = _PATH_PARAM.sub("", value)
    if "{" in leftover or "}" in leftover:
        raise ValueError(
            "expected path parameters like {id} or {id:int} (convertors: str, int, float, "
            f"path, uuid), got {value!r}"
        )
    if prefix := reserved_prefix(value):
        raise ValueError(
            f"paths under {prefix.rstrip('/')} are reserved for the gateway, got {value!r}"
        )
    return value


def route_template(path: str) -> str:
    """The path with parameter names erased: /a/{x} and /a/{y} match the same requests."""
    return _PATH_PARAM.sub(_erase_name, path)


def _erase_name(match: re.Match[str]) -> str:
    convertor = match[2]
    return "{:" + convertor + "}" if convertor and convertor != "str" else "{}"


def method(value: object) -> str:
    if isinstance(value, str) and value.upper() in HTTP_METHODS:
        return value.upper()
    raise ValueError(f"expected one of {', '.join(HTTP_METHODS)}, got {describe(value)}")


def env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "expected an environment variable name of letters, digits and '_', "
            f"not starting with a digit, got {describe(value)}"
        )
    if value.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(
            f"expected a name not starting with {RESERVED_ENV_PREFIX}, which is reserved "
            f"for the platform, got {value!r}"
        )
    return value


def env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    hint = " (write '' for an empty value)" if value is None else ""
    raise ValueError(f"expected a string, number or boolean, got {describe(value)}{hint}")


AUTH_MODES = ("none", "key", "jwt")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512")
_SECRET_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(ms|s|m|h|second|minute|hour)\s*")
_RATE_UNITS = {"ms": 0.001, "s": 1.0, "second": 1.0, "m": 60.0, "minute": 60.0, "h": 3600.0,
               "hour": 3600.0}  # fmt: skip


def auth_mode(value: object) -> str:
    if isinstance(value, str) and value in AUTH_MODES:
        return value
    raise ValueError(f"expected one of {', '.join(AUTH_MODES)}, got {describe(value)}")


BACKENDS = ("docker", "swarm", "kubernetes")
QUEUES = ("sqlite", "nats")
ENGINES = ("docker", "podman")
REPLICA_ACCESS = ("auto", "address", "published")
ISOLATIONS = ("container", "gvisor")
REQUEST_BODIES = ("whole", "stream")


def one_of(noun: str, choices: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise ValueError(f"expected {noun}: one of {', '.join(choices)}; got {describe(value)}")

    return check


def nats_url(value: object) -> str:
    if isinstance(value, str) and re.fullmatch(r"(nats|tls)://[^\s/]+", value):
        return value
    raise ValueError(
        f'expected a NATS server URL such as "nats://127.0.0.1:4222", got {describe(value)}'
    )


def http_url(value: object) -> str:
    """An absolute http(s) URL with a host, such as a JWKS endpoint."""
    if isinstance(value, str) and not any(c.isspace() for c in value):
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
    raise ValueError(
        'expected an http(s) URL such as "https://issuer.example/.well-known/jwks.json", '
        f"got {describe(value)}"
    )


def registry(value: object) -> str:
    """A registry host with an optional namespace, such as 127.0.0.1:5000 or reg.example/team."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)*", value):
        return value
    raise ValueError(
        f'expected a registry such as "127.0.0.1:5000" or "registry.example.com/team", '
        f"got {describe(value)}"
    )


def placement(value: object) -> str:
    """A Swarm placement constraint, such as node.role==worker or node.labels.zone!=a."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_.-]*)\s*(==|!=)\s*([^\s=!]+)\s*", value)
        if match:
            return "".join(match.groups())
    raise ValueError(
        'expected a placement constraint such as "node.role==worker" or '
        f'"node.labels.faas!=no", got {describe(value)}'
    )


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {describe(value)}")


def preload(value: object) -> tuple[str, ...] | None:
    """`true` (or absent): the requirements' own top-level modules (None); `false`: none;
    else the module names to import ahead."""
    if value is True:
        return None
    if value is False:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected true, false or a list of module names, got {describe(value)}")
    for item in value:
        if not (isinstance(item, str) and all(part.isidentifier() for part in item.split("."))):
            raise ValueError(
                "expected true, false or a list of module names (like numpy or scipy.linalg), "
                f"got {describe(item)} in the list"
            )
    return tuple(value)


_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
"""Debian Policy 5.6.1: lowercase letters, digits, '+', '-' and '.', at least two, starting
with a letter or digit; nothing else reaches the apt-get command line."""


def debian_package(value: object) -> str:
    if isinstance(value, str) and len(value) <= 128 and _DEBIAN_PACKAGE.fullmatch(value):
        return value
    raise ValueError(
        "expected a Debian package name (lowercase letters, digits, '+', '-' and '.', "
        f"starting with a letter or digit, like libpq5), got {describe(value)}"
    )


def secret_name(value: object) -> str:
    if isinstance(value, str) and _SECRET_NAME.fullmatch(value):
        return value
    raise ValueError(
        "expected a secret name of lowercase letters, digits, '.', '_' and '-' "
        f"(it becomes a file name under /run/secrets), got {describe(value)}"
    )


def jwt_algorithm(value: object) -> str:
    if isinstance(value, str) and value.upper() in JWT_ALGORITHMS:
        return value.upper()
    raise ValueError(f"expected one of {', '.join(JWT_ALGORITHMS)}, got {describe(value)}")


def rate(value: object) -> tuple[int, float]:
    """A rate such as "100/s" or "600/m", as (requests, per seconds)."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match and int(match.group(1)) > 0:
        return int(match.group(1)), _RATE_UNITS[match.group(2)]
    raise ValueError(f'expected a rate like "100/s" or "600/m", got {describe(value)}')


def topic_pattern(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f'expected a topic pattern like "orders.created" or "orders.*", got {describe(value)}'
        )
    problem = topics.pattern_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def schedule(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'expected a cron expression like "*/5 * * * *", got {describe(value)}')
    problem = cron.schedule_problem(value)
    if problem:
        raise ValueError(problem)
    return " ".join(value.split())


def timezone(value: object) -> str:
    problem = cron.timezone_problem(value) if isinstance(value, str) else None
    if not isinstance(value, str) or problem:
        raise ValueError(
            problem or f'expected an IANA time zone name like "UTC", got {describe(value)}'
        )
    return value


def status_code(value: object) -> int:
    if type(value) is int and 400 <= value <= 599:
        return value
    raise ValueError(f"expected an HTTP error status from 400 to 599, got {describe(value)}")


def callback_entry(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(
            "expected a URL prefix like https://hooks.example.com/faas/ or a host pattern "
            f"like *.example.com, got {describe(value)}"
        )
    problem = allowlist.entry_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def origin(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an origin like {origins.EXAMPLES}, got {describe(value)}")
    return origins.origin_entry(value)


def header_name(value: object) -> str:
    """An HTTP header name (a token), or `*` for any."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    raise ValueError(f"expected a header name like Authorization, or '*', got {describe(value)}")


def cors_method(value: object) -> str:
    if value == "*":
        return "*"
    try:
        return method(value)
    except ValueError:
        raise ValueError(
            f"expected one of {', '.join(HTTP_METHODS)} or '*', got {describe(value)}"
        ) from None


def whole_seconds(value: object) -> int:
    return int(duration(value))
