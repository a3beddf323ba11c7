def handle(event, context):
    if event.query.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ok": True}
