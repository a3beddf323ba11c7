"""One SQLite connection, owned by one thread, with group commit.

Every operation is a function of the connection, queued to the thread.
The thread runs whatever has queued up meanwhile in one transaction (each
operation in a savepoint of its own, so one failure does not undo the
others) and commits once: with `synchronous=FULL` a commit costs an fsync,
and a thousand concurrent publishes then cost a handful of them instead of
a thousand. Results come back to the event loop in commit order, through
`on_commit` callbacks that run even when the awaiting task was cancelled,
so in-memory state kept beside the database never drifts from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger("faas.queue")

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

MAX_BATCH = 512


@dataclass(slots=True)
class _Job(Generic[T]):
    operation: Operation[T]
    future: asyncio.Future[T]
    on_commit: Callable[[T], None] | None


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._opened = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="faas-queue", daemon=True)
        self._thread.start()
        await self._opened

    async def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def run(self, operation: Operation[T], on_commit: Callable[[T], None] | None = None) -> T:
        """Run `operation` in the next transaction; `on_commit` sees its result in the loop."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("the queue database is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(operation, future, on_commit))
        return await future

    # -- the database thread ------------------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None and self._opened is not None
        try:
            connection = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._loop.call_soon_threadsafe(_settle_open, self._opened, exc)
            return
        self._loop.call_soon_threadsafe(_settle_open, self._opened, None)
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit(connection, batch)
                if stop:
                    return
        finally:
            connection.close()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # owner-only from the start: SQLite gives its -wal and -shm files the same mode
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.executescript(self._schema)
        return connection

    def _commit(self, connection: sqlite3.Connection, batch: list[_Job[Any]]) -> None:
        outcomes: list[tuple[_Job[Any], Any, BaseException | None]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for job in batch:
                connection.execute("SAVEPOINT job")
                try:
                    result = job.operation(connection)
                except Exception as exc:
                    connection.execute("ROLLBACK TO job")
                    connection.execute("RELEASE job")
                    outcomes.append((job, None, exc))
                else:
                    connection.execute("RELEASE job")
                    outcomes.append((job, result, None))
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("queue transaction failed", extra={"error": str(exc)})
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            outcomes = [(job, None, exc) for job in batch]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle_all, outcomes)


def _settle_open(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _settle_all(outcomes: list[tuple[_Job[Any], Any, BaseException | None]]) -> None:
    for job, result, error in outcomes:
        if error is None and job.on_commit is not None:
            try:
                job.on_commit(result)
            except Exception:
                log.exception("queue bookkeeping failed")
        if job.future.done():
            continue
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
