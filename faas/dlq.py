"""`faas dlq` while no gateway runs: the project's queue file, opened (and locked) directly.

With a gateway running, the CLI goes through its admin API instead, since
the gateway owns the file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from faas import state
from runtime.events.sqlite import SqliteQueue, queue_path

T = TypeVar("T")


def _with_queue(
    root: Path, project: str, work: Callable[[SqliteQueue], Awaitable[T]], nothing: T
) -> T:
    """`work` on the project's queue; `nothing` when the project never had one."""
    path = queue_path(state.state_dir(root), project)
    if not path.exists():
        return nothing

    async def run() -> T:
        queue = SqliteQueue(path)
        await queue.open(time.time())
        try:
            return await work(queue)
        finally:
            await queue.close()

    return asyncio.run(run())


def dead_letters(root: Path, project: str, function: str | None) -> list[dict[str, Any]]:
    from gateway.events import dead_view

    async def work(queue: SqliteQueue) -> list[dict[str, Any]]:
        return [dead_view(letter) for letter in await queue.dead_letters(function)]

    return _with_queue(root, project, work, [])


def replay(root: Path, project: str, ids: list[int]) -> list[int]:
    """The ids that were dead letters and are pending again."""

    async def work(queue: SqliteQueue) -> list[int]:
        return [i for i in ids if await queue.replay(i, time.time())]

    return _with_queue(root, project, work, [])


def drop(root: Path, project: str, ids: list[int]) -> list[int]:
    async def work(queue: SqliteQueue) -> list[int]:
        return [i for i in ids if await queue.drop(i)]

    return _with_queue(root, project, work, [])
