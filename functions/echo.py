"""Echoes a JSON request back, with what the function saw of the call."""

from typing import Any

from faas.handler import Context, Event


def handle(event: Event, context: Context) -> dict[str, Any]:
    try:
        payload = event.json() if event.body else None
    except ValueError:
        return {"statusCode": 400, "body": {"error": "the body is not valid JSON"}}
    return {
        "method": event.method,
        "path": event.path,
        "query": event.query,
        "json": payload,
        "call_id": context.call_id,
    }
