import os
import socket

CALLS = []


def handle(event, context):
    """Keeps what it was sent: a hostile function must never see any of it."""
    CALLS.append(event.body.decode())
    secret = "/run/secrets/victim-key"
    value = open(secret).read() if os.path.exists(secret) else None
    return {"host": socket.gethostname(), "calls": CALLS, "secret": value}
