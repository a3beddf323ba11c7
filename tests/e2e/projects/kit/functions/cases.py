"""Every kind of return value and request detail, chosen by `?case=`."""

from __future__ import annotations

import os
import time
from typing import Any

from faas.handler import Context, Event, Response


def handle(event: Event, context: Context) -> Any:
    case = event.query.get("case", "text")
    if case == "text":
        return "hi there"
    if case == "json":
        return {"a": [1, 2], "b": None}
    if case == "list":
        return [1, "two"]
    if case == "tuple":
        return "created", 201, {"X-Kind": "tuple"}
    if case == "response":
        return Response(
            {"ok": True}, status=202, headers={"X-A": "b"}, content_type="application/x+json"
        )
    if case == "bytes":
        return b"\x00\x01\xff"
    if case == "none":
        return None
    if case == "status-code":
        return {"statusCode": 404, "body": "nope", "headers": {"X-S": "1"}}
    if case == "query":
        return {
            "first": event.query.get("tag"),
            "all": event.query_list("tag"),
            "items": event.query_items,
        }
    if case == "request":
        return {
            "method": event.method,
            "path": event.path,
            "body": event.json() if event.body else None,
            "type": event.headers.get("content-type"),
            "custom": event.headers.get("x-custom"),
            "function": context.function_name,
            "remaining_ok": 0 < context.remaining() <= 2,
        }
    if case == "secret":
        return {"token": context.secret("kit-token")}
    if case == "env":
        return {"greeting": os.environ.get("GREETING")}
    if case == "raise":
        raise ValueError("not shown to the caller")
    if case == "invalid":
        return object()
    if case == "bad-status":
        return "x", 99
    if case == "slow":
        time.sleep(3)
        return "too late"
    return Response({"error": f"unknown case {case}"}, status=400)
