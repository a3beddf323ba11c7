"""Every gateway's in-memory queue depth, shared so the scaling leader sees all of it.

A request waiting for a replica waits in the memory of the gateway it
reached. Each gateway puts its depths (per function, with its clock's
time) under its own key every tick; the lease holder (lease.py) sums the
reports that are fresh. A report older than `stale_after` is from a
gateway that stopped (or cannot reach NATS) and counts for nothing; the
bucket's TTL removes it from the server as well. The durable backlog is
not part of this: every gateway reads it from the shared streams, so it
is counted once, by the holder, not summed.

Freshness compares the writer's clock with the reader's: gateways need
clocks in step to well within `stale_after` (NTP gives milliseconds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from runtime.events.jetstream import names

DEFAULT_STALE_AFTER = 3.0
_KEY_UNSAFE = re.compile(r"[^-_=a-zA-Z0-9]")


@dataclass(frozen=True, slots=True)
class DepthReport:
    at: float
    depths: Mapping[str, int] = field(default_factory=dict)


def encode(report: DepthReport) -> bytes:
    return json.dumps({"at": report.at, "depths": dict(report.depths)}).encode()


def decode(value: bytes) -> DepthReport:
    raw = json.loads(value)
    return DepthReport(float(raw["at"]), {str(k): int(v) for k, v in raw["depths"].items()})


def total_depth(
    reports: Iterable[DepthReport], now: float, stale_after: float = DEFAULT_STALE_AFTER
) -> dict[str, int]:
    """Per function, the sum over reports no older than `stale_after` at `now`.

    A report from slightly in the future (a clock ahead of ours) is fresh.
    """
    total: dict[str, int] = {}
    for report in reports:
        if now - report.at > stale_after:
            continue
        for function, depth in report.depths.items():
            total[function] = total.get(function, 0) + max(depth, 0)
    return total


def gateway_key(gateway_id: str) -> str:
    """A KV key from any gateway id (host names have dots, ids may have colons)."""
    return _KEY_UNSAFE.sub("_", gateway_id) or "_"


class DepthBoard:
    def __init__(self, kv: KeyValue, gateway_id: str) -> None:
        self._kv = kv
        self._key = gateway_key(gateway_id)

    @classmethod
    async def open(
        cls, js: JetStreamContext, project: str, gateway_id: str, ttl: float = 10.0
    ) -> DepthBoard:
        bucket = names.bucket(project, "depth")
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=bucket, history=1, ttl=ttl, storage=StorageType.MEMORY
            )
        return cls(kv, gateway_id)

    async def publish(self, depths: Mapping[str, int], now: float) -> None:
        await self._kv.put(self._key, encode(DepthReport(now, depths)))

    async def reports(self) -> list[DepthReport]:
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return []
        found = []
        for key in keys:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                continue  # expired between the listing and the read
            if entry.value:
                found.append(decode(entry.value))
        return found

    async def total(self, now: float, stale_after: float = DEFAULT_STALE_AFTER) -> dict[str, int]:
        return total_depth(await self.reports(), now, stale_after)
