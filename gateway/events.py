"""Routes for durable work: publishing events, async calls, and their admin API.

- `POST /events/{topic}`: store the body as an event for every subscriber,
  answer 202 `{"event_id", "topic", "subscribers"}`. Who may publish:
  `gateway.events_auth`, or the admin token on the admin listener.
- `POST /async-function/{name}[/{path}]`: the function's own auth; store
  the call, answer 202 `{"call_id", ...}` (also in `X-Call-Id`). With
  `X-Callback-Url` (checked against `gateway.callback_allow`) the result is
  POSTed there when done.
- `DELETE /async-function/{call_id}`: cancel a call still waiting (the
  function's auth again); 409 once it runs or ran.
- Admin: `GET /system/calls/{id}`, `GET /system/dlq`, `POST
  /system/dlq/{id}/replay`, `DELETE /system/dlq/{id}`, `GET /system/queue`.

Storing happens before the 202, so an accepted event or call survives a
crash; a subscriber over its `max_backlog` makes the whole publish 429
(with `Retry-After`), so fan-out stays all or nothing.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import headers as header_rules
from gateway.auth import Denied, Guard
from gateway.errors import error_response, response_for
from gateway.proxy import Proxy, new_call_id
from gateway.ratelimit import RateLimiter, check_rate
from gateway.routing import Guarded, client_host, raw_path
from runtime.errors import FaasError, FunctionNotFound
from runtime.events.queue import CallRecord, DeadLetter, State
from runtime.events.service import EventService
from runtime.spec.topics import topic_problem

CALLBACK_HEADER = b"x-callback-url"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def event_routes(
    events: EventService,
    guard: Callable[[], Guard],
    limiter: Callable[[], RateLimiter | None],
    proxy: Proxy,
    admin: Guarded,
) -> list[BaseRoute]:
    """`guard` and `limiter` are read per request: a reloaded functions.yaml replaces them."""
    platform = events.platform

    async def publish(request: Request) -> Response:
        topic = request.path_params["topic"]
        problem = topic_problem(topic)
        if problem:
            return error_response(400, problem, new_call_id())
        subscribers = events.subscribers(topic)
        try:
            caller = await guard().publisher(
                request.headers, client_host(request), topic, subscribers
            )
            check_rate(limiter(), caller)
            body = await proxy.read_body(request)
            content_type = request.headers.get("content-type", DEFAULT_CONTENT_TYPE)
            event_id = await events.publish(topic, body, content_type, subscribers)
        except Denied as denied:
            return error_response(denied.status, denied.message, new_call_id(), denied.headers)
        except FaasError as exc:
            return response_for(exc, new_call_id())
        return JSONResponse(
            {"event_id": event_id, "topic": topic, "subscribers": subscribers},
            status_code=202,
            headers={"x-event-id": event_id, "x-call-id": event_id},
        )

    async def submit(request: Request) -> Response:
        name = request.path_params["name"]
        below = raw_path(request).removeprefix("/async-function/").partition("/")[2]
        try:
            function = platform.function(name)
            if not function.public:
                raise FunctionNotFound(f"no function named {name!r}")
            caller = await guard().authenticate(request.headers, client_host(request), function)
            check_rate(limiter(), caller)
            callback = request.headers.get("x-callback-url")
            if callback is not None:
                problem = events.callback_problem(callback)
                if problem:
                    return error_response(400, f"X-Callback-Url refused: {problem}", new_call_id())
            body = await proxy.read_body(request)
            forwarded = [
                (key.decode("latin-1"), value.decode("latin-1"))
                for key, value in header_rules.inbound(request.scope["headers"])
                if key not in caller.consumed and key != CALLBACK_HEADER
            ]
            call_id = await events.submit(
                name,
                method=request.method,
                path="/" + below,
                query=request.scope.get("query_string", b""),
                headers=tuple(forwarded),
                body=body,
                callback_url=callback,
            )
        except Denied as denied:
            return error_response(denied.status, denied.message, new_call_id(), denied.headers)
        except FaasError as exc:
            return response_for(exc, new_call_id())
        return JSONResponse(
            {"call_id": call_id, "function": name, "status": "queued"},
            status_code=202,
            headers={"x-call-id": call_id},
        )

    async def cancel(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        record = await events.call(call_id)
        if record is None:
            return error_response(404, f"no async call {call_id!r} (or it has expired)")
        try:
            function = platform.function(record.function)
            await guard().authenticate(request.headers, client_host(request), function)
        except Denied as denied:
            return error_response(denied.status, denied.message, call_id, denied.headers)
        except FaasError as exc:
            return response_for(exc, call_id)
        state = await events.cancel(call_id)
        if state is State.CANCELLED:
            return JSONResponse({"call_id": call_id, "status": "cancelled"})
        status = _call_status(record if state is None else _with_state(record, state))
        return error_response(
            409, f"call {call_id} is {status}: only a call still waiting can be cancelled", call_id
        )

    async def get_call(request: Request) -> Response:
        call_id = request.path_params["call_id"]
        record = await events.call(call_id)
        if record is None:
            return error_response(404, f"no async call {call_id!r} (or it has expired)")
        return JSONResponse(call_view(record))

    async def list_dead(request: Request) -> Response:
        function = request.query_params.get("function") or None
        letters = await events.dead_letters(function)
        return JSONResponse({"dead_letters": [dead_view(letter) for letter in letters]})

    async def replay(request: Request) -> Response:
        delivery_id = _int(request.path_params["delivery_id"])
        if delivery_id is None or not await events.replay(delivery_id):
            return error_response(404, f"no dead letter {request.path_params['delivery_id']}")
        return JSONResponse({"id": delivery_id, "status": "pending"})

    async def drop(request: Request) -> Response:
        delivery_id = _int(request.path_params["delivery_id"])
        if delivery_id is None or not await events.drop(delivery_id):
            return error_response(404, f"no dead letter {request.path_params['delivery_id']}")
        return JSONResponse({"id": delivery_id, "status": "dropped"})

    async def queue_counts(request: Request) -> Response:
        counts = await events.counts()
        return JSONResponse(
            {
                "functions": {
                    name: {"due": events.queue.pending(name), **counts.get(name, {})}
                    for name in sorted({*platform.pools, *counts})
                }
            }
        )

    return [
        Route("/events/{topic}", publish, methods=["POST"]),
        Route("/async-function/{name}", submit, methods=["POST"]),
        Route("/async-function/{name}/{path:path}", submit, methods=["POST"]),
        Route("/async-function/{call_id}", cancel, methods=["DELETE"]),
        Route("/system/calls/{call_id}", admin(get_call), methods=["GET"]),
        Route("/system/dlq", admin(list_dead), methods=["GET"]),
        Route("/system/dlq/{delivery_id}/replay", admin(replay), methods=["POST"]),
        Route("/system/dlq/{delivery_id}", admin(drop), methods=["DELETE"]),
        Route("/system/queue", admin(queue_counts), methods=["GET"]),
    ]


def call_view(record: CallRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "call_id": record.id,
        "function": record.function,
        "status": _call_status(record),
        "attempts": record.attempts,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "result": None,
        "callback": None,
    }
    if record.state is State.PENDING and record.attempts:
        view["next_attempt_at"] = record.due_at
    result = record.result
    if result is not None:
        view["result"] = {
            "status": result.status,
            "headers": dict(result.headers),
            "error": result.error,
            "duration_seconds": round(result.duration, 6),
            **_body_view(result.body),
        }
    if record.callback_url is not None:
        view["callback"] = {
            "url": record.callback_url,
            "status": record.callback_state.value if record.callback_state else None,
            "attempts": record.callback_attempts,
            "response_status": record.callback_status,
            "error": record.callback_error,
        }
    return view


def dead_view(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "message_id": letter.message_id,
        "kind": letter.kind.value,
        "function": letter.function,
        "topic": letter.topic,
        "attempts": letter.attempts,
        "status": letter.status,
        "error": letter.error,
        "failed_at": letter.failed_at,
    }


_STATUS_NAMES = {
    State.LEASED: "running",
    State.DONE: "succeeded",
    State.DEAD: "failed",
    State.CANCELLED: "cancelled",
}


def _call_status(record: CallRecord) -> str:
    if record.state is State.PENDING:
        return "retrying" if record.attempts else "queued"
    return _STATUS_NAMES[record.state]


def _with_state(record: CallRecord, state: State) -> CallRecord:
    return dataclasses.replace(record, state=state)


def _body_view(body: bytes) -> dict[str, str]:
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode()}


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
