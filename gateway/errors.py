"""Platform errors as HTTP answers, in one table.

Callers get a JSON body `{"error", "call_id"}` (the call id also in `X-Call-Id`)
with a message they can act on. Where an exception's text could carry what
callers must not see (a lost replica's container name, an engine's error, a
failed start's reason), the table gives its own message instead, naming the
function and the outcome; the exception's text goes to the gateway's log, with
the call id to find it by.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.responses import Response

from runtime import errors

log = logging.getLogger("faas.gateway")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    message: str | None
    """What the caller reads, `{function}` filled in; None: the exception's own message,
    for errors whose message the platform writes for callers (about their request, or
    kept apart from the detail, as FunctionUnavailable and AnswerRejected do)."""


ANSWERS: dict[type[errors.FaasError], Answer] = {
    errors.FunctionNotFound: Answer(404, None),
    errors.PayloadTooLarge: Answer(413, None),
    errors.QueueFull: Answer(429, None),
    errors.AnswerRejected: Answer(502, None),
    errors.ReplicaUnreachable: Answer(502, "{function}'s replica failed while answering"),
    errors.FunctionUnavailable: Answer(503, None),
    errors.ReplicaStartError: Answer(503, "{function} could not start a replica; retry later"),
    errors.EngineUnavailable: Answer(
        503, "{function} cannot run now: the container engine is unavailable"
    ),
    errors.InvocationTimeout: Answer(504, None),
}
"""Most specific first: the first entry the error is an instance of answers."""
OTHER = Answer(500, "{function} failed in the gateway")

calling: ContextVar[str | None] = ContextVar("calling", default=None)
"""The function the request in this task is for, set by the route that picked it, so
an error answer made further down (the proxy) names it."""


def error_document(message: str, call_id: str) -> bytes:
    """The JSON body of every error answer, also the ones the HTTP protocol makes itself."""
    return json.dumps({"error": message, "call_id": call_id}).encode()


def error_response(
    status: int,
    message: str,
    call_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error answer; every answer carries a call id (a new one when none is given)."""
    if not call_id:
        from gateway.proxy import new_call_id  # the proxy imports this module

        call_id = new_call_id()
    return Response(
        error_document(message, call_id),
        status_code=status,
        headers={**(headers or {}), "x-call-id": call_id},
        media_type="application/json",
    )


def answer_for(exc: BaseException) -> Answer:
    if not isinstance(exc, errors.FaasError):
        return Answer(500, "internal error in the gateway")
    return next((a for kind, a in ANSWERS.items() if isinstance(exc, kind)), OTHER)


def response_for(exc: BaseException, call_id: str | None, function: str | None = None) -> Response:
    """The caller's answer to `exc`; its detail goes to the log under the call id."""
    answer = answer_for(exc)
    function = function or calling.get()
    named = f"function {function}" if function else "the function"
    message = str(exc) if answer.message is None else answer.message.format(function=named)
    headers = {}
    if isinstance(exc, errors.QueueFull):
        headers["retry-after"] = str(max(1, round(exc.retry_after)))
    response = error_response(answer.status, message, call_id, headers)
    call_id = response.headers["x-call-id"]
    detail = {"call_id": call_id, "function": function, "status": answer.status}
    if not isinstance(exc, errors.FaasError):
        log.error("internal error", extra=detail, exc_info=exc)
    elif answer.status >= 500:
        log.warning("call failed", extra={**detail, "error": str(exc)})
    return response
