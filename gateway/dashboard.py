"""The dashboard: a static page at /ui and the admin endpoints it reads, on the admin
listener (its own origin: no function's answer is served from it, see `Sandboxed`).

- `GET /ui` and `/ui/{asset}`: the page (HTML, CSS, JS under gateway/static/),
  served without the admin token: it holds no data. The page takes the token
  from the URL fragment (`/ui#token=...`, which browsers never send) or a
  prompt, keeps it in the tab's sessionStorage, and sends it as
  `Authorization: Bearer` to the admin API, like the CLI.
- `GET /system/stats` (admin): per function, the request rate, error rate and
  p50/p95 latency over the last minute, and gauge series over the last ten
  minutes (see gateway/stats.py).
- `/system/functions/{name}/invoke[/{path}]` (admin; GET, POST, PUT, PATCH,
  DELETE): the request, body and query string included, goes to the function
  through the normal proxy, without the function's own auth, rate limit or
  `public` check: the admin token is enough. The token is not forwarded, and the
  answer comes back sandboxed (`Sandboxed`): it is data for the page, never a document
  that could run in the dashboard's origin.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import calling, error_response
from gateway.stats import FunctionStats, Gauges

if TYPE_CHECKING:
    from gateway.proxy import Proxy
    from runtime.platform import Platform

log = logging.getLogger("faas.gateway")

Endpoint = Callable[[Request], Awaitable[Response]]

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    # Only this origin's own files; no inline code, no frames, no form posts elsewhere.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
INVOKE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
SANDBOX_HEADERS = [
    (b"content-security-policy", b"sandbox; default-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-disposition", b"attachment"),
]
"""On a function's answer served on the admin origin: opened as a page, it would run in
an opaque origin of its own, with nothing to load, so it can never reach the token."""
REPLACED_HEADERS = frozenset({b"set-cookie", *(name for name, _ in SANDBOX_HEADERS)})
ADMIN_CREDENTIALS = frozenset({b"authorization", b"x-api-key"})
"""Never forwarded by the dashboard's invoke: the admin token stays in the gateway."""
SAMPLE_TICK = 0.5


def dashboard_url(base_url: str, token: str | None) -> str:
    """The page's address on a gateway; with `token`, carried in the fragment."""
    base = re.sub(r"://(0\.0\.0\.0|\[::\]|::|):", "://127.0.0.1:", base_url.rstrip("/"), count=1)
    return f"{base}/ui" + (f"#token={quote(token, safe='')}" if token else "")


class Dashboard:
    def __init__(self, platform: Platform, proxy: Proxy, stats: FunctionStats) -> None:
        self.platform = platform
        self.proxy = proxy
        self.stats = stats
        self._sampler: asyncio.Task[None] | None = None
        self._files = _load_static()

    def routes(self, admin: Callable[[Endpoint], Endpoint]) -> list[BaseRoute]:
        return [
            Route("/ui", self.page, methods=["GET"]),
            Route("/ui/{asset}", self.asset, methods=["GET"]),
            Route("/system/stats", admin(self.read_stats), methods=["GET"]),
            Route("/system/functions/{name}/invoke", admin(self.invoke), methods=INVOKE_METHODS),
            Route(
                "/system/functions/{name}/invoke/{path:path}",
                admin(self.invoke),
                methods=INVOKE_METHODS,
            ),
        ]

    def start_sampling(self) -> None:
        """Sample the gauges every `interval` in the background, when an event loop runs.

        Without one (an app built outside the server), /system/stats samples when read.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._sampler is None or self._sampler.done():
            self._sampler = loop.create_task(self._sample_forever())

    async def _sample_forever(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # never let a bad sample end the series
                log.exception("dashboard sample failed")
            await asyncio.sleep(SAMPLE_TICK)

    def sample(self, *, force: bool = False) -> bool:
        gauges = {
            name: Gauges(pool.ready_count, pool.starting, pool.depth(), pool.in_flight)
            for name, pool in self.platform.pools.items()
        }
        return self.stats.sample(gauges, force=force)

    async def page(self, request: Request) -> Response:
        if "dashboard.html" not in self._files:
            return error_response(503, f"the dashboard's files are missing from {STATIC}")
        return Response(
            self._files["dashboard.html"],
            media_type="text/html; charset=utf-8",
            headers=PAGE_HEADERS,
        )

    async def asset(self, request: Request) -> Response:
        name = request.path_params["asset"]
        media_type = ASSETS.get(name)
        if media_type is None or name not in self._files:
            return error_response(404, f"no route for {request.url.path}")
        return Response(self._files[name], media_type=media_type, headers=PAGE_HEADERS)

    async def read_stats(self, request: Request) -> Response:
        self.sample()
        return JSONResponse(self.stats.snapshot(list(self.platform.pools)))

    async def invoke(self, request: Request) -> Response:
        name = request.path_params["name"]
        raw = request.scope.get("raw_path")
        full = raw.decode("latin-1") if raw else request.url.path
        below = full.partition(f"/system/functions/{name}/invoke")[2]
        calling.set(name)
        answer = await self.proxy.forward(
            request, name, below if below.startswith("/") else "/", strip=ADMIN_CREDENTIALS
        )
        return Sandboxed(answer)


class Sandboxed(Response):
    """A function's answer with its headers made safe for the admin origin (`SANDBOX_HEADERS`
    in place of the function's own, and no cookies)."""

    def __init__(self, answer: Response) -> None:
        self.answer = answer
        self.status_code = answer.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sandboxed(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() not in REPLACED_HEADERS
                ]
                message = {**message, "headers": [*kept, *SANDBOX_HEADERS]}
            await send(message)

        await self.answer(scope, receive, sandboxed)


def _load_static() -> dict[str, bytes]:
    """The page's files, read once; a broken install loses the dashboard, not the gateway."""
    files: dict[str, bytes] = {}
    for name in ("dashboard.html", *ASSETS):
        try:
            files[name] = (STATIC / name).read_bytes()
        except OSError as exc:
            log.warning(
                "dashboard file missing", extra={"file": str(STATIC / name), "error": str(exc)}
            )
    return files
