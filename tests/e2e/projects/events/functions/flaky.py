"""Fails the first two attempts of every event, then succeeds; records every attempt."""

ATTEMPTS = []


def handle(event, context):
    if event.topic is None:
        return ATTEMPTS
    ATTEMPTS.append({"event_id": event.event_id, "attempt": event.attempt})
    if event.attempt < 3:
        return {"statusCode": 503, "body": "not yet"}
    return "done"
