"""No requirements: the ten functions of the simultaneous cold starts share this handler."""


def handle(event, context):
    return "plain\n"
