"""CORS on the function listener: preflights answered by the gateway, origins marked on answers.

Starlette's `CORSMiddleware` makes every decision: one instance per policy, used for
its `preflight_response` and its `send` (never as a middleware of its own). What this
module adds is which policy a request meets, since it differs per route:

- a declared `http:` path, matched as the router matches it (first template that
  fits, then the method: for a preflight, the method it asks about), gets that
  route's `cors` (already merged over `gateway.cors` by runtime/spec); a method no
  route takes there gets `gateway.cors` limited to the methods that path takes;
- every other path (`/function/...`, `/async-function/...`, `/events/...`, paths with
  no route) gets `gateway.cors`.

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) under a policy
is answered here, before any auth, rate limit, queue or replica: 200 with the allowed
methods and headers, or Starlette's 400 `Disallowed CORS origin, method, headers`
(plain text, as Starlette writes it; with `X-Call-Id` like every answer).
Any other request under a policy goes on as before, and its answer, whoever made it
(the function, or the gateway's own 401, 404, 429, 502, 504), leaves with the
`Access-Control-*` headers of the policy; those a function set itself are dropped, so
the policy in functions.yaml is the one browsers see. Where no policy applies, this
does nothing at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.proxy import new_call_id
from gateway.routing import ALL_METHODS, triggers_by_path
from runtime.spec import CorsSettings, Project, origins, reserved_prefix

Policy = CORSMiddleware
"""One `cors` setting, as Starlette's middleware holds it: it decides, it never serves."""

CORS_PREFIX = b"access-control-"


def policy(settings: CorsSettings, methods: Sequence[str]) -> Policy:
    """`settings` for a path that takes `methods` (what `allow_methods` left out means)."""
    return CORSMiddleware(
        _never_called,
        allow_origins=origins.exact(settings.allow_origins),
        allow_origin_regex=origins.pattern_regex(settings.allow_origins),
        allow_methods=settings.allow_methods if settings.allow_methods is not None else methods,
        allow_headers=settings.allow_headers,
        allow_credentials=settings.allow_credentials,
        allow_private_network=settings.allow_private_network,
        expose_headers=settings.expose_headers,
        max_age=settings.max_age,
    )


async def _never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a CORS policy decides; it does not serve requests")


@dataclass(frozen=True, slots=True)
class DeclaredPath:
    pattern: re.Pattern[str]
    methods: Mapping[str, Policy | None]
    """Each method's route's policy (None: `cors: false`)."""
    other: Policy | None
    """For the methods no route takes there: `gateway.cors`, whose methods default to
    those the path takes, so a preflight asking for another one is refused."""


@dataclass(frozen=True)
class CorsRules:
    """The policies of one functions.yaml, by path and method."""

    default: Policy | None
    """`gateway.cors`, for every path that is not a declared route's."""
    paths: tuple[DeclaredPath, ...]
    """The declared paths, in the router's order."""
    active: bool
    """Whether any policy applies anywhere; when not, requests pass untouched."""

    @classmethod
    def of(cls, project: Project) -> CorsRules:
        settings = project.gateway.cors
        default = policy(settings, ALL_METHODS) if settings is not None else None
        paths = tuple(
            DeclaredPath(
                compile_path(path)[0],
                {
                    method: policy(trigger.cors, trigger.methods) if trigger.cors else None
                    for method, (_, trigger) in triggers.items()
                },
                policy(settings, sorted(triggers)) if settings is not None else None,
            )
            for path, triggers in triggers_by_path(project).items()
        )
        active = default is not None or any(p for d in paths for p in d.methods.values())
        return cls(default, paths if active else (), active)

    def policy_for(self, path: str, method: str) -> Policy | None:
        """The policy a request for `path` with `method` meets; None: no CORS there."""
        if reserved_prefix(path) is None:
            for declared in self.paths:
                if declared.pattern.match(path):
                    return declared.methods.get(method, declared.other)
        return self.default


class Cors:
    """The middleware: in front of the function listener's app and of its shorter road."""

    def __init__(self, app: ASGIApp, rules: Callable[[], CorsRules]) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rules = self.rules()
        if not rules.active or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method: str = scope["method"]
        asked = headers.get("access-control-request-method")
        preflight = method == "OPTIONS" and asked is not None and "origin" in headers
        found = rules.policy_for(scope["path"], asked if preflight and asked else method)
        if found is None:
            await self.app(scope, receive, send)
        elif preflight:
            answer = found.preflight_response(request_headers=headers)
            answer.headers["x-call-id"] = new_call_id()
            await answer(scope, receive, send)
        else:
            marked = functools.partial(_marked, send=send, policy=found, request_headers=headers)
            await self.app(scope, receive, marked)


async def _marked(message: Message, send: Send, policy: Policy, request_headers: Headers) -> None:
    if message["type"] != "http.response.start":
        await send(message)  # the body: nothing to mark
        return
    message["headers"] = [
        (name, value)
        for name, value in message.get("headers", ())
        if not name.lower().startswith(CORS_PREFIX)
    ]
    await policy.send(message, send, request_headers)
