"""A text greeting: the smallest useful function."""

from faas.handler import Context, Event


def handle(event: Event, context: Context) -> str:
    name = event.query.get("name", "world")
    return f"Hello, {name}!\n"
