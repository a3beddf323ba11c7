"""Who may call what: function auth (none, key, jwt), webhook signatures, the admin token.

Every check ends in a `Caller` or raises `Denied` with the status to answer:
401 (with `WWW-Authenticate`) for missing or bad credentials, 403 for good
credentials outside their scope, 404 where the thing asked for must not be
seen to exist. Secrets are compared in constant time and never logged: a
failed attempt logs the function, the reason and at most a key's id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.jwks import JwksKeys, KeyUnavailable
from gateway.keys import PREFIX, KeyStore
from runtime.errors import FaasError
from runtime.secrets import SecretStore
from runtime.spec import FunctionSpec, JwtSettings, Project

log = logging.getLogger("faas.auth")

CHALLENGE = 'Bearer realm="faas"'
SIGNATURE_HEADER = "x-hub-signature-256"
KEY_HEADERS = frozenset({b"authorization", b"x-api-key"})
BEARER_HEADERS = frozenset({b"authorization"})


@dataclass(frozen=True, slots=True)
class Caller:
    identity: str
    """Who is calling, for rate limits and logs: `key:<id>`, `jwt:<sub>`, `ip:<addr>`, ..."""
    consumed: frozenset[bytes] = frozenset()
    """Credential headers the gateway used up; they are not forwarded to the function."""
    rate_limited: bool = False
    """Whether `gateway.rate_limit` applies: to API keys and token subjects, not to anonymous
    callers, whose address is not an identity (per-address limits belong in front of us)."""


class Denied(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def unauthorized(message: str, error: str = "invalid_token") -> Denied:
    return Denied(401, message, {"www-authenticate": f'{CHALLENGE}, error="{error}"'})


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Guard:
    def __init__(
        self,
        project: Project,
        keys: KeyStore,
        secrets: SecretStore,
        admin_token: str,
        *,
        admin_listener: bool = False,
        jwks: JwksKeys | None = None,
    ):
        """`admin_listener`: this guard serves the admin listener, where the admin token
        counts (the listener that took the connection decides, not its address).
        `jwks`: the key cache to share with the configuration's other guard."""
        self._keys = keys
        self._admin_token = admin_token
        self._admin_listener = admin_listener
        self._events_auth = project.gateway.events_auth
        self._jwt = project.gateway.jwt
        self._jwks: JwksKeys | None = None
        self._jwt_key: str | bytes | None = None
        if self._jwt and self._jwt.jwks_url:
            self._jwks = jwks or jwks_keys(self._jwt)
        elif self._jwt:
            self._jwt_key = _jwt_key(self._jwt, secrets, project.root)
        self._secrets = secrets

    # -- functions -----------------------------------------------------------

    async def authenticate(
        self, headers: Mapping[str, str], client: str, function: FunctionSpec
    ) -> Caller:
        """Async because a token's key may have to be fetched (gateway.jwt.jwks_url)."""
        if function.auth == "none":
            return Caller(f"ip:{client}")
        if function.auth == "key":
            return self._by_key(headers, function.name, client, (function.name,))
        return await self._by_jwt(headers, function.name, client, (function.name,))

    async def publisher(
        self,
        headers: Mapping[str, str],
        client: str,
        topic: str,
        subscribers: Sequence[str],
    ) -> Caller:
        """Who may publish to `topic`: the admin token (on the admin listener), else
        `gateway.events_auth`; a key or token must be allowed to call every subscriber."""
        token = _bearer(headers)
        if (
            token is not None
            and self._admin_listener
            and hmac.compare_digest(token.encode(), self._admin_token.encode())
        ):
            return Caller("admin", BEARER_HEADERS)
        what = f"publishing to {topic}"
        if self._events_auth == "none":
            return Caller(f"ip:{client}")
        if self._events_auth == "key":
            return self._by_key(headers, what, client, tuple(subscribers))
        return await self._by_jwt(headers, what, client, tuple(subscribers))

    def _by_key(
        self, headers: Mapping[str, str], function: str, client: str, scope: tuple[str, ...]
    ) -> Caller:
        """`function` names what is asked for (in messages); `scope`, what the key must allow."""
        presented = _bearer(headers) or headers.get("x-api-key", "").strip()
        if not presented:
            self._failed(function, client, "no API key")
            raise unauthorized(
                f"{function} needs an API key (Authorization: Bearer or X-API-Key)",
                error="invalid_request",
            )
        key = self._keys.verify(presented)
        if key is None:
            key_id = (
                presented[len(PREFIX) :].partition("_")[0][:8]
                if presented.startswith(PREFIX)
                else "?"
            )
            self._failed(function, client, "unknown or revoked API key", key_id=key_id)
            raise unauthorized("the API key is not valid")
        outside = [name for name in scope if not key.allows(name)]
        if outside:
            self._failed(function, client, "API key out of scope", key_id=key.id)
            raise Denied(403, f"this API key may not call {', '.join(outside)}")
        return Caller(f"key:{key.id}", KEY_HEADERS, rate_limited=True)

    async def _by_jwt(
        self, headers: Mapping[str, str], function: str, client: str, scope: tuple[str, ...]
    ) -> Caller:
        token = _bearer(headers)
        if token is None:
            self._failed(function, client, "no bearer token")
            raise unauthorized(f"{function} needs a bearer token", error="invalid_request")
        settings = self._jwt
        assert settings is not None
        key = (
            self._jwt_key
            if self._jwks is None
            else await self._published_key(token, function, client)
        )
        assert key is not None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(settings.algorithms),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp"] + (["aud"] if settings.audience else [])},
            )
        except jwt.ExpiredSignatureError:
            self._failed(function, client, "expired token")
            raise unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            self._failed(function, client, f"invalid token: {type(exc).__name__}")
            raise unauthorized(f"the token is not valid: {exc}") from None
        allowed = claims.get("functions")
        outside = [name for name in scope if not isinstance(allowed, list) or name not in allowed]
        if allowed is not None and outside:
            self._failed(function, client, "token out of scope", subject=str(claims.get("sub")))
            raise Denied(403, f"this token may not call {', '.join(outside)}")
        return Caller(f"jwt:{claims.get('sub', '?')}", BEARER_HEADERS, rate_limited=True)

    async def _published_key(self, token: str, function: str, client: str) -> RSAPublicKey:
        """The key from the JWKS that the token's header names (`kid`, and `alg` if the
        key states one)."""
        assert self._jwks is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            self._failed(function, client, f"invalid token: {type(exc).__name__}")
            raise unauthorized(f"the token is not valid: {exc}") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            self._failed(function, client, "invalid token: kid is not a string")
            raise unauthorized("the token is not valid: its kid is not a string")
        try:
            found = await self._jwks.key(kid)
        except KeyUnavailable as exc:
            self._failed(function, client, "no key for the token", kid=str(kid)[:64])
            raise unauthorized(f"the token is not valid: {exc}") from None
        if found.algorithm is not None and header.get("alg") != found.algorithm:
            self._failed(function, client, "token algorithm differs from its key's")
            raise unauthorized(
                f"the token is not valid: its key is for {found.algorithm}, "
                f"not {str(header.get('alg'))[:16]}"
            )
        return found.key

    def _failed(self, function: str, client: str, reason: str, **fields: str) -> None:
        log.warning(
            "authentication failed",
            extra={"function": function, "client": client, "reason": reason, **fields},
        )

    # -- webhooks ------------------------------------------------------------

    def verify_webhook(
        self, secret_name: str, body: bytes, headers: Mapping[str, str], function: str, client: str
    ) -> Caller:
        """GitHub-style: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`."""
        presented = headers.get(SIGNATURE_HEADER, "")
        expected = (
            "sha256=" + hmac.new(self._secrets.get(secret_name), body, hashlib.sha256).hexdigest()
        )
        if not presented:
            self._failed(function, client, "webhook without signature")
            raise unauthorized("missing X-Hub-Signature-256", error="invalid_request")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            self._failed(function, client, "webhook signature mismatch")
            raise unauthorized("the webhook signature does not match")
        return Caller(f"webhook:{function}")

    # -- admin ---------------------------------------------------------------

    def admin(self, headers: Mapping[str, str]) -> None:
        """The admin API answers only on the admin listener and only with the token."""
        if not self._admin_listener:
            raise Denied(404, "not found")
        token = _bearer(headers)
        if token is None:
            raise unauthorized("the admin API needs the admin token", error="invalid_request")
        if not hmac.compare_digest(token.encode(), self._admin_token.encode()):
            log.warning("admin authentication failed")
            raise unauthorized("the admin token is not valid")


def jwks_keys(settings: JwtSettings) -> JwksKeys:
    assert settings.jwks_url is not None
    return JwksKeys(
        settings.jwks_url,
        settings.algorithms,
        lifespan=settings.jwks_lifespan,
        refetch_interval=settings.jwks_refetch_interval,
    )


def _jwt_key(settings: JwtSettings, secrets: SecretStore, root: Path) -> str | bytes:
    if any(a.startswith("RS") for a in settings.algorithms):
        assert settings.public_key_file is not None
        try:
            return (root / settings.public_key_file).read_bytes()
        except OSError as exc:
            raise FaasError(
                f"gateway.jwt.public_key_file {settings.public_key_file}: {exc.strerror}"
            ) from None
    assert settings.secret is not None
    return secrets.get(settings.secret)
