"""An honest function: the answer names the call it answers."""


def handle(event, context):
    return {"call_id": context.call_id, "query": event.query}
