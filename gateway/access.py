"""Who may call what: the guards and rate limit a functions.yaml makes, swapped whole on reload.

Routes never hold a guard: they read `AccessControl.current` per request, so a
reloaded functions.yaml applies from the next request on, with no route rebuilt
and no request seeing half of the old rules and half of the new.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Denied, Guard, jwks_keys
from gateway.cors import CorsRules
from gateway.errors import error_response
from gateway.keys import KeyStore
from gateway.ratelimit import RateLimiter
from gateway.routing import Endpoint
from runtime.secrets import SecretStore
from runtime.spec import Project


@dataclass(frozen=True)
class Security:
    """The gateway's view of the project's `.faas/` state: keys, secrets, admin token."""

    keys: KeyStore
    secrets: SecretStore
    admin_token: str


@dataclass(frozen=True)
class Access:
    """Who may do what, made anew from each functions.yaml a reload serves."""

    guard: Guard
    """The function listener's: the admin token means nothing there."""
    admin_guard: Guard
    limiter: RateLimiter | None
    cors: CorsRules
    """Which browser origins may call where (gateway/cors.py)."""

    @classmethod
    def of(cls, project: Project, security: Security) -> Access:
        keys, secrets, token = security.keys, security.secrets, security.admin_token
        jwt = project.gateway.jwt
        jwks = jwks_keys(jwt) if jwt and jwt.jwks_url else None
        return cls(
            Guard(project, keys, secrets, token, jwks=jwks),
            Guard(project, keys, secrets, token, admin_listener=True, jwks=jwks),
            RateLimiter(project.gateway.rate_limit) if project.gateway.rate_limit else None,
            CorsRules.of(project),
        )


class AccessControl:
    """The `Access` of the functions.yaml being served."""

    def __init__(self, project: Project, security: Security) -> None:
        self._security = security
        self.current = Access.of(project, security)

    def serve(self, project: Project) -> None:
        self.current = Access.of(project, self._security)

    def guard(self) -> Guard:
        return self.current.guard

    def admin_guard(self) -> Guard:
        return self.current.admin_guard

    def limiter(self) -> RateLimiter | None:
        return self.current.limiter

    def cors(self) -> CorsRules:
        return self.current.cors

    def admin_only(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint` behind the admin token (a `Guarded`)."""

        async def guarded(request: Request) -> Response:
            try:
                self.current.admin_guard.admin(request.headers)
            except Denied as denied:
                return error_response(denied.status, denied.message, headers=denied.headers)
            return await endpoint(request)

        return guarded
