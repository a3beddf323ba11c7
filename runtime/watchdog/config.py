"""Watchdog settings, read from an environment mapping (tests pass a dict)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

MIB = 1024 * 1024


class ConfigError(Exception):
    """An environment variable is missing or malformed; the watchdog cannot start."""


@dataclass(frozen=True, slots=True)
class Settings:
    handler_file: str
    token: str
    handler_name: str = "handle"
    code_dir: str = "/app"
    function_name: str = "function"
    host: str = "0.0.0.0"
    port: int = 8080
    timeout: float = 30.0
    max_body: int = 10 * MIB
    threads: int = 16
    shutdown_grace: float = 10.0
    drain_delay: float = 0.0
    """Seconds to keep accepting calls after SIGTERM, before draining."""
    log_level: str = "INFO"
    warm: bool = False
    """Started without a function: the gateway assigns one later with POST /_/init."""
    secrets_dir: str = "/run/secrets"
    deps_dir: str = "/opt/faas/deps"
    """Where a warm watchdog writes the requirements it is sent; on PYTHONPATH in the image."""


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build `Settings` from FAAS_* variables; raise `ConfigError` naming every bad one."""
    problems: list[str] = []

    def text(name: str, default: str | None = None) -> str:
        value = environ.get(name, "").strip()
        if value:
            return value
        if default is None:
            problems.append(f"{name} is required")
            return ""
        return default

    def number(name: str, default: float, parse: Callable[[str], float], minimum: float) -> float:
        raw = environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = parse(raw)
        except ValueError:
            problems.append(f"{name}={raw!r} is not a valid number")
            return default
        if not value >= minimum:  # also rejects NaN
            problems.append(f"{name}={raw!r} must be at least {minimum:g}")
            return default
        return value

    def flag(name: str) -> bool:
        raw = environ.get(name, "").strip().lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw not in ("", "0", "false", "no", "off"):
            problems.append(f"{name}={raw!r} must be 1 or 0")
        return False

    warm = flag("FAAS_WARM")
    settings = Settings(
        handler_file=text("FAAS_HANDLER_FILE", "" if warm else None),
        token=text("FAAS_TOKEN"),
        handler_name=text("FAAS_HANDLER_NAME", "handle"),
        code_dir=text("FAAS_CODE_DIR", "/app"),
        function_name=text("FAAS_FUNCTION_NAME", "function"),
        host=text("FAAS_HOST", "0.0.0.0"),
        port=int(number("FAAS_PORT", 8080, int, 0)),
        timeout=number("FAAS_TIMEOUT", 30.0, float, 0.001),
        max_body=int(number("FAAS_MAX_BODY", 10 * MIB, int, 0)),
        threads=int(number("FAAS_THREADS", 16, int, 1)),
        shutdown_grace=number("FAAS_SHUTDOWN_GRACE", 10.0, float, 0.0),
        drain_delay=number("FAAS_DRAIN_DELAY", 0.0, float, 0.0),
        log_level=text("FAAS_LOG_LEVEL", "INFO").upper(),
        warm=warm,
        secrets_dir=text("FAAS_SECRETS_DIR", "/run/secrets"),
        deps_dir=text("FAAS_DEPS_DIR", "/opt/faas/deps"),
    )
    if settings.port > 65535:
        problems.append(f"FAAS_PORT={settings.port} is out of range")
    if problems:
        raise ConfigError("; ".join(problems))
    return settings
