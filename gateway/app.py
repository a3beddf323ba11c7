"""The gateway's two Starlette applications, one per listener, and what they share.

The function listener (`gateway.host:port`) is for callers:

- `/function/{name}[/{path}]` and the `http:` triggers of functions.yaml
  (gateway/calls.py).
- `/events/{topic}` and `/async-function/...` (gateway/events.py).
- Every call passes the function's `auth` and the per-caller rate limit first
  (gateway/access.py, gateway/ratelimit.py).
- CORS (gateway/cors.py), in front of all of it and of the shorter road alike:
  preflights are answered before auth, and answers carry the `Access-Control-*`
  headers of `gateway.cors` or their route's `cors`.

The admin listener (`gateway.admin_host:admin_port`, loopback by default) is for
the operator: the admin API (`/system/*`, `/metrics`, gateway/admin.py), the
dashboard (`/ui`), and `POST /events/{topic}` with the admin token; no CORS there, so
no page elsewhere can read its answers. Keeping them
apart means no function's answer ever shares the dashboard's origin, and "admin"
is decided by which listener took the connection, whatever its address (a
reverse proxy on the same host makes every caller look local).

`/healthz` answers on both. Every answer either app makes itself is JSON with
`X-Call-Id`; paths are matched as sent (no redirect built from the caller's `Host`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from gateway.access import AccessControl, Security
from gateway.admin import AdminApi
from gateway.calls import Calls
from gateway.cors import Cors
from gateway.dashboard import Dashboard
from gateway.errors import error_response, response_for
from gateway.events import event_routes
from gateway.fastpath import FunctionFastPath
from gateway.metrics import Metrics
from gateway.proxy import Proxy, new_call_id
from gateway.routing import ALL_METHODS
from gateway.websocket import Sockets
from runtime.events.service import EventService
from runtime.platform import Platform
from runtime.spec import Project

__all__ = ["ALL_METHODS", "Gateway", "Reload", "Security", "create_gateway"]

METHODS = frozenset(ALL_METHODS)
ADMIN_EVENT_ROUTES = ("/system/", "/events/")
"""Of gateway/events.py's routes, those the admin listener serves: the admin API for
stored work, and publishing (with the admin token). The function listener serves all
but the admin API."""


@dataclass(frozen=True)
class Gateway:
    functions: Starlette
    """The function listener's application."""
    function_fast_path: ASGIApp
    """`/function/` calls straight to their endpoint (gateway/protocol.py's shorter road),
    through the same CORS as the full app."""
    admin: Starlette
    """The admin listener's application."""
    reconfigure: Callable[[Project], None]
    """Serve a new functions.yaml (a `Reload`)."""
    sockets: Sockets
    """The open WebSocket calls (closed with 1001 before the listener stops)."""


@dataclass(frozen=True, eq=False)
class Reload:
    """Serves a new functions.yaml: routes, auth and limits; listening settings stay."""

    access: AccessControl
    proxy: Proxy
    functions: Starlette
    fixed: list[BaseRoute]
    """The function listener's routes that no functions.yaml changes."""
    calls: Calls
    events: EventService | None

    def __call__(self, new: Project) -> None:
        self.access.serve(new)
        self.proxy.max_body_size = new.gateway.max_body_size
        self.functions.router.routes[:] = [*self.fixed, *self.calls.routes(new)]
        if self.events is not None:
            self.events.reconfigure()


def create_gateway(
    platform: Platform, security: Security, events: EventService | None = None
) -> Gateway:
    """Both applications over one platform, metrics, proxy and set of keys."""
    metrics = Metrics(platform)
    proxy = Proxy(platform, platform.project.gateway.max_body_size, metrics)
    access = AccessControl(platform.project, security)
    calls = Calls(platform, proxy, access)
    dashboard = Dashboard(platform, proxy, metrics.stats)
    dashboard.start_sampling()

    sockets = Sockets(platform, access, metrics)
    health = Route("/healthz", healthz, methods=["GET"])
    fixed = [
        health,
        *sockets.routes(),
        *_work_routes(events, access, proxy, admin_listener=False),
    ]
    functions = _json_app(
        [*fixed, *calls.routes(platform.project)],
        [
            Middleware(Cors, rules=access.cors),
            Middleware(FunctionFastPath, endpoint=calls.function, methods=METHODS),
        ],
    )
    function_fast_path = Cors(FunctionFastPath(functions, calls.function, METHODS), access.cors)
    admin_app = _json_app(
        [
            health,
            *AdminApi(platform, security.keys, metrics).routes(access.admin_only),
            *_work_routes(events, access, proxy, admin_listener=True),
            *dashboard.routes(access.admin_only),
        ]
    )
    reload = Reload(access, proxy, functions, fixed, calls, events)
    return Gateway(functions, function_fast_path, admin_app, reload, sockets)


def _work_routes(
    events: EventService | None, access: AccessControl, proxy: Proxy, *, admin_listener: bool
) -> list[BaseRoute]:
    """gateway/events.py's routes that one listener serves, checked by that listener's guard."""
    if events is None:
        return []
    guard = access.admin_guard if admin_listener else access.guard
    routes = event_routes(events, guard, access.limiter, proxy, access.admin_only)
    if admin_listener:
        return [r for r in routes if _path(r).startswith(ADMIN_EVENT_ROUTES)]
    return [r for r in routes if not _path(r).startswith("/system/")]


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
