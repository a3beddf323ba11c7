def handle(event, context):
    return {"function": context.function_name, "headers": dict(event.headers),
            "body": event.body.decode("utf-8", "replace")}
