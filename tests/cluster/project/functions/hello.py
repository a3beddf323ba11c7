def handle(event, context):
    return "Hello from the cluster\n"
