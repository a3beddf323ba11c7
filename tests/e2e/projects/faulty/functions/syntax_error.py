def handle(event, context):
    return "fine"


def broken(:
    pass
