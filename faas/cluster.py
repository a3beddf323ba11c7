"""What a gateway shares with others when functions.yaml says `cluster.queue: nats`.

The durable queue moves to JetStream, and with a service backend (Swarm) the
gateways agree on who sets replica counts. Opened before the platform deploys,
so a second gateway never decides counts while it starts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from runtime.cluster.gateways import SharedCoordination
from runtime.events.jetstream.store import JetStreamQueue
from runtime.events.queue import WorkQueue
from runtime.spec import Project


@dataclass
class Shared:
    queue: WorkQueue | None = None
    """None: the embedded SQLite queue (EventService's default)."""
    coordination: SharedCoordination | None = None

    async def close(self) -> None:
        if self.coordination is not None:
            await self.coordination.close()


def gateway_id(port: int) -> str:
    return f"{socket.gethostname()}:{port}:{os.getpid()}"


async def open_shared(
    project: Project,
    port: int,
    *,
    coordinate: bool,
    local_demand: Callable[[], Mapping[str, int]],
) -> Shared:
    """The shared queue and coordination that `project.cluster` asks for, opened."""
    if project.cluster.queue != "nats":
        return Shared()
    identity = gateway_id(port)
    queue = JetStreamQueue(
        project.cluster.nats_url,
        project.name,
        retention=project.gateway.result_retention,
        name=f"faas-gateway {identity}",
    )
    await queue.open(0.0)
    shared = Shared(queue=queue)
    if coordinate:
        shared.coordination = await SharedCoordination.open(
            queue.connection.jetstream(), project.name, identity, local_demand
        )
        shared.coordination.start()
    return shared
