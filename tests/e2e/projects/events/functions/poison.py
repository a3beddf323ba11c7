"""Fails (500) until healed with GET ?heal=1; events with {"doomed": true} get 422 for good."""

STATE = {"healed": False, "attempts": []}


def handle(event, context):
    if event.topic is None:
        if event.query.get("heal"):
            STATE["healed"] = True
        return STATE
    data = event.data
    STATE["attempts"].append({"event_id": event.event_id, "attempt": event.attempt})
    if isinstance(data, dict) and data.get("doomed"):
        return {"statusCode": 422, "body": "cannot process this one"}
    if not STATE["healed"]:
        raise RuntimeError("poisoned")
    return "healed"
