"""How much a caller can make the gateway hold before it has sent a request.

gateway/protocol.py enforces these as bytes arrive, on every listener: the
request head is counted while it is unfinished (llhttp would keep it whole
in memory), it must be complete within `header_timeout`, and connections past
`max_connections` are refused at once. That cap stays below the process's
file-descriptor limit, so a flood of idle connections cannot take the
descriptors that proxied calls need for replicas, the engine and the queue.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from pathlib import Path

from runtime.spec import GatewaySettings

log = logging.getLogger("faas.gateway")

RESERVED_DESCRIPTORS = 256
"""Kept for what is not a connection: the engine's API, SQLite, log streams, files."""
ADMIN_CONNECTIONS = 64
"""The admin listener's own cap: the CLI and a few dashboards, on loopback."""
MIN_CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_header_size: int
    """Bytes of one request head, request line included."""
    header_timeout: float
    """Seconds from connecting (or from the first byte of a later request) to a whole head."""
    max_connections: int


def connection_cap(descriptors: int, configured: int | None = None) -> int:
    """Caller connections the function listener may hold with `descriptors` available.

    Half of what is left after the reserve and the admin listener: each proxied call
    can hold a replica connection as well as its caller's. 20,000 descriptors give
    (20000 - 256 - 64) // 2 = 9840. A configured cap above that is lowered to it.
    """
    cap = max(MIN_CONNECTIONS, (descriptors - RESERVED_DESCRIPTORS - ADMIN_CONNECTIONS) // 2)
    return cap if configured is None else min(configured, cap)


def function_limits(settings: GatewaySettings, descriptors: int) -> ListenerLimits:
    cap = connection_cap(descriptors, settings.max_connections)
    if settings.max_connections is not None and cap < settings.max_connections:
        log.warning(
            "gateway.max_connections lowered to fit the file-descriptor limit",
            extra={"configured": settings.max_connections, "cap": cap},
        )
    return ListenerLimits(settings.max_header_size, settings.header_timeout, cap)


def admin_limits(settings: GatewaySettings) -> ListenerLimits:
    return ListenerLimits(settings.max_header_size, settings.header_timeout, ADMIN_CONNECTIONS)


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _kernel_maximum()
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit", extra={"error": str(exc)})
    return soft


def _kernel_maximum() -> int:
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20
