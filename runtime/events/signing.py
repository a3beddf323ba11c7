"""Callback signatures, per the Standard Webhooks specification (https://www.standardwebhooks.com/).

Every callback carries

    webhook-id         <call id>:<function>:<status>, e.g. 5b1e...:resize:200
    webhook-timestamp  unix seconds when this attempt was sent
    webhook-signature  v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">

so any Standard Webhooks library (`standardwebhooks` on PyPI:
`Webhook(secret).verify(body, headers)`) checks it, and rejects a timestamp
more than five minutes from the receiver's clock.

Why the function and status are in the id. The spec signs only the id, the
timestamp and the body; whatever else a receiver acts on must be inside
one of them, or anyone holding one genuine callback could relabel it (a
500 replayed as a 200, one function's output presented as another's, a
new call id that slips past the receiver's dedupe). A JSON envelope around
the result would do it too, but would turn every function's output into
base64 or nested JSON; the id keeps the body the function's own bytes and
Content-Type. The id is stable across retries of the callback (a call's
result is stored once), which is what the spec asks of it and what a
receiver dedupes on. None of its parts can hold a `.`, the separator of
the signed content: call ids are hex, function names `[a-z][a-z0-9-]*`,
statuses digits.

Keys: a secret's value in the spec's `whsec_<base64>` form is decoded; any
other value is used as the key's bytes as they are (what receivers pass as
`Webhook(value_bytes)`). `new_secret` makes 32 random bytes in whsec form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
VERSION = "v1"
KEY_BYTES = 32


class BadSecret(ValueError):
    """A `whsec_` value whose base64 does not decode, or an empty key."""


def message_id(call_id: str, function: str, status: int) -> str:
    return f"{call_id}:{function}:{status}"


def parse_message_id(value: str) -> tuple[str, str, int]:
    """(call id, function, status) from a `webhook-id`; ValueError when it is not one of ours."""
    call_id, function, status = value.split(":")
    if not (call_id and function and status.isdigit()):
        raise ValueError(f"not a callback id: {value!r}")
    return call_id, function, int(status)


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    if "." in msg_id:
        raise ValueError("a webhook-id must not contain '.'")
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def headers(key: bytes, msg_id: str, now: float, body: bytes) -> dict[str, str]:
    """The three signature headers for one attempt sent at `now`."""
    timestamp = int(now)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(key, msg_id, timestamp, body),
    }


def key_from_secret(value: bytes) -> bytes:
    """The HMAC key a secret's value stands for (see the module docstring)."""
    text = value.strip()
    if text.startswith(SECRET_PREFIX.encode()):
        try:
            key = base64.b64decode(text[len(SECRET_PREFIX) :] + b"==")
        except (binascii.Error, ValueError) as exc:
            raise BadSecret("a whsec_ secret must be base64 after its prefix") from exc
    else:
        key = value
    if not key:
        raise BadSecret("a callback secret must not be empty")
    return key


def secret_text(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def new_secret() -> str:
    return secret_text(secrets.token_bytes(KEY_BYTES))
