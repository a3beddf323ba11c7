"""The function listener's calls: `/function/{name}[/{path}]` and the declared `http:` triggers.

`/function/...` is OpenFaaS style: the function sees the remainder of the path,
and functions with `public: false` are not found there. An `http:` trigger is one
route per path; each method goes to the function that declared it, others get
405 with `Allow`. A trigger with `webhook_secret` is checked by its signature,
before any replica is woken. Every call passes the function's `auth` and the
per-caller rate limit first.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.access import AccessControl
from gateway.auth import Denied
from gateway.errors import calling, error_response, response_for
from gateway.proxy import Proxy, new_call_id
from gateway.ratelimit import check_rate
from gateway.routing import (
    ALL_METHODS,
    Endpoint,
    Triggers,
    client_host,
    raw_path,
    triggers_by_path,
)
from runtime.errors import FaasError, FunctionNotFound
from runtime.platform import Platform
from runtime.spec import Project
from runtime.spec import Route as Trigger


class Calls:
    def __init__(self, platform: Platform, proxy: Proxy, access: AccessControl) -> None:
        self.platform = platform
        self.proxy = proxy
        self.access = access

    def routes(self, project: Project) -> list[BaseRoute]:
        by_path = triggers_by_path(project)
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
        below = raw_path(request).removeprefix("/function/").partition("/")[2]
        return await self.function(request, request.path_params["name"], "/" + below)

    def declared(self, triggers: Triggers) -> Endpoint:
        allow = ", ".join(sorted(triggers))

        async def dispatch(request: Request) -> Response:
            target = triggers.get(request.method)
            if target is None:
                message = f"{request.method} is not allowed here; allowed: {allow}"
                return error_response(405, message, new_call_id(), {"allow": allow})
            return await self.invoke(request, target[0], raw_path(request), target[1])

        return dispatch

    async def invoke(
        self, request: Request, name: str, path: str, trigger: Trigger | None
    ) -> Response:
        began = time.perf_counter()
        access = self.access.current
        try:
            function = self.platform.function(name)
            if trigger is None and not function.public:
                raise FunctionNotFound(f"no function named {name!r}")
            calling.set(name)
            client = client_host(request)
            body = None
            if trigger is not None and trigger.webhook_secret:
                body = await self.proxy.read_body(request)
                caller = access.guard.verify_webhook(
                    trigger.webhook_secret, body, request.headers, name, client
                )
            else:
                caller = await access.guard.authenticate(request.headers, client, function)
            check_rate(access.limiter, caller)
        except Denied as denied:
            self.proxy.observe(name, denied.status, began)
            return error_response(denied.status, denied.message, new_call_id(), denied.headers)
        except FaasError as exc:
            return response_for(exc, new_call_id())
        return await self.proxy.forward(request, name, path, body=body, strip=caller.consumed)
