"""The gateway's Starlette application: which URL reaches which function.

- `/function/{name}[/{path}]`, any method: the function itself (OpenFaaS style);
  the function sees the remainder of the path.
- The `http:` triggers of functions.yaml: one route per path; each method goes
  to the function that declared it, others get 405 with `Allow`.
- `/healthz`, `/system/functions`, `/system/scale-events` for people and the CLI.
- `/metrics` in the Prometheus text format.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import error_response
from gateway.metrics import CONTENT_TYPE, Metrics
from gateway.proxy import Proxy
from runtime.platform import Platform
from runtime.spec import Project

Endpoint = Callable[[Request], Awaitable[Response]]

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(platform: Platform) -> Starlette:
    project = platform.project
    metrics = Metrics(platform)
    proxy = Proxy(platform, project.gateway.max_body_size, metrics)

    async def function_root(request: Request) -> Response:
        return await proxy.forward(request, request.path_params["name"], "/")

    async def function_path(request: Request) -> Response:
        params = request.path_params
        return await proxy.forward(request, params["name"], "/" + params["path"])

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "project": project.name})

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

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route for {request.url.path}")

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/system/functions", system_functions, methods=["GET"]),
        Route("/system/scale-events", scale_events, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/function/{name}", function_root, methods=ALL_METHODS),
        Route("/function/{name}/{path:path}", function_path, methods=ALL_METHODS),
        *declared_routes(project, proxy),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found})


def declared_routes(project: Project, proxy: Proxy) -> list[BaseRoute]:
    """One route per declared path, dispatching each method to its function."""
    by_path: dict[str, dict[str, str]] = defaultdict(dict)
    for function in project.functions.values():
        for trigger in function.routes:
            for method in trigger.methods:
                by_path[trigger.path][method] = function.name
    return [
        Route(path, _dispatcher(proxy, methods), methods=ALL_METHODS)
        for path, methods in by_path.items()
    ]


def _dispatcher(proxy: Proxy, methods: dict[str, str]) -> Endpoint:
    allow = ", ".join(sorted(methods))

    async def dispatch(request: Request) -> Response:
        function = methods.get(request.method)
        if function is None:
            return error_response(
                405,
                f"{request.method} is not allowed here; allowed: {allow}",
                headers={"allow": allow},
            )
        return await proxy.forward(request, function, request.url.path)

    return dispatch
