"""An async-call target: echoes the request; ?sleep=S waits, ?status=N answers N."""

import time


def handle(event, context):
    if "sleep" in event.query:
        time.sleep(float(event.query["sleep"]))
    body = {
        "method": event.method,
        "path": event.path,
        "query": event.query,
        "body": event.text(),
        "call_id": context.call_id,
        "marker": event.headers.get("x-marker"),
    }
    return body, int(event.query.get("status", "200")), {"X-Work": "yes"}
