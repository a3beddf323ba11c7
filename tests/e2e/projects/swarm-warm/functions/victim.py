import socket

CALLS = []


def handle(event, context):
    """Keeps what it was sent: a hostile function must never see any of it."""
    CALLS.append(event.body.decode())
    return {"host": socket.gethostname(), "calls": CALLS}
