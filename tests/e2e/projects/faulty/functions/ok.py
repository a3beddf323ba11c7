def handle(event, context):
    return {"ok": True, "bytes": len(event.body), "headers": dict(event.headers)}
