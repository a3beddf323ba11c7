"""A text greeting: the smallest useful function."""


def handle(event, context):
    name = event.query.get("name", "world")
    return f"Hello, {name}!\n"
