"""Report a start, wait, report a finish: the recorder counts what ran and where."""

import json
import time
import urllib.request
from os import environ


def report(phase: str, key: str, attempt: int) -> None:
    body = json.dumps({"phase": phase, "key": key, "attempt": attempt}).encode()
    request = urllib.request.Request(environ["SINK_URL"], data=body, method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def handle(event, context):
    data = event.json() if event.body else {}
    key = str(data.get("key", ""))
    report("start", key, event.attempt)
    time.sleep(float(data.get("seconds", 0.5)))
    report("finish", key, event.attempt)
    return {"key": key}
