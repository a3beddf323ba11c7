"""Callback signatures: `X-Faas-Signature: sha256=<hex HMAC-SHA256 of the body>`.

The key is the secret named by `gateway.callback_secret`, or else the one
`faas up` writes to `.faas/callback-key`. A receiver recomputes the HMAC of
the raw body it got with the same key and compares in constant time
(`verify` below is the reference); it should also drop a repeated
`X-Call-Id`, since callbacks are delivered at least once.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Faas-Signature"
PREFIX = "sha256="


def sign(key: bytes, body: bytes) -> str:
    return PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(key, body).encode(), signature.strip().encode())
