def handle(event, context):
    return "marked\n"
