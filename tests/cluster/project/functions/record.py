"""Report a start, wait, report a finish: the recorder counts what ran and where.

Each run has an id of its own, so a report sent twice (the recorder answered too
late under load) counts once, while a call run twice shows two ids.
"""

import json
import time
import urllib.request
import uuid
from os import environ

ATTEMPTS = 5


def report(phase: str, key: str, attempt: int, run: str) -> None:
    body = json.dumps({"phase": phase, "key": key, "attempt": attempt, "run": run}).encode()
    for trial in range(ATTEMPTS):
        request = urllib.request.Request(environ["SINK_URL"], data=body, method="POST")
        try:
            urllib.request.urlopen(request, timeout=10).close()
            return
        except OSError:
            if trial == ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (trial + 1))


def handle(event, context):
    data = event.json() if event.body else {}
    key = str(data.get("key", ""))
    run = uuid.uuid4().hex
    report("start", key, event.attempt, run)
    time.sleep(float(data.get("seconds", 0.5)))
    report("finish", key, event.attempt, run)
    return {"key": key}
