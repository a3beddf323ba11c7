"""What the function saw of the call."""


def handle(event, context):
    return {
        "method": event.method,
        "path": event.path,
        "query": event.query,
        "headers": dict(event.headers),
        "body": event.body.decode("utf-8", "replace"),
        "call_id": context.call_id,
    }
