"""The public keys at `gateway.jwt.jwks_url`: fetched when needed, cached, rotated.

A token names its key by `kid`. The key set is fetched on the first token,
again once it is older than `jwks_lifespan`, and again when a token names a
`kid` the set lacks (an identity provider rotating its keys publishes the new
one before signing with it). Every fetch waits at least
`jwks_refetch_interval` after the previous attempt, so tokens with made-up
kids cannot turn the gateway into a client hammering the provider. A failed
fetch keeps the keys already held (and is logged); a token whose key is not
held is refused with 401, never a 500.

The fetch runs on the event loop with aiohttp, bounded in time and size;
PyJWT's own `PyJWKClient` fetches with blocking urllib, so only its key
parsing (`PyJWK`, one JWK at a time, skipping those it cannot use as
`PyJWKSet` does) is used here. The decision of when to fetch is the pure
`should_fetch`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK

log = logging.getLogger("faas.auth")

MAX_JWKS_SIZE = 512 * 1024
"""Bytes; a key set with a few dozen RSA keys is some tens of KiB."""
FETCH_TIMEOUT = 5.0
"""Seconds for one fetch, connecting included; callers wait on it."""

Fetch = Callable[[str], Awaitable[bytes]]


class KeyUnavailable(Exception):
    """No held key verifies the token; the message says why, for the 401."""


class FetchFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: RSAPublicKey
    algorithm: str | None
    """The JWK's own `alg`, when it states one: a token must then use exactly that."""


@dataclass(frozen=True, slots=True)
class FetchState:
    fetched_at: float | None = None
    """When the held keys were fetched (monotonic seconds), None before the first success."""
    attempted_at: float | None = None
    """When the last fetch started, whether or not it succeeded."""


def should_fetch(
    state: FetchState, have_key: bool, now: float, lifespan: float, refetch_interval: float
) -> bool:
    """Fetch when the key is missing or the set is old, but never sooner than
    `refetch_interval` after the last attempt (success or failure)."""
    fresh = state.fetched_at is not None and now - state.fetched_at < lifespan
    if have_key and fresh:
        return False
    return state.attempted_at is None or now - state.attempted_at >= refetch_interval


def signing_keys(document: bytes, algorithms: tuple[str, ...]) -> dict[str | None, SigningKey]:
    """The keys of a JWKS document that can verify `algorithms` (RS*), by kid.

    Keys for encryption (`use: enc`), of another type, or with an `alg` outside
    `algorithms` are left out; raises ValueError when nothing usable is left.
    """
    try:
        data = json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK Set (expected an object with a 'keys' list)")
    found: dict[str | None, SigningKey] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        explicit = entry.get("alg")
        if explicit is not None and explicit not in algorithms:
            continue
        try:
            jwk = PyJWK(entry)
        except jwt.PyJWTError:  # malformed or unsupported: skipped, as PyJWKSet does
            continue
        if jwk.public_key_use not in (None, "sig") or not isinstance(jwk.key, RSAPublicKey):
            continue  # for encryption, or a private key published by mistake
        found.setdefault(jwk.key_id, SigningKey(jwk.key, explicit))
    if not found:
        wanted = ", ".join(algorithms)
        raise ValueError(f"the JWK Set has no RSA signing key for {wanted}")
    return found


async def fetch_jwks(url: str) -> bytes:
    """GET `url`, no redirects, at most MAX_JWKS_SIZE bytes, within FETCH_TIMEOUT."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                url, allow_redirects=False, headers={"accept": "application/json"}
            ) as response,
        ):
            if response.status != 200:
                raise FetchFailed(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > MAX_JWKS_SIZE:
                    raise FetchFailed(f"larger than {MAX_JWKS_SIZE // 1024} KiB")
            return bytes(body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FetchFailed(str(exc) or type(exc).__name__) from None


def shown_url(url: str) -> str:
    """The URL for logs and messages: no user info, no query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


class JwksKeys:
    """The keys of one JWKS URL; one instance is shared by every guard of a configuration."""

    def __init__(
        self,
        url: str,
        algorithms: tuple[str, ...],
        *,
        lifespan: float,
        refetch_interval: float,
        fetch: Fetch = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._algorithms = algorithms
        self._lifespan = lifespan
        self._refetch_interval = refetch_interval
        self._fetch = fetch
        self._clock = clock
        self._keys: Mapping[str | None, SigningKey] = {}
        self._state = FetchState()
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> SigningKey:
        """The key named `kid` (a token without one: the set's only key), fetching if due."""
        found = self._held(kid)
        if found is not None and not self._due(have_key=True):
            return found
        seen = self._state.attempted_at
        async with self._lock:  # one fetch at a time; who waited for it uses its keys
            if self._state.attempted_at == seen and self._due(self._held(kid) is not None):
                await self._refresh()
        found = self._held(kid)
        if found is not None:
            return found
        if self._state.fetched_at is None:
            raise KeyUnavailable(
                f"no signing keys are available: the key set at {shown_url(self.url)} "
                "could not be fetched"
            )
        if kid is None:
            raise KeyUnavailable("the token names no key (kid) and the key set has several")
        raise KeyUnavailable(f"the token's key (kid {kid[:64]!r}) is not in the key set")

    def _held(self, kid: str | None) -> SigningKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _due(self, have_key: bool) -> bool:
        now = self._clock()
        return should_fetch(self._state, have_key, now, self._lifespan, self._refetch_interval)

    async def _refresh(self) -> None:
        began = self._clock()
        self._state = FetchState(self._state.fetched_at, began)
        try:
            keys = signing_keys(await self._fetch(self.url), self._algorithms)
        except (FetchFailed, ValueError) as exc:
            held = f"keeping the {len(self._keys)} keys held" if self._keys else "no keys held"
            log.warning(
                f"JWKS fetch failed ({held})",
                extra={"url": shown_url(self.url), "reason": str(exc)[:200]},
            )
            return
        added = sorted(str(kid) for kid in keys.keys() - self._keys.keys())
        removed = sorted(str(kid) for kid in self._keys.keys() - keys.keys())
        self._keys = keys
        self._state = FetchState(began, began)
        level = logging.INFO if added or removed else logging.DEBUG
        log.log(level, "JWKS fetched", extra={"url": shown_url(self.url), "keys": len(keys),
                "added": ",".join(added), "removed": ",".join(removed)})  # fmt: skip
