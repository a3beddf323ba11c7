"""The admin API: what the CLI and the dashboard read and change.

- `GET /system/functions` (with the warm pools under `warm`), `GET /system/scale-events`,
  `POST /system/functions/{name}/scale`
- `GET /system/keys`, `POST /system/keys`, `DELETE /system/keys/{key_id}`
- `GET /system/logs` (`follow=1`: NDJSON that stays open), `GET /metrics`

Mounted on the admin listener only (gateway/app.py), so these paths do not exist
where functions answer; each needs the admin token as well.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.errors import error_response
from gateway.keys import KeyStore
from gateway.metrics import CONTENT_TYPE, Metrics
from gateway.routing import Guarded
from runtime.errors import FaasError, FunctionNotFound
from runtime.platform import Platform


class AdminApi:
    def __init__(self, platform: Platform, keys: KeyStore, metrics: Metrics) -> None:
        self.platform = platform
        self.keys = keys
        self.metrics = metrics

    def routes(self, admin: Guarded) -> list[BaseRoute]:
        """Every route behind `admin`, the token check."""
        return [
            Route("/system/functions", admin(self.functions), methods=["GET"]),
            Route("/system/scale-events", admin(self.scale_events), methods=["GET"]),
            Route("/system/keys", admin(self.list_keys), methods=["GET"]),
            Route("/system/keys", admin(self.create_key), methods=["POST"]),
            Route("/system/keys/{key_id}", admin(self.revoke_key), methods=["DELETE"]),
            Route("/system/functions/{name}/scale", admin(self.set_scale), methods=["POST"]),
            Route("/system/logs", admin(self.logs), methods=["GET"]),
            Route("/metrics", admin(self.prometheus), methods=["GET"]),
        ]

    async def functions(self, request: Request) -> Response:
        project = self.platform.project
        answer: dict[str, Any] = {"project": project.name, "functions": self.platform.describe()}
        warm = self.platform.supply.warm_status()
        if warm is not None:
            answer["warm"] = warm.to_json()
        return JSONResponse(answer)

    async def scale_events(self, request: Request) -> Response:
        events = [
            {
                "at": e.at,
                "function": e.function,
                "from": e.before,
                "to": e.after,
                "reason": e.reason,
            }
            for e in self.platform.autoscaler.events
        ]
        return JSONResponse({"events": events})

    async def list_keys(self, request: Request) -> Response:
        return JSONResponse({"keys": [key.public() for key in self.keys.list()]})

    async def create_key(self, request: Request) -> Response:
        try:
            payload: dict[str, Any] = await request.json()
        except ValueError:
            return error_response(400, "expected a JSON body")
        functions = tuple(payload.get("functions") or ("*",))
        unknown = [f for f in functions if f != "*" and f not in self.platform.pools]
        if unknown:
            return error_response(400, f"unknown functions: {', '.join(unknown)}")
        key, secret = self.keys.create(str(payload.get("name") or ""), functions)
        return JSONResponse({**key.public(), "key": secret}, status_code=201)

    async def revoke_key(self, request: Request) -> Response:
        try:
            key = self.keys.revoke(request.path_params["key_id"])
        except FaasError as exc:
            return error_response(404, str(exc))
        return JSONResponse(key.public())

    async def set_scale(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            payload = await request.json()
            pool = self.platform.pool(name)
            minimum = int(payload.get("min", pool.spec.scale.min))
            maximum = int(payload.get("max", max(pool.spec.scale.max, minimum)))
            scale = self.platform.set_scale(name, minimum, maximum)
        except (ValueError, TypeError, AttributeError):
            return error_response(400, 'expected a JSON body like {"min": 1, "max": 4}')
        except FunctionNotFound as exc:
            return error_response(404, str(exc))
        except FaasError as exc:
            return error_response(400, str(exc))
        return JSONResponse({"function": name, "min": scale.min, "max": scale.max})

    async def logs(self, request: Request) -> Response:
        """Recent lines as JSON, or with `follow=1` a stream of NDJSON lines that stays open."""
        function = request.query_params.get("function") or None
        if function is not None and function not in self.platform.pools:
            return error_response(404, f"no function named {function!r}")
        try:
            since = float(request.query_params.get("since", "0")) or None
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            return error_response(400, "since and limit must be numbers")
        hub = self.platform.logs
        recent = hub.recent(function, since, limit)
        if request.query_params.get("follow") not in ("1", "true"):
            return JSONResponse({"lines": [line.to_json() for line in recent]})

        async def stream() -> AsyncIterator[bytes]:
            for line in recent:
                yield json.dumps(line.to_json()).encode() + b"\n"
            async for line in hub.follow(function):
                yield json.dumps(line.to_json()).encode() + b"\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)
