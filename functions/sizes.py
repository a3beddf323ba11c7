"""Uses a package from PyPI (humanize), declared in sizes-requirements.txt."""

import humanize


def handle(event, context):
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
