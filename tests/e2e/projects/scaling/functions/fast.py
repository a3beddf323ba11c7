def handle(event, context):
    return "fast\n"
