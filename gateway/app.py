"""The gateway's two Starlette applications, one per listener, and what they share.

The function listener (`gateway.host:port`) is for callers:

- `/function/{name}[/{path}]`, any method: the function itself (OpenFaaS style);
  the function sees the remainder of the path. Functions with `public: false`
  are not found here.
- The `http:` triggers of functions.yaml: one route per path; each method goes
  to the function that declared it, others get 405 with `Allow`. A trigger with
  `webhook_secret` is checked by its signature, before any replica is woken.
- `/events/{topic}` and `/async-function/...` (gateway/events.py).
- Every call passes the function's `auth` and the per-caller rate limit first.

The admin listener (`gateway.admin_host:admin_port`, loopback by default) is for
the operator: the admin API (`/system/*`, `/metrics`, gateway/admin.py), the
dashboard (`/ui`), and `POST /events/{topic}` with the admin token. Keeping them
apart means no function's answer ever shares the dashboard's origin, and "admin"
is decided by which listener took the connection, whatever its address (a
reverse proxy on the same host makes every caller look local).

`/healthz` answers on both. Every answer either app makes itself is JSON with
`X-Call-Id`; paths are matched as sent (no redirect built from the caller's `Host`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from gateway.admin import AdminApi
from gateway.auth import Caller, Denied, Guard
from gateway.dashboard import Dashboard
from gateway.errors import calling, error_response, response_for
from gateway.events import event_routes
from gateway.fastpath import FunctionFastPath
from gateway.keys import KeyStore
from gateway.metrics import Metrics
from gateway.proxy import Proxy, new_call_id
from gateway.ratelimit import RateLimiter
from runtime.errors import FaasError, FunctionNotFound
from runtime.events.service import EventService
from runtime.platform import Platform
from runtime.secrets import SecretStore
from runtime.spec import Project
from runtime.spec import Route as Trigger

Endpoint = Callable[[Request], Awaitable[Response]]

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ADMIN_EVENT_ROUTES = ("/system/", "/events/")
"""Of gateway/events.py's routes, those the admin listener serves: the admin API for
stored work, and publishing (with the admin token). The function listener serves all
but the admin API."""


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

    @classmethod
    def of(cls, project: Project, security: Security) -> Access:
        keys, secrets, token = security.keys, security.secrets, security.admin_token
        return cls(
            Guard(project, keys, secrets, token),
            Guard(project, keys, secrets, token, admin_listener=True),
            RateLimiter(project.gateway.rate_limit) if project.gateway.rate_limit else None,
        )


@dataclass(frozen=True)
class Gateway:
    functions: Starlette
    """The function listener's application."""
    function_fast_path: ASGIApp
    """`/function/` calls straight to their endpoint (gateway/protocol.py's shorter road)."""
    admin: Starlette
    """The admin listener's application."""
    reconfigure: Callable[[Project], None]
    """Serve a new functions.yaml: routes, auth and limits; listening settings stay."""


class Calls:
    """The function listener's calls: `/function/...` and the declared `http:` triggers."""

    def __init__(self, platform: Platform, proxy: Proxy, access: Callable[[], Access]) -> None:
        self.platform = platform
        self.proxy = proxy
        self.access = access

    def routes(self, project: Project) -> list[BaseRoute]:
        by_path: dict[str, dict[str, tuple[str, Trigger]]] = defaultdict(dict)
        for function in project.functions.values():
            for trigger in function.routes:
                for method in trigger.methods:
                    by_path[trigger.path][method] = (function.name, trigger)
        return [
            Route("/function/{name}", self.function_root, methods=ALL_METHODS),
            Route("/function/{name}/{path:path}", self.function_path, methods=ALL_METHODS),
            *(
                Route(path, self.declared(triggers), methods=ALL_METHODS)
                for path, triggers in by_path.items()
            ),
        ]

    async def function(self, request: Request, name: str, below: str) -> Response:
        """`below` is the path as the caller encoded it: the replica gets it as sent."""
        return await self.invoke(request, name, below, None)

    async def function_root(self, request: Request) -> Response:
        return await self.function(request, request.path_params["name"], "/")

    async def function_path(self, request: Request) -> Response:
        below = _raw_path(request).removeprefix("/function/").partition("/")[2]
        return await self.function(request, request.path_params["name"], "/" + below)

    def declared(self, triggers: dict[str, tuple[str, Trigger]]) -> Endpoint:
        allow = ", ".join(sorted(triggers))

        async def dispatch(request: Request) -> Response:
            target = triggers.get(request.method)
            if target is None:
                message = f"{request.method} is not allowed here; allowed: {allow}"
                return error_response(405, message, new_call_id(), {"allow": allow})
            return await self.invoke(request, target[0], _raw_path(request), target[1])

        return dispatch

    async def invoke(
        self, request: Request, name: str, path: str, trigger: Trigger | None
    ) -> Response:
        began = time.perf_counter()
        access = self.access()
        try:
            function = self.platform.function(name)
            if trigger is None and not function.public:
                raise FunctionNotFound(f"no function named {name!r}")
            calling.set(name)
            client = request.client.host if request.client else "?"
            body = None
            if trigger is not None and trigger.webhook_secret:
                body = await self.proxy.read_body(request)
                caller = access.guard.verify_webhook(
                    trigger.webhook_secret, body, request.headers, name, client
                )
            else:
                caller = access.guard.authenticate(request.headers, client, function)
            _check_rate(access.limiter, caller)
        except Denied as denied:
            self.proxy.observe(name, denied.status, began)
            return error_response(denied.status, denied.message, new_call_id(), denied.headers)
        except FaasError as exc:
            return response_for(exc, new_call_id())
        return await self.proxy.forward(request, name, path, body=body, strip=caller.consumed)


def create_gateway(
    platform: Platform, security: Security, events: EventService | None = None
) -> Gateway:
    """Both applications over one platform, metrics, proxy and set of keys."""
    metrics = Metrics(platform)
    proxy = Proxy(platform, platform.project.gateway.max_body_size, metrics)
    access = Access.of(platform.project, security)
    calls = Calls(platform, proxy, lambda: access)
    dashboard = Dashboard(platform, proxy, metrics.stats)
    dashboard.start_sampling()

    def admin(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                access.admin_guard.admin(request.headers)
            except Denied as denied:
                return error_response(denied.status, denied.message, headers=denied.headers)
            return await endpoint(request)

        return guarded

    def work(guard: Callable[[], Guard], admin_listener: bool) -> list[BaseRoute]:
        if events is None:
            return []
        routes = event_routes(events, guard, lambda: access.limiter, proxy, admin)
        if admin_listener:
            return [r for r in routes if _path(r).startswith(ADMIN_EVENT_ROUTES)]
        return [r for r in routes if not _path(r).startswith("/system/")]

    health = Route("/healthz", healthz, methods=["GET"])
    fixed = [health, *work(lambda: access.guard, admin_listener=False)]
    methods = frozenset(ALL_METHODS)
    functions = _json_app(
        [*fixed, *calls.routes(platform.project)],
        [Middleware(FunctionFastPath, endpoint=calls.function, methods=methods)],
    )
    function_fast_path = FunctionFastPath(functions, calls.function, methods)
    admin_app = _json_app(
        [
            health,
            *AdminApi(platform, security.keys, metrics).routes(admin),
            *work(lambda: access.admin_guard, admin_listener=True),
            *dashboard.routes(admin),
        ]
    )

    def reconfigure(new: Project) -> None:
        nonlocal access
        access = Access.of(new, security)
        proxy.max_body_size = new.gateway.max_body_size
        functions.router.routes[:] = [*fixed, *calls.routes(new)]
        if events is not None:
            events.reconfigure()

    return Gateway(functions, function_fast_path, admin_app, reconfigure)


def _json_app(routes: list[BaseRoute], middleware: list[Middleware] | None = None) -> Starlette:
    """An app whose own answers (no route, wrong method, its errors) are JSON with a call id,
    and which matches paths as sent: no redirect to the other slash form, whose
    `Location` Starlette would build from the caller's `Host` header."""
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            HTTPException: http_error,
            404: not_found,
            405: method_not_allowed,
            Exception: internal_error,
        },
    )
    app.router.redirect_slashes = False
    return app


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, f"no route for {request.url.path}", new_call_id())


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    allow = dict(getattr(exc, "headers", None) or {}).get("Allow", "")
    message = f"{request.method} is not allowed here" + (f"; allowed: {allow}" if allow else "")
    return error_response(405, message, new_call_id(), {"allow": allow} if allow else None)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, new_call_id(), exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    return response_for(exc, new_call_id())


def _path(route: BaseRoute) -> str:
    return str(getattr(route, "path", ""))


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def _check_rate(limiter: RateLimiter | None, caller: Caller) -> None:
    if limiter is None or not caller.rate_limited:
        return
    wait = limiter.take(caller.identity, time.monotonic())
    if wait > 0:
        raise Denied(
            429, "rate limit exceeded; retry later", {"retry-after": str(max(1, round(wait)))}
        )
