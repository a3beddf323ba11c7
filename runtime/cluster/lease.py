"""A lease on a JetStream key-value bucket: one holder per name, lapsing when it stops renewing.

The lease is the key's existence. `create` succeeds only where no live
entry exists; renewing is `update(key, last=revision)`, a compare-and-set
that fails once anyone else has written the key. The bucket's TTL
(`max_age`) removes an entry not renewed for `ttl` seconds, on the
server's clock, so a holder killed with SIGKILL loses the lease within
`ttl` without any two hosts comparing clocks.

What it is used for: the replica count of a project's functions is
decided by one gateway at a time, the one holding the lease named
`scaler`. One lease for the whole project, not one per function: a
decision is cheap, one holder sees every function through the same depth
reports (depth.py), and it costs one KV write per tick instead of one per
function, with one failover case instead of many.

A holder must call `acquire_or_renew` more often than `ttl` (every
`ttl / 3` leaves room for a slow round trip), and treat a False, or an
error, as "not the holder" until the next call. A holder that stalls
longer than `ttl` may act on a stale True for at most one tick after it
resumes; scaling decisions tolerate that (the next holder's decision
replaces it).
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from runtime.events.jetstream import names

DEFAULT_TTL = 5.0
SCALER = "scaler"


class KvLease:
    def __init__(self, kv: KeyValue, holder: str) -> None:
        self.holder_id = holder
        self._kv = kv
        self._revisions: dict[str, int] = {}

    @classmethod
    async def open(
        cls, js: JetStreamContext, project: str, holder: str, ttl: float = DEFAULT_TTL
    ) -> KvLease:
        """The project's `leases` bucket (made on first use, with `ttl` as its max age)."""
        bucket = names.bucket(project, "leases")
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=bucket, history=1, ttl=ttl, storage=StorageType.FILE
            )
        return cls(kv, holder)

    async def acquire_or_renew(self, name: str) -> bool:
        """True while this holder owns `name`: renew it if held, else take it if free."""
        value = self.holder_id.encode()
        revision = self._revisions.pop(name, None)
        if revision is not None:
            try:
                self._revisions[name] = await self._kv.update(name, value, last=revision)
                return True
            except KeyWrongLastSequenceError:
                pass  # lapsed, perhaps taken: try to take it afresh
        try:
            self._revisions[name] = await self._kv.create(name, value)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def release(self, name: str) -> None:
        """Give `name` up now, if still held, so another holder need not wait for the TTL."""
        revision = self._revisions.pop(name, None)
        if revision is None:
            return
        with contextlib.suppress(KeyWrongLastSequenceError):  # lapsed, perhaps taken: not ours
            await self._kv.delete(name, last=revision)

    async def holder(self, name: str) -> str | None:
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None
