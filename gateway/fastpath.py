"""`/function/{name}[/{path}]` straight to its endpoint, past the router.

It is the route nearly every call takes; matching it against every declared
route's pattern and passing it through Starlette's exception middleware
showed in the gateway's profile. Anything else, and any method the route does
not take, goes on to the full application.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/function/"
FunctionEndpoint = Callable[[Request, str, str], Awaitable[Response]]
"""(request, function name, the path below it as the caller encoded it)."""


def function_target(scope: Scope) -> tuple[str, str] | None:
    """(function name, the path below it as the caller encoded it) of a `/function/` call."""
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    name = path[len(PREFIX) :].partition("/")[0]
    if not name:
        return None
    raw = scope.get("raw_path")
    encoded = raw.decode("latin-1") if raw else path
    return name, "/" + encoded[len(PREFIX) :].partition("/")[2]


class FunctionFastPath:
    def __init__(self, app: ASGIApp, endpoint: FunctionEndpoint, methods: frozenset[str]) -> None:
        self.app = app
        self.endpoint = endpoint
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods:
            target = function_target(scope)
            if target is not None:
                response = await self.endpoint(Request(scope, receive, send), *target)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
