"""Uses a package from PyPI (humanize), declared in sizes-requirements.txt."""

from typing import Any

import humanize

from faas.handler import Context, Event


def handle(event: Event, context: Context) -> dict[str, Any]:
    raw = event.query.get("bytes") or event.text() or "0"
    try:
        size = int(raw)
    except ValueError:
        return {"statusCode": 400, "body": f"not a number of bytes: {raw!r}\n"}
    return {
        "statusCode": 200,
        "body": humanize.naturalsize(size, binary=True) + "\n",
        "headers": {"content-type": "text/plain; charset=utf-8"},
    }
