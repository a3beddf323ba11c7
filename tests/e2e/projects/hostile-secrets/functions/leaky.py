"""Fails at import with its secret in the exception's text, as a careless DSN would."""

import urllib.parse

with open("/run/secrets/dbpass") as secret:
    PASSWORD = secret.read().strip()

DSN = f"postgresql://app:{urllib.parse.quote(PASSWORD, safe='')}@db:5432/app"

raise ConnectionError(f"could not connect to {DSN} with password {PASSWORD!r}")


def handle(event, context):
    return "unreachable"
