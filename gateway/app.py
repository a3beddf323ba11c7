"""The gateway's Starlette application: which URL reaches which function, and who may ask.

- `/function/{name}[/{path}]`, any method: the function itself (OpenFaaS style);
  the function sees the remainder of the path. Functions with `public: false`
  are not found here.
- The `http:` triggers of functions.yaml: one route per path; each method goes
  to the function that declared it, others get 405 with `Allow`. A trigger with
  `webhook_secret` is checked by its signature, before any replica is woken.
- Every call passes the function's `auth` and the per-caller rate limit first.
- `/healthz` for load balancers; the admin API (`/system/*`, `/metrics`) needs
  the admin token and answers on loopback only (unless `gateway.admin_remote`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.auth import Caller, Denied, Guard
from gateway.dashboard import Dashboard  # dashboard (issue 7)
from gateway.errors import error_response, response_for
from gateway.events import event_routes
from gateway.fastpath import FunctionFastPath
from gateway.keys import KeyStore
from gateway.limits import HeaderSizeLimit
from gateway.metrics import CONTENT_TYPE, Metrics
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


@dataclass(frozen=True)
class Security:
    """The gateway's view of the project's `.faas/` state: keys, secrets, admin token."""

    keys: KeyStore
    secrets: SecretStore
    admin_token: str


def create_app(
    platform: Platform, security: Security, events: EventService | None = None
) -> Starlette:
    project = platform.project
    metrics = Metrics(platform)
    proxy = Proxy(platform, project.gateway.max_body_size, metrics)
    guard = Guard(project, security.keys, security.secrets, security.admin_token)
    limiter = RateLimiter(project.gateway.rate_limit) if project.gateway.rate_limit else None

    async def invoke(request: Request, name: str, path: str, trigger: Trigger | None) -> Response:
        began = time.perf_counter()
        try:
            function = platform.function(name)
            if trigger is None and not function.public:
                raise FunctionNotFound(f"no function named {name!r}")
            client = request.client.host if request.client else "?"
            body = None
            if trigger is not None and trigger.webhook_secret:
                body = await proxy.read_body(request)
                caller = guard.verify_webhook(
                    trigger.webhook_secret, body, request.headers, name, client
                )
            else:
                caller = guard.authenticate(request.headers, client, function)
            _check_rate(limiter, caller)
        except Denied as denied:
            proxy.observe(name, denied.status, began)
            return error_response(denied.status, denied.message, new_call_id(), denied.headers)
        except FaasError as exc:
            return response_for(exc, new_call_id())
        return await proxy.forward(request, name, path, body=body, strip=caller.consumed)

    async def function(request: Request, name: str, below: str) -> Response:
        """`below` is the path as the caller encoded it: the replica gets it as sent."""
        return await invoke(request, name, below, None)

    async def function_root(request: Request) -> Response:
        return await function(request, request.path_params["name"], "/")

    async def function_path(request: Request) -> Response:
        below = _raw_path(request).removeprefix("/function/").partition("/")[2]
        return await function(request, request.path_params["name"], "/" + below)

    def declared(path: str, triggers: dict[str, tuple[str, Trigger]]) -> Endpoint:
        allow = ", ".join(sorted(triggers))

        async def dispatch(request: Request) -> Response:
            target = triggers.get(request.method)
            if target is None:
                message = f"{request.method} is not allowed here; allowed: {allow}"
                return error_response(405, message, new_call_id(), {"allow": allow})
            return await invoke(request, target[0], _raw_path(request), target[1])

        return dispatch

    def admin(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            local = request.scope.get("server")
            try:
                guard.admin(request.headers, local[0] if local else None)
            except Denied as denied:
                return error_response(denied.status, denied.message, headers=denied.headers)
            return await endpoint(request)

        return guarded

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def system_functions(request: Request) -> Response:
        return JSONResponse({"project": project.name, "functions": platform.describe()})

    async def scale_events(request: Request) -> Response:
        events = [
            {
                "at": e.at,
                "function": e.function,
                "from": e.before,
                "to": e.after,
                "reason": e.reason,
            }
            for e in platform.autoscaler.events
        ]
        return JSONResponse({"events": events})

    async def list_keys(request: Request) -> Response:
        return JSONResponse({"keys": [key.public() for key in security.keys.list()]})

    async def create_key(request: Request) -> Response:
        try:
            payload: dict[str, Any] = await request.json()
        except ValueError:
            return error_response(400, "expected a JSON body")
        functions = tuple(payload.get("functions") or ("*",))
        unknown = [f for f in functions if f != "*" and f not in platform.pools]
        if unknown:
            return error_response(400, f"unknown functions: {', '.join(unknown)}")
        key, secret = security.keys.create(str(payload.get("name") or ""), functions)
        return JSONResponse({**key.public(), "key": secret}, status_code=201)

    async def set_scale(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            payload = await request.json()
            pool = platform.pool(name)
            minimum = int(payload.get("min", pool.spec.scale.min))
            maximum = int(payload.get("max", max(pool.spec.scale.max, minimum)))
            scale = platform.set_scale(name, minimum, maximum)
        except (ValueError, TypeError, AttributeError):
            return error_response(400, 'expected a JSON body like {"min": 1, "max": 4}')
        except FunctionNotFound as exc:
            return error_response(404, str(exc))
        except FaasError as exc:
            return error_response(400, str(exc))
        return JSONResponse({"function": name, "min": scale.min, "max": scale.max})

    async def revoke_key(request: Request) -> Response:
        try:
            key = security.keys.revoke(request.path_params["key_id"])
        except FaasError as exc:
            return error_response(404, str(exc))
        return JSONResponse(key.public())

    async def logs(request: Request) -> Response:
        """Recent lines as JSON, or with `follow=1` a stream of NDJSON lines that stays open."""
        function = request.query_params.get("function") or None
        if function is not None and function not in platform.pools:
            return error_response(404, f"no function named {function!r}")
        try:
            since = float(request.query_params.get("since", "0")) or None
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            return error_response(400, "since and limit must be numbers")
        recent = platform.logs.recent(function, since, limit)
        if request.query_params.get("follow") not in ("1", "true"):
            return JSONResponse({"lines": [line.to_json() for line in recent]})

        async def stream() -> AsyncIterator[bytes]:
            for line in recent:
                yield json.dumps(line.to_json()).encode() + b"\n"
            async for line in platform.logs.follow(function):
                yield json.dumps(line.to_json()).encode() + b"\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route for {request.url.path}", new_call_id())

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        allow = dict(getattr(exc, "headers", None) or {}).get("Allow", "")
        message = f"{request.method} is not allowed here" + (f"; allowed: {allow}" if allow else "")
        return error_response(405, message, new_call_id(), {"allow": allow} if allow else None)

    def declared_routes(project: Project) -> list[BaseRoute]:
        by_path: dict[str, dict[str, tuple[str, Trigger]]] = defaultdict(dict)
        for function in project.functions.values():
            for trigger in function.routes:
                for method in trigger.methods:
                    by_path[trigger.path][method] = (function.name, trigger)
        return [
            Route(path, declared(path, triggers), methods=ALL_METHODS)
            for path, triggers in by_path.items()
        ]

    # -- dashboard (issue 7): /ui, GET /system/stats, /system/functions/{name}/invoke --
    dashboard = Dashboard(platform, proxy, metrics.stats)
    dashboard.start_sampling()
    # -- end dashboard --

    fixed: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/system/functions", admin(system_functions), methods=["GET"]),
        Route("/system/scale-events", admin(scale_events), methods=["GET"]),
        Route("/system/keys", admin(list_keys), methods=["GET"]),
        Route("/system/keys", admin(create_key), methods=["POST"]),
        Route("/system/keys/{key_id}", admin(revoke_key), methods=["DELETE"]),
        Route("/system/functions/{name}/scale", admin(set_scale), methods=["POST"]),
        Route("/system/logs", admin(logs), methods=["GET"]),
        Route("/metrics", admin(prometheus), methods=["GET"]),
        *(event_routes(events, lambda: guard, lambda: limiter, proxy, admin) if events else ()),
        Route("/function/{name}", function_root, methods=ALL_METHODS),
        Route("/function/{name}/{path:path}", function_path, methods=ALL_METHODS),
        *dashboard.routes(admin),  # dashboard (issue 7)
    ]
    app = Starlette(
        routes=[*fixed, *declared_routes(project)],
        exception_handlers={404: not_found, 405: method_not_allowed},
        middleware=[
            Middleware(HeaderSizeLimit, max_bytes=project.gateway.max_header_size),
            Middleware(FunctionFastPath, endpoint=function, methods=frozenset(ALL_METHODS)),
        ],
    )

    def reconfigure(new: Project) -> None:
        """Serve a new functions.yaml: routes, auth and limits; listening settings stay."""
        nonlocal guard, limiter
        guard = Guard(new, security.keys, security.secrets, security.admin_token)
        limiter = RateLimiter(new.gateway.rate_limit) if new.gateway.rate_limit else None
        proxy.max_body_size = new.gateway.max_body_size
        app.router.routes[:] = [*fixed, *declared_routes(new)]
        if events is not None:
            events.reconfigure()

    app.state.reconfigure = reconfigure
    # for gateway.protocol: plain calls reach the endpoint without the middleware
    app.state.function_app = FunctionFastPath(app, function, frozenset(ALL_METHODS))
    return app


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
