"""Several gateways on one NATS server: one decides replica counts, all report demand.

Each gateway publishes, twice a second, the calls waiting in its own pools
and in flight there. The one holding the `scaler` lease adds the others'
reports to its own live figures. The durable backlog is not published: every
gateway reads it from the same streams, so it is counted once already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from nats.js import JetStreamContext

from runtime.cluster.depth import DepthBoard
from runtime.cluster.lease import KvLease
from runtime.errors import FaasError
from runtime.scaling.coordination import Demand

log = logging.getLogger("faas.coordination")

LEASE = "scaler"
LEASE_TTL = 5.0
INTERVAL = 0.5


class SharedCoordination:
    def __init__(
        self,
        lease: KvLease,
        board: DepthBoard,
        local_demand: Callable[[], Mapping[str, int]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lease = lease
        self._board = board
        self._local_demand = local_demand
        self._clock = clock
        self._leads = False
        self._others: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        project: str,
        gateway_id: str,
        local_demand: Callable[[], Mapping[str, int]],
    ) -> SharedCoordination:
        lease = await KvLease.open(js, project, gateway_id, ttl=LEASE_TTL)
        board = await DepthBoard.open(js, project, gateway_id, ttl=LEASE_TTL * 2)
        return cls(lease, board, local_demand)

    def leads(self) -> bool:
        return self._leads

    def demand(self, function: str, own: Demand) -> Demand:
        return own + Demand(queued=self._others.get(function, 0))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except (TimeoutError, FaasError, OSError) as exc:
                self._set_leads(False)
                log.warning("coordination failed", extra={"error": str(exc)})
            except Exception as exc:  # nats-py raises its own error types for a lost server
                self._set_leads(False)
                log.warning("coordination failed", extra={"error": repr(exc)})
            await asyncio.sleep(INTERVAL)

    async def step(self) -> None:
        """Renew or take the lease, publish this gateway's demand, read the others'."""
        self._set_leads(await self._lease.acquire_or_renew(LEASE))
        now = self._clock()
        own = dict(self._local_demand())
        await self._board.publish(own, now)
        if self._leads:
            total = await self._board.total(now)
            self._others = {f: max(0, n - own.get(f, 0)) for f, n in total.items()}

    def _set_leads(self, leads: bool) -> None:
        if leads != self._leads:
            log.info("scaling " + ("led by this gateway" if leads else "left to another gateway"))
        self._leads = leads

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._lease.release(LEASE)
