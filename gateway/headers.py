"""Which request and response headers cross the gateway.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection and are
never forwarded. `X-Faas-*` headers are the platform's own channel to the
watchdog (token, call id, timeout), so a caller must not be able to set them.
"""

from __future__ import annotations

from runtime.invocation import RawHeaders
from runtime.watchdog import wire

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
INTERNAL_PREFIX = wire.INTERNAL_PREFIX.encode()
REQUEST_DROPPED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
RESPONSE_DROPPED = HOP_BY_HOP | {b"content-length", b"x-call-id", b"server", b"date"}
"""The gateway frames every answer itself: a replica's framing never reaches a caller."""


def _listed_in_connection(headers: RawHeaders) -> frozenset[bytes]:
    named = [value for key, value in headers if key.lower() == b"connection"]
    return frozenset(token.strip().lower() for value in named for token in value.split(b","))


def inbound(headers: RawHeaders) -> RawHeaders:
    """Headers of a caller's request as the function may see them.

    ASGI servers give header names lowercased already.
    """
    kept = [
        (key, value)
        for key, value in headers
        if key not in REQUEST_DROPPED and not key.startswith(INTERNAL_PREFIX)
    ]
    if len(kept) == len(headers):
        return kept  # no Connection header among them: nothing it could list
    extra = _listed_in_connection(headers)
    return [(key, value) for key, value in kept if key not in extra] if extra else kept


def outbound(headers: RawHeaders) -> RawHeaders:
    """Headers of a replica's response as the caller may see them."""
    extra = _listed_in_connection(headers)
    result = []
    for key, value in headers:
        lowered = key.lower()
        if lowered in RESPONSE_DROPPED or lowered in extra or lowered.startswith(INTERNAL_PREFIX):
            continue
        result.append((lowered, value))
    return result
