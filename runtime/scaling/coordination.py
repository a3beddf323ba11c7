"""Who decides replica counts, and on what demand, when several gateways share functions.

With one gateway, it decides on its own queues. With several (sharing a NATS
server), one holds a lease and decides for all, on the demand every gateway
reports; the others only route to the replicas the engine runs. Two gateways
deciding at once would undo each other's scale-downs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Demand:
    queued: int = 0
    in_flight: int = 0

    def __add__(self, other: Demand) -> Demand:
        return Demand(self.queued + other.queued, self.in_flight + other.in_flight)


class Coordination(Protocol):
    def leads(self) -> bool:
        """Whether this gateway decides replica counts now (read on every tick)."""

    def demand(self, function: str, own: Demand) -> Demand:
        """Demand on `function` across gateways, given this gateway's own."""


class Alone:
    """A gateway with no peers: it always decides, on its own demand."""

    def leads(self) -> bool:
        return True

    def demand(self, function: str, own: Demand) -> Demand:
        return own


class Follower:
    """A gateway whose engine sets replica counts itself (Kubernetes with KEDA)."""

    def leads(self) -> bool:
        return False

    def demand(self, function: str, own: Demand) -> Demand:
        return own
