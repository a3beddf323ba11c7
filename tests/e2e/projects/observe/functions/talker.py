def handle(event, context):
    marker = event.query.get("say", "nothing")
    print(f"printed {marker}")
    context.logger.warning(f"logged {marker}")
    return {"call_id": context.call_id, "traceparent": event.headers.get("traceparent")}
