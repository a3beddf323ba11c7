"""What the platform reports as it runs, and the list of everyone listening.

Pools report demand (a call started waiting), cold starts (a replica became
ready) and lost replicas; the replica supply reports replicas whose process
runs (before they are ready, so their output is followed from the first
line); the autoscaler reports its scale events. Everything is reported to one
`Observers` list per platform, which every pool shares, so an observer
registered once (metrics, the autoscaler's wake-up, log following) sees every
function, including the ones a functions.yaml reload adds later.

An observer overrides the methods it needs; the others do nothing. One that
raises is logged and skipped: its failure is never the replica's or the call's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from runtime.backends.base import Replica

if TYPE_CHECKING:
    from runtime.scaling.autoscaler import ScaleEvent

log = logging.getLogger("faas.platform")


class PoolObserver:
    """Override what you listen to; every method defaults to nothing."""

    def demand(self, function: str) -> None:
        """Work started waiting for `function` (a call in its queue, or due async work)."""

    def replica_started(self, replica: Replica) -> None:
        """A replica's process runs; it is not ready yet."""

    def cold_start(self, function: str, seconds: float, phases: Mapping[str, float]) -> None:
        """A replica became ready `seconds` after its start was decided; `phases` says where
        the time went (empty when the engine started it)."""

    def replica_lost(self, replica: Replica, why: str) -> None:
        """A replica exited while it was in service."""

    def scaled(self, event: ScaleEvent) -> None:
        """The autoscaler changed a function's replica count."""


class Observers(PoolObserver):
    """The platform's observers, each told everything in the order they were added."""

    def __init__(self) -> None:
        self._observers: list[PoolObserver] = []

    def add(self, observer: PoolObserver) -> None:
        self._observers.append(observer)

    def remove(self, observer: PoolObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def demand(self, function: str) -> None:
        for observer in self._observers:
            try:
                observer.demand(function)
            except Exception as exc:
                _failed("demand", exc, function=function)

    def replica_started(self, replica: Replica) -> None:
        for observer in self._observers:
            try:
                observer.replica_started(replica)
            except Exception as exc:
                _failed("replica_started", exc, function=replica.function, replica=replica.name)

    def cold_start(self, function: str, seconds: float, phases: Mapping[str, float]) -> None:
        for observer in self._observers:
            try:
                observer.cold_start(function, seconds, phases)
            except Exception as exc:
                _failed("cold_start", exc, function=function)

    def replica_lost(self, replica: Replica, why: str) -> None:
        for observer in self._observers:
            try:
                observer.replica_lost(replica, why)
            except Exception as exc:
                _failed("replica_lost", exc, function=replica.function, replica=replica.name)

    def scaled(self, event: ScaleEvent) -> None:
        for observer in self._observers:
            try:
                observer.scaled(event)
            except Exception as exc:
                _failed("scaled", exc, function=event.function)


def _failed(event: str, exc: Exception, **where: str) -> None:
    log.warning(
        "an observer failed",
        extra={"event": event, "error": str(exc) or type(exc).__name__, **where},
    )
