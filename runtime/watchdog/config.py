"""Watchdog settings, read from an environment mapping (tests pass a dict)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import wire

MIB = 1024 * 1024


class ConfigError(Exception):
    """An environment variable is missing or malformed; the watchdog cannot start."""


DEFAULT_TIMEOUT = 30.0
"""Seconds a call may run when neither FAAS_TIMEOUT nor the call says otherwise."""


@dataclass(frozen=True, slots=True)
class Settings:
    handler_file: str
    token: str
    handler_name: str = "handle"
    code_dir: str = wire.CODE_DIR
    function_name: str = "function"
    host: str = "0.0.0.0"
    port: int = wire.PORT
    timeout: float = DEFAULT_TIMEOUT
    timeout_is_limit: bool = False
    """FAAS_TIMEOUT was set: a call's own limit (wire.TIMEOUT_HEADER) may only lower it.
    Unset, the gateway's per-call limit applies as sent (replicas and warm watchdogs are
    started without their function's timeout), and `timeout` only when none is sent."""
    max_body: int = 10 * MIB
    threads: int = 16
    shutdown_grace: float = 10.0
    drain_delay: float = 0.0
    """Seconds to keep accepting calls after SIGTERM, before draining."""
    log_level: str = "INFO"
    warm: bool = False
    """Started without a function: the gateway assigns one later with POST /_/init."""
    secrets_dir: str = wire.SECRETS_DIR
    deps_dir: str = wire.DEPS_DIR
    """Where a warm watchdog writes the requirements it is sent; on PYTHONPATH in the image."""
    claim: bool = False
    """`token` is a warm service's shared key: a function comes only with a claim."""
    claim_idle: float = 0.0
    """A claimed watchdog exits after this many seconds without a request; 0: never."""
    run_as: tuple[int, int] | None = None
    """(uid, gid) a warm watchdog becomes before it imports its function; None: stays."""
    preload: tuple[str, ...] = ()
    """Modules a warm watchdog imports before it reports ready (its image's requirements)."""
    debug_port: int = 0
    """Development: the port debugpy listens on before the handler is imported; 0: none."""


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

    def user(name: str) -> tuple[int, int] | None:
        raw = environ.get(name, "").strip()
        if not raw:
            return None
        uid, _, gid = raw.partition(":")
        if not (uid.isdigit() and gid.isdigit()):
            problems.append(f"{name}={raw!r} must be uid:gid (numbers)")
            return None
        return int(uid), int(gid)

    def modules(name: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in environ.get(name, "").split(",") if part.strip())
        bad = [n for n in names if not all(piece.isidentifier() for piece in n.split("."))]
        if bad:
            problems.append(f"{name}: {', '.join(map(repr, bad))} cannot be module names")
        return names

    warm = flag(wire.WARM_ENV)
    settings = Settings(
        handler_file=text(wire.HANDLER_FILE_ENV, "" if warm else None),
        token=text(wire.TOKEN_ENV),
        handler_name=text(wire.HANDLER_NAME_ENV, "handle"),
        code_dir=text(wire.CODE_DIR_ENV, wire.CODE_DIR),
        function_name=text(wire.FUNCTION_NAME_ENV, "function"),
        host=text(wire.HOST_ENV, "0.0.0.0"),
        port=int(number(wire.PORT_ENV, wire.PORT, int, 0)),
        timeout=number(wire.TIMEOUT_ENV, DEFAULT_TIMEOUT, float, 0.001),
        timeout_is_limit=wire.TIMEOUT_ENV in environ,
        max_body=int(number(wire.MAX_BODY_ENV, 10 * MIB, int, 0)),
        threads=int(number(wire.THREADS_ENV, 16, int, 1)),
        shutdown_grace=number(wire.SHUTDOWN_GRACE_ENV, 10.0, float, 0.0),
        drain_delay=number(wire.DRAIN_DELAY_ENV, 0.0, float, 0.0),
        log_level=text(wire.LOG_LEVEL_ENV, "INFO").upper(),
        warm=warm,
        secrets_dir=text(wire.SECRETS_DIR_ENV, wire.SECRETS_DIR),
        deps_dir=text(wire.DEPS_DIR_ENV, wire.DEPS_DIR),
        claim=flag(wire.CLAIM_ENV) and warm,
        claim_idle=number(wire.CLAIM_IDLE_ENV, 0.0, float, 0.0),
        run_as=user(wire.RUN_AS_ENV),
        preload=modules(wire.PRELOAD_ENV),
        debug_port=int(number(wire.DEBUG_PORT_ENV, 0, int, 0)),
    )
    for name, port in ((wire.PORT_ENV, settings.port), (wire.DEBUG_PORT_ENV, settings.debug_port)):
        if port > 65535:
            problems.append(f"{name}={port} is out of range")
    if problems:
        raise ConfigError("; ".join(problems))
    return settings


def forget_variable(name: str, environ: str = "/proc/self/environ") -> bool:
    """Remove `name` from this process's environment for good; True once it is gone.

    `os.environ.pop` calls unsetenv, which drops the C library's pointer only: the
    bytes stay where execve put them, and the kernel shows that block as
    /proc/self/environ to the process and to anything running as its user (a
    handler's subprocess, a debugging endpoint that dumps it). So the entry is
    overwritten with NUL bytes in place, found through /proc/self/stat's
    env_start, and the block is read again to check. `posix.environ`, the copy
    Python made at start-up, is cleared too. The bytes are written through
    /proc/self/mem (0.2 ms; importing ctypes for memset would take ~2.5 ms of
    every start), with ctypes where that file cannot be written. gVisor reports
    env_start as 0: there the entries are found through the C library's `environ`
    pointers, before unsetenv drops them.
    """
    import posix

    key = name.encode() + b"="
    try:
        block = _read(environ)
    except OSError:
        block = b""  # no /proc: nothing shows the block either
    if any(entry.startswith(key) for entry in block.split(b"\0")):
        try:
            start = _env_start(environ.rpartition("/")[0] + "/stat")
        except (OSError, ValueError, IndexError):
            start = 0
        if start:
            offset = 0
            for entry in block.split(b"\0"):
                if entry.startswith(key):
                    _zero(start + offset, len(entry), environ.rpartition("/")[0] + "/mem")
                offset += len(entry) + 1
        else:
            _zero_through_libc(key)
    os.environ.pop(name, None)
    posix.environ.pop(name.encode(), None)
    if not block:
        return False
    try:
        return not any(entry.startswith(key) for entry in _read(environ).split(b"\0"))
    except OSError:
        return False


def _zero_through_libc(key: bytes) -> None:
    """Overwrite the entries starting with `key` that libc's `environ` points at."""
    import ctypes

    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    index = 0
    while address := environ[index]:
        entry = ctypes.string_at(address)
        if entry.startswith(key):
            ctypes.memset(address, 0, len(entry))
        index += 1


def _zero(address: int, length: int, mem: str) -> None:
    try:
        fd = os.open(mem, os.O_WRONLY)
        try:
            if os.pwrite(fd, bytes(length), address) == length:
                return
        finally:
            os.close(fd)
    except OSError:
        pass
    import ctypes

    ctypes.memset(address, 0, length)


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _env_start(stat: str) -> int:
    """Field 50 of proc(5)'s stat: where the environment block starts in memory.

    The command name (field 2) is in parentheses and may hold spaces or ')', so
    fields are counted from the last ')': the next one is field 3.
    """
    raw = _read(stat)
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[50 - 3])
