"""A body larger than one socket read: the gateway streams it in several parts."""


def handle(event, context):
    size = int(event.query.get("size", "1000000"))
    return bytes(i % 251 for i in range(size))
