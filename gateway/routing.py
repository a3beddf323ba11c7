"""What the gateway's routes share: their types, the methods calls take, and request facts.

Paths are read as the caller sent them (`raw_path`): a replica gets the bytes it
was called with, not Starlette's decoded form.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from runtime.spec import Project
from runtime.spec import Route as Trigger

Endpoint = Callable[[Request], Awaitable[Response]]
Guarded = Callable[[Endpoint], Endpoint]
"""Wraps an admin endpoint in the admin token check."""

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
"""The methods a function call may use."""


def raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def client_host(request: Request) -> str:
    return request.client.host if request.client else "?"


Triggers = dict[str, tuple[str, Trigger]]
"""A declared path's methods: method -> (function name, its `http:` entry)."""


def triggers_by_path(project: Project) -> dict[str, Triggers]:
    """The `http:` triggers by path, in the order the function listener matches them."""
    by_path: dict[str, Triggers] = defaultdict(dict)
    for function in project.functions.values():
        for trigger in function.routes:
            for method in trigger.methods:
                by_path[trigger.path][method] = (function.name, trigger)
    return dict(by_path)
