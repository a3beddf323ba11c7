"""Records every event it is given; a plain HTTP call returns what it recorded."""

SEEN = []


def handle(event, context):
    if event.topic is None:
        return SEEN
    SEEN.append(
        {
            "topic": event.topic,
            "event_id": event.event_id,
            "attempt": event.attempt,
            "data": event.data if not isinstance(event.data, bytes) else event.data.decode(),
            "content_type": event.headers.get("content-type"),
            "call_id": context.call_id,
        }
    )
    return "ok"
