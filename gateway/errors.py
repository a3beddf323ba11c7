"""Platform errors as HTTP answers, in one table.

Callers get a JSON body with a message they can act on and the call id;
tracebacks stay in the gateway's log.
"""

from __future__ import annotations

import json
import logging

from starlette.responses import Response

from runtime import errors

log = logging.getLogger("faas.gateway")

STATUS_BY_ERROR: dict[type[errors.FaasError], int] = {
    errors.FunctionNotFound: 404,
    errors.PayloadTooLarge: 413,
    errors.QueueFull: 429,
    errors.ReplicaUnreachable: 502,
    errors.FunctionUnavailable: 503,
    errors.ReplicaStartError: 503,
    errors.EngineUnavailable: 503,
    errors.InvocationTimeout: 504,
}


def error_response(
    status: int, message: str, call_id: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, object] = {"error": message}
    if call_id:
        body["call_id"] = call_id
    all_headers = dict(headers or {})
    if call_id:
        all_headers["x-call-id"] = call_id
    return Response(
        json.dumps(body), status_code=status, headers=all_headers, media_type="application/json"
    )


def response_for(exc: BaseException, call_id: str | None) -> Response:
    if isinstance(exc, errors.FaasError):
        status = next(
            (code for kind, code in STATUS_BY_ERROR.items() if isinstance(exc, kind)), 500
        )
        headers = {}
        if isinstance(exc, errors.QueueFull):
            headers["retry-after"] = str(max(1, round(exc.retry_after)))
        if status >= 500:
            log.warning(
                "call failed", extra={"call_id": call_id, "status": status, "error": str(exc)}
            )
        return error_response(status, str(exc), call_id, headers)
    log.exception("internal error", extra={"call_id": call_id})
    return error_response(500, "internal error in the gateway", call_id)
