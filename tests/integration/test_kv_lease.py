"""The key-value lease and the shared depth board against a real nats-server."""

from __future__ import annotations

import asyncio
import time

import nats

from runtime.cluster.depth import DepthBoard
from runtime.cluster.lease import KvLease
from tests.nats_server import NatsServer

TTL = 1.0


def test_one_holder_at_a_time_and_takeover_after_the_ttl(nats_server: NatsServer) -> None:
    async def main() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            one = await KvLease.open(js, "demo", "gw-1", ttl=TTL)
            two = await KvLease.open(js, "demo", "gw-2", ttl=TTL)
            assert await two.holder("scaler") is None
            assert await one.acquire_or_renew("scaler")
            assert not await two.acquire_or_renew("scaler")
            for _ in range(4):  # renewing keeps it past the TTL
                await asyncio.sleep(TTL / 3)
                assert await one.acquire_or_renew("scaler")
                assert not await two.acquire_or_renew("scaler")
            assert await two.holder("scaler") == "gw-1"
            # gw-1 stops renewing (as if killed): the lease lapses within the TTL
            began = time.monotonic()
            while not await two.acquire_or_renew("scaler"):
                assert time.monotonic() - began < TTL + 1.0
                await asyncio.sleep(0.05)
            assert await one.holder("scaler") == "gw-2"
            assert not await one.acquire_or_renew("scaler")  # its old revision is stale
            await two.release("scaler")
            assert await one.acquire_or_renew("scaler")  # at once, no TTL to wait
            assert await one.acquire_or_renew("other") and not await two.acquire_or_renew("other")
        finally:
            await nc.close()

    asyncio.run(main())


def test_depth_board_sums_fresh_reports(nats_server: NatsServer) -> None:
    async def main() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            one = await DepthBoard.open(js, "demo", "host-a:1")
            two = await DepthBoard.open(js, "demo", "host.b:2")
            assert await one.total(time.time()) == {}
            now = time.time()
            await one.publish({"a": 2, "b": 1}, now)
            await two.publish({"a": 3}, now - 10)  # a gateway that stopped reporting
            assert await one.total(now) == {"a": 2, "b": 1}
            await two.publish({"a": 3}, now)
            assert await two.total(now) == {"a": 5, "b": 1}
        finally:
            await nc.close()

    asyncio.run(main())
