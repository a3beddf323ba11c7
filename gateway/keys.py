"""API keys: created once, shown once, stored only as hashes.

A key reads `fk_<id>_<secret>`. The id finds the record; the secret is checked
against its SHA-256 in constant time (`hmac.compare_digest`). A key is scoped
to every function (`*`) or to named ones. The store is one owner-only JSON
file, `.faas/keys.json`, re-read when it changes, so keys made by the CLI
while the gateway runs take effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.errors import FaasError

PREFIX = "fk_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    functions: tuple[str, ...]
    """("*",) for every function."""
    created: float
    secret_sha256: str

    def allows(self, function: str) -> bool:
        return "*" in self.functions or function in self.functions

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "functions": list(self.functions),
            "created": self.created,
        }


class KeyStore:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "keys.json"
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._seen: float | None = None

    def _refresh(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            self._keys, self._seen = {}, None
            return
        if mtime == self._seen:
            return
        records = json.loads(self._path.read_text() or "[]")
        self._keys = {
            r["id"]: ApiKey(
                r["id"], r["name"], tuple(r["functions"]), r["created"], r["secret_sha256"]
            )
            for r in records
        }
        self._seen = mtime

    def _save(self) -> None:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self._path.with_name(".keys.json.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump([asdict(k) for k in self._keys.values()], handle, indent=1)
        temporary.replace(self._path)

    def create(self, name: str, functions: tuple[str, ...] = ("*",)) -> tuple[ApiKey, str]:
        """A new key and its one-time plain text."""
        with self._lock:
            self._refresh()
            key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(24)
            key = ApiKey(
                key_id,
                name or key_id,
                functions or ("*",),
                round(time.time(), 3),
                hashlib.sha256(secret.encode()).hexdigest(),
            )
            self._keys[key_id] = key
            self._save()
        return key, f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._lock:
            self._refresh()
            return sorted(self._keys.values(), key=lambda k: k.created)

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            self._refresh()
            key = self._keys.pop(key_id, None)
            if key is None:
                raise FaasError(f"no key with id {key_id!r}")
            self._save()
            return key

    def verify(self, presented: str) -> ApiKey | None:
        """The key a caller presented, or None when it is unknown, revoked or wrong."""
        if not presented.startswith(PREFIX):
            return None
        key_id, _, secret = presented[len(PREFIX) :].partition("_")
        with self._lock:
            self._refresh()
            key = self._keys.get(key_id)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        expected = key.secret_sha256 if key else "0" * 64
        return key if hmac.compare_digest(digest, expected) and key else None
