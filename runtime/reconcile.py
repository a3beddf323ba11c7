"""Every container the engine made for this gateway is tracked, or it is removed.

A container belongs to exactly one owner at a time: the function it serves
(its pool's replicas, ready or draining, or its starts under way in
runtime/supply/starts.py), the warm pool (ready or being made, or being
handed to a start), or `Removals`, which stops and removes it
with retries. Each start hands a container from one owner to the next without
an `await` in between, and removes it on any failure, cancellation included.

A removal is retried until the engine confirms it, so a container that failed
while the engine was unreachable stays tracked (and a warm watchdog keeps its
place in the warm pool) until it is really gone. What can still slip through
is what no code path can know about: an engine that created a container but
whose answer was lost (a connection cut, a file descriptor limit reached
mid-response), or what an earlier gateway left. The `Reconciler` is the safety
net for those: every few seconds it lists the project's containers and removes
the ones that no owner tracks and that are older than a grace period (a
container whose creation is still on its way back is young).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from runtime.backends.base import ContainerBackend, ListedContainer

log = logging.getLogger("faas.reconcile")

REMOVE_BACKOFF = 0.25
"""Before the 2nd removal attempt; doubled each time up to REMOVE_BACKOFF_MAX: an engine
that refused one call under load usually answers the next."""
REMOVE_BACKOFF_MAX = 5.0
LOGGED_ATTEMPTS = 4
"""Failed attempts logged one by one; after them, one in LOG_EVERY (once a minute or so)."""
LOG_EVERY = 12
SWEEP_INTERVAL = 5.0
START_GRACE = 60.0
"""A container younger than this is not an orphan: its creation may still be on its way
back to the gateway (twice the 30 s a replica has to become ready)."""


def orphans(
    listed: Iterable[ListedContainer], tracked: set[str], now: float, grace: float
) -> list[ListedContainer]:
    """The listed containers that nobody tracks and that are past the start grace (or
    that the backend itself gave up on).

    A network sandbox belongs to the replica it holds the network of: it is kept
    while that replica is tracked, whatever its own id.
    """
    found = []
    for container in listed:
        if container.id in tracked or (container.owner is not None and container.owner in tracked):
            continue
        if now - container.created < grace and not container.abandoned:
            continue
        found.append(container)
    return found


class Removals:
    """Containers being stopped and removed in the background, retried until the engine
    confirms it (a missing container counts as removed).

    Tracked meanwhile, so the reconcile does not count them as lost. One per platform,
    shared by its pools; `close` gives up what is left before the engine teardown.
    """

    def __init__(self, backend: ContainerBackend) -> None:
        self._backend = backend
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def ids(self) -> set[str]:
        return set(self._tasks)

    def remove(
        self,
        replica_id: str,
        *,
        grace: float = 0.0,
        why: str = "",
        then: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        """Stop and remove a container in the background; `then` runs once it is gone
        (or the removal was given up at shutdown). A container already being removed is
        not removed twice."""
        task = self._tasks.get(replica_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._remove(replica_id, grace, why))
            self._tasks[replica_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(replica_id, None))
        if then is not None:
            task.add_done_callback(lambda _: then())
        return task

    async def _remove(self, replica_id: str, grace: float, why: str) -> None:
        for attempt in itertools.count(1):
            try:
                await self._backend.stop(replica_id, grace=grace)
            except Exception as exc:  # an engine error, or the OSError it did not wrap
                if attempt <= LOGGED_ATTEMPTS or attempt % LOG_EVERY == 0:
                    log.warning(
                        "removing a container failed; trying again",
                        extra={
                            "container": replica_id[:12],
                            "why": why,
                            "error": str(exc) or type(exc).__name__,
                            "attempt": attempt,
                        },
                    )
            else:
                if attempt > 1:
                    log.info(
                        "container removed",
                        extra={"container": replica_id[:12], "attempt": attempt},
                    )
                return
            await asyncio.sleep(min(REMOVE_BACKOFF * 2 ** (attempt - 1), REMOVE_BACKOFF_MAX))

    async def wait(self) -> None:
        """Until every removal under way is settled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Give up the removals still retrying (the engine teardown that follows removes
        everything the project has)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Reconciler:
    """Finds the containers nobody tracks and removes them (see the module docstring)."""

    def __init__(
        self,
        backend: ContainerBackend,
        tracked: Callable[[], set[str]],
        removals: Removals,
        *,
        interval: float = SWEEP_INTERVAL,
        grace: float = START_GRACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.grace = grace
        self._backend = backend
        self._tracked = tracked
        self._removals = removals
        self._clock = clock

    def _owned(self) -> set[str]:
        return self._tracked() | self._removals.ids()

    async def sweep(self) -> Sequence[ListedContainer]:
        """List the project's containers once and start removing the orphans; returns them.

        What is tracked is read before and after the listing: a container that moved
        from one owner to the next while the engine answered is tracked in one of them.
        """
        before = self._owned()
        listed = await self._backend.containers()
        found = orphans(listed, before | self._owned(), self._clock(), self.grace)
        now = self._clock()
        for container in found:
            log.warning(
                "removing a container that nothing tracks",
                extra={
                    "container": container.name,
                    "id": container.id[:12],
                    "role": container.role,
                    "running": container.running,
                    "age_s": round(now - container.created, 1),
                },
            )
            self._removals.remove(container.id, why="untracked")
        return found
