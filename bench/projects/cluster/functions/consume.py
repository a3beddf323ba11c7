"""Report each event to the benchmark's recorder (tests/cluster/recorder.py)."""

import json
import urllib.request
from os import environ


def handle(event, context):
    body = json.dumps({"phase": "finish", "key": event.event_id, "attempt": event.attempt})
    request = urllib.request.Request(environ["SINK_URL"], data=body.encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    return None
