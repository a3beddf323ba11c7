def handle(event, context):
    return "plain\n"
