"""The embedded durable queue: one SQLite file under `.faas/`, in WAL mode.

Every write is committed with `synchronous=FULL` (an fsync) before the
caller hears back, so a 202 means the work is on disk; the database thread
groups concurrent writes into one commit (see database.py).

One gateway owns the file at a time, through an exclusive lock on a file
beside it, which the kernel drops when the process dies, even by `kill -9`.
So when a gateway opens the queue, every lease it finds belongs to a dead
predecessor and falls due again at once; leases that run out while the
gateway runs (a delivery stuck past its time) are reclaimed by the worker.

Beside the database it keeps, in memory and in step with every commit,
when each pending delivery falls due and how many are leased, so that
`pending` and `backlog` (read on every autoscaler tick and every publish)
never touch the disk.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.errors import FaasError, QueueFull
from runtime.events.database import Database
from runtime.events.due import DueIndex
from runtime.events.queue import (
    CallbackJob,
    CallbackState,
    CallRecord,
    DeadLetter,
    Delivery,
    Kind,
    Message,
    Pairs,
    Result,
    State,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    topic TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query BLOB NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    callback_url TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    function TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    lease_until REAL,
    started_at REAL,
    finished_at REAL,
    status INTEGER,
    error TEXT,
    duration REAL,
    result_headers TEXT,
    result_body BLOB,
    callback_state TEXT,
    callback_due REAL,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_status INTEGER,
    callback_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries(function, due_at, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_leased
    ON deliveries(lease_until) WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries(message_id);
CREATE INDEX IF NOT EXISTS deliveries_finished
    ON deliveries(finished_at) WHERE state IN ('done', 'cancelled');
CREATE INDEX IF NOT EXISTS deliveries_dead
    ON deliveries(finished_at) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_callbacks
    ON deliveries(callback_due) WHERE callback_state = 'pending';
CREATE TABLE IF NOT EXISTS schedules (
    function TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_fired REAL NOT NULL,
    PRIMARY KEY (function, schedule)
);
PRAGMA user_version = 1;
"""

_MESSAGE_COLUMNS = (
    "m.id, m.kind, m.created_at, m.method, m.path, m.query, m.headers, m.body, m.topic, "
    "m.callback_url"
)
PURGE_BATCH = 2000


class QueueLocked(FaasError):
    pass


def queue_path(state_dir: Path, project: str) -> Path:
    return state_dir / f"queue-{project}.db"


class SqliteQueue:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self.on_due: Callable[[str], None] = lambda function: None
        self._db = Database(path, SCHEMA)
        self._lock_file: int | None = None
        self._due = DueIndex()
        self._callbacks = DueIndex()
        self._leased: collections.Counter[str] = collections.Counter()
        self._reserved: collections.Counter[str] = collections.Counter()

    # -- lifetime ----------------------------------------------------------------

    async def open(self, now: float) -> None:
        self._lock()
        try:
            await self._db.open()
            pending, callbacks = await self._db.run(lambda c: _recover(c, now))
        except BaseException:
            await self._db.close()
            self._unlock()
            raise
        for function, due_at in pending:
            self._due.add(function, due_at)
        for due_at in callbacks:
            self._callbacks.add("", due_at)

    async def close(self) -> None:
        await self._db.close()
        self._unlock()

    def _lock(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise QueueLocked(
                f"the queue {self.path} is in use by another process (pid {holder}); "
                "is another gateway of this project running?"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        self._lock_file = descriptor

    def _unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing drops the flock
            self._lock_file = None

    # -- counts from memory --------------------------------------------------------

    def pending(self, function: str) -> int:
        return self._due.due(function, self._clock())

    def backlog(self, function: str) -> int:
        return self._due.total(function) + self._leased[function] + self._reserved[function]

    def earliest_due(self) -> dict[str, float]:
        return self._due.earliest_by_key()

    def next_callback_due(self) -> float | None:
        return self._callbacks.earliest("")

    # -- storing -----------------------------------------------------------------------

    async def enqueue(
        self, message: Message, functions: Sequence[str], limits: Mapping[str, int]
    ) -> None:
        self._check_room(functions, limits)
        for function in functions:
            self._reserved[function] += 1
        try:
            await self._db.run(
                lambda c: _insert(c, message, functions), lambda _: self._added(message, functions)
            )
        finally:
            for function in functions:
                self._reserved[function] -= 1

    def _check_room(self, functions: Sequence[str], limits: Mapping[str, int]) -> None:
        for function in functions:
            stored, limit = self.backlog(function), limits[function]
            if stored >= limit:
                raise QueueFull(
                    f"{function} has {stored} events and async calls stored and not yet "
                    f"delivered, its limit (max_backlog); retry later",
                    retry_after=1.0,
                )

    def _added(self, message: Message, functions: Sequence[str]) -> None:
        for function in functions:
            self._due.add(function, message.created_at)
        for function in dict.fromkeys(functions):
            self.on_due(function)

    async def fire(
        self, function: str, schedule: str, scheduled_at: float, message: Message, limit: int
    ) -> bool:
        room = self.backlog(function) < limit
        functions = [function] if room else []
        self._reserved[function] += len(functions)

        def operation(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO schedules (function, schedule, last_fired) VALUES (?, ?, ?) "
                "ON CONFLICT (function, schedule) DO UPDATE SET last_fired = excluded.last_fired",
                (function, schedule, scheduled_at),
            )
            if room:
                _insert(connection, message, functions)

        try:
            await self._db.run(operation, lambda _: self._added(message, functions))
        finally:
            self._reserved[function] -= len(functions)
        return room

    async def last_fired(self, function: str, schedule: str) -> float | None:
        def operation(connection: sqlite3.Connection) -> float | None:
            row = connection.execute(
                "SELECT last_fired FROM schedules WHERE function = ? AND schedule = ?",
                (function, schedule),
            ).fetchone()
            return float(row[0]) if row else None

        return await self._db.run(operation)

    # -- delivering --------------------------------------------------------------------

    async def lease(
        self, function: str, limit: int, now: float, lease_for: float
    ) -> list[Delivery]:
        def operation(connection: sqlite3.Connection) -> list[Delivery]:
            rows = connection.execute(
                f"SELECT d.id, d.attempt, d.due_at, {_MESSAGE_COLUMNS} FROM deliveries d "
                "JOIN messages m ON m.id = d.message_id "
                "WHERE d.function = ? AND d.state = 'pending' AND d.due_at <= ? "
                "ORDER BY d.due_at, d.id LIMIT ?",
                (function, now, limit),
            ).fetchall()
            connection.executemany(
                "UPDATE deliveries SET state = 'leased', attempt = attempt + 1, "
                "lease_until = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
                [(now + lease_for, now, row[0]) for row in rows],
            )
            return [
                Delivery(row[0], function, row[1] + 1, row[2], _message(row[3:])) for row in rows
            ]

        def leased(deliveries: list[Delivery]) -> None:
            for delivery in deliveries:
                self._due.remove(function, delivery.due_at)
            self._leased[function] += len(deliveries)

        return await self._db.run(operation, leased)

    async def finish(self, delivery: Delivery, state: State, result: Result, now: float) -> bool:
        assert state in (State.DONE, State.DEAD)
        message = delivery.message
        keep = message.kind is Kind.CALL
        callback = message.callback_url is not None

        def operation(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE deliveries SET state = ?, finished_at = ?, lease_until = NULL, "
                "status = ?, error = ?, duration = ?, result_headers = ?, result_body = ?, "
                "callback_state = ?, callback_due = ?, callback_attempts = 0 "
                "WHERE id = ? AND state = 'leased' AND attempt = ?",
                (
                    state.value,
                    now,
                    result.status,
                    result.error,
                    result.duration,
                    _dump_pairs(result.headers) if keep else None,
                    result.body if keep else None,
                    CallbackState.PENDING.value if callback else None,
                    now if callback else None,
                    delivery.id,
                    delivery.attempt,
                ),
            )
            return cursor.rowcount == 1

        def finished(ok: bool) -> None:
            if ok:
                self._leased[delivery.function] -= 1
                if callback:
                    self._callbacks.add("", now)

        return await self._db.run(operation, finished)

    async def retry(self, delivery: Delivery, result: Result, due_at: float) -> bool:
        return await self._put_back(delivery, due_at, result, count_attempt=True)

    async def release(self, delivery: Delivery, due_at: float) -> bool:
        return await self._put_back(delivery, due_at, None, count_attempt=False)

    async def _put_back(
        self, delivery: Delivery, due_at: float, result: Result | None, *, count_attempt: bool
    ) -> bool:
        def operation(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE deliveries SET state = 'pending', due_at = ?, lease_until = NULL, "
                "attempt = attempt - ?, status = COALESCE(?, status), "
                "error = COALESCE(?, error) WHERE id = ? AND state = 'leased' AND attempt = ?",
                (
                    due_at,
                    0 if count_attempt else 1,
                    result.status if result else None,
                    result.error if result else None,
                    delivery.id,
                    delivery.attempt,
                ),
            )
            return cursor.rowcount == 1

        def put_back(ok: bool) -> None:
            if ok:
                self._leased[delivery.function] -= 1
                self._due.add(delivery.function, due_at)
                self.on_due(delivery.function)

        return await self._db.run(operation, put_back)

    async def reclaim_expired(self, now: float) -> int:
        def operation(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                "UPDATE deliveries SET state = 'pending', due_at = ?, lease_until = NULL "
                "WHERE state = 'leased' AND lease_until < ? RETURNING function",
                (now, now),
            ).fetchall()
            return [row[0] for row in rows]

        def reclaimed(functions: list[str]) -> None:
            for function in functions:
                self._leased[function] -= 1
                self._due.add(function, now)
            for function in set(functions):
                self.on_due(function)

        functions: list[str] = await self._db.run(operation, reclaimed)
        return len(functions)

    # -- async calls -------------------------------------------------------------------

    async def cancel(self, call_id: str, now: float) -> State | None:
        def operation(connection: sqlite3.Connection) -> tuple[State, str, float, bool] | None:
            row = connection.execute(
                "SELECT d.id, d.state, d.function, d.due_at FROM deliveries d "
                "JOIN messages m ON m.id = d.message_id WHERE m.id = ? AND m.kind = 'call'",
                (call_id,),
            ).fetchone()
            if row is None:
                return None
            if row[1] != State.PENDING.value:
                return State(row[1]), row[2], row[3], False
            connection.execute(
                "UPDATE deliveries SET state = 'cancelled', finished_at = ? WHERE id = ?",
                (now, row[0]),
            )
            return State.CANCELLED, row[2], row[3], True

        def cancelled(outcome: tuple[State, str, float, bool] | None) -> None:
            if outcome is not None and outcome[3]:
                self._due.remove(outcome[1], outcome[2])

        outcome = await self._db.run(operation, cancelled)
        return outcome[0] if outcome else None

    async def call(self, call_id: str) -> CallRecord | None:
        def operation(connection: sqlite3.Connection) -> CallRecord | None:
            row = connection.execute(
                "SELECT m.id, d.function, d.state, d.attempt, m.created_at, d.started_at, "
                "d.finished_at, d.due_at, d.status, d.result_headers, d.result_body, d.error, "
                "d.duration, m.callback_url, d.callback_state, d.callback_attempts, "
                "d.callback_status, d.callback_error FROM deliveries d "
                "JOIN messages m ON m.id = d.message_id WHERE m.id = ? AND m.kind = 'call'",
                (call_id,),
            ).fetchone()
            if row is None:
                return None
            state = State(row[2])
            result = None
            if row[8] is not None and state in (State.DONE, State.DEAD):
                result = Result(
                    row[8], _load_pairs(row[9]), row[10] or b"", row[11], row[12] or 0.0
                )
            return CallRecord(
                id=row[0],
                function=row[1],
                state=state,
                attempts=row[3],
                created_at=row[4],
                started_at=row[5],
                finished_at=row[6],
                due_at=row[7],
                result=result,
                callback_url=row[13],
                callback_state=CallbackState(row[14]) if row[14] else None,
                callback_attempts=row[15],
                callback_status=row[16],
                callback_error=row[17],
            )

        return await self._db.run(operation)

    # -- dead letters ------------------------------------------------------------------

    async def dead_letters(
        self, function: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        def operation(connection: sqlite3.Connection) -> list[DeadLetter]:
            where = "d.state = 'dead'" + (" AND d.function = ?" if function else "")
            rows = connection.execute(
                "SELECT d.id, d.message_id, m.kind, d.function, m.topic, d.attempt, d.status, "
                "d.error, d.finished_at FROM deliveries d JOIN messages m ON m.id = d.message_id "
                f"WHERE {where} ORDER BY d.finished_at, d.id LIMIT ?",
                (function, limit) if function else (limit,),
            ).fetchall()
            return [DeadLetter(row[0], row[1], Kind(row[2]), *row[3:]) for row in rows]

        return await self._db.run(operation)

    async def replay(self, delivery_id: int, now: float) -> bool:
        def operation(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "UPDATE deliveries SET state = 'pending', attempt = 0, due_at = ?, "
                "finished_at = NULL, status = NULL, error = NULL, callback_state = NULL, "
                "callback_due = NULL WHERE id = ? AND state = 'dead' RETURNING function",
                (now, delivery_id),
            ).fetchone()
            return str(row[0]) if row else None

        def replayed(function: str | None) -> None:
            if function is not None:
                self._due.add(function, now)
                self.on_due(function)

        return await self._db.run(operation, replayed) is not None

    async def drop(self, delivery_id: int) -> bool:
        def operation(connection: sqlite3.Connection) -> bool:
            row = connection.execute(
                "DELETE FROM deliveries WHERE id = ? AND state = 'dead' RETURNING message_id",
                (delivery_id,),
            ).fetchone()
            if row is None:
                return False
            connection.execute(
                "DELETE FROM messages WHERE id = ? AND NOT EXISTS "
                "(SELECT 1 FROM deliveries WHERE message_id = ?)",
                (row[0], row[0]),
            )
            return True

        return await self._db.run(operation)

    # -- callbacks ---------------------------------------------------------------------

    async def lease_callbacks(self, now: float, limit: int, lease_for: float) -> list[CallbackJob]:
        until = now + lease_for

        def operation(connection: sqlite3.Connection) -> list[tuple[CallbackJob, float]]:
            rows = connection.execute(
                "SELECT d.id, d.message_id, d.function, m.callback_url, d.callback_attempts, "
                "d.callback_due, d.status, d.result_headers, d.result_body, d.error, d.duration, "
                "d.state FROM deliveries d JOIN messages m ON m.id = d.message_id "
                "WHERE d.callback_state = 'pending' AND d.callback_due <= ? "
                "ORDER BY d.callback_due LIMIT ?",
                (now, limit),
            ).fetchall()
            connection.executemany(
                "UPDATE deliveries SET callback_due = ?, callback_attempts = callback_attempts + 1 "
                "WHERE id = ?",
                [(until, row[0]) for row in rows],
            )
            return [
                (
                    CallbackJob(
                        delivery_id=row[0],
                        call_id=row[1],
                        function=row[2],
                        url=row[3],
                        attempt=row[4] + 1,
                        lease_until=until,
                        result=Result(
                            row[6], _load_pairs(row[7]), row[8] or b"", row[9], row[10] or 0.0
                        ),
                        state=State(row[11]),
                    ),
                    row[5],
                )
                for row in rows
            ]

        def leased(jobs: list[tuple[CallbackJob, float]]) -> None:
            for _, due_at in jobs:
                self._callbacks.remove("", due_at)
                self._callbacks.add("", until)

        return [job for job, _ in await self._db.run(operation, leased)]

    async def callback_finished(
        self,
        job: CallbackJob,
        state: CallbackState | None,
        status: int | None,
        error: str | None,
        due_at: float,
    ) -> None:
        def operation(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE deliveries SET callback_state = ?, callback_due = ?, "
                "callback_status = ?, callback_error = ? WHERE id = ? "
                "AND callback_state = 'pending' AND callback_attempts = ?",
                (
                    (state or CallbackState.PENDING).value,
                    None if state else due_at,
                    status,
                    error,
                    job.delivery_id,
                    job.attempt,
                ),
            )
            return cursor.rowcount == 1

        def recorded(ok: bool) -> None:
            if ok:
                self._callbacks.remove("", job.lease_until)
                if state is None:
                    self._callbacks.add("", due_at)

        await self._db.run(operation, recorded)

    # -- housekeeping ------------------------------------------------------------------

    async def purge(self, before: float) -> int:
        def operation(connection: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in connection.execute(
                    "SELECT DISTINCT message_id FROM deliveries "
                    "WHERE state IN ('done', 'cancelled') AND finished_at < ? LIMIT ?",
                    (before, PURGE_BATCH),
                )
            ]
            removed = 0
            for message_id in ids:
                removed += connection.execute(
                    "DELETE FROM messages WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deliveries "
                    "WHERE message_id = ? AND (state NOT IN ('done', 'cancelled') "
                    "OR finished_at >= ? OR callback_state = 'pending'))",
                    (message_id, message_id, before),
                ).rowcount
            return removed

        return await self._db.run(operation)

    async def counts(self) -> dict[str, dict[str, int]]:
        def operation(connection: sqlite3.Connection) -> dict[str, dict[str, int]]:
            counted: dict[str, dict[str, int]] = {}
            for function, state, count in connection.execute(
                "SELECT function, state, COUNT(*) FROM deliveries GROUP BY function, state"
            ):
                counted.setdefault(function, {})[state] = count
            return counted

        return await self._db.run(operation)


def _recover(
    connection: sqlite3.Connection, now: float
) -> tuple[list[tuple[str, float]], list[float]]:
    """Whatever a previous owner had leased falls due again; then load the due times."""
    connection.execute(
        "UPDATE deliveries SET state = 'pending', lease_until = NULL WHERE state = 'leased'"
    )
    connection.execute(
        "UPDATE deliveries SET callback_due = ? WHERE callback_state = 'pending' "
        "AND callback_due > ?",
        (now, now),
    )
    pending = connection.execute(
        "SELECT function, due_at FROM deliveries WHERE state = 'pending' ORDER BY due_at"
    ).fetchall()
    callbacks = connection.execute(
        "SELECT callback_due FROM deliveries WHERE callback_state = 'pending'"
    ).fetchall()
    return [(row[0], row[1]) for row in pending], [row[0] for row in callbacks]


def _insert(connection: sqlite3.Connection, message: Message, functions: Sequence[str]) -> None:
    connection.execute(
        "INSERT INTO messages (id, kind, topic, method, path, query, headers, body, "
        "callback_url, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.id,
            message.kind.value,
            message.topic,
            message.method,
            message.path,
            message.query,
            _dump_pairs(message.headers),
            message.body,
            message.callback_url,
            message.created_at,
        ),
    )
    connection.executemany(
        "INSERT INTO deliveries (message_id, function, state, due_at) VALUES (?, ?, 'pending', ?)",
        [(message.id, function, message.created_at) for function in functions],
    )


def _message(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0],
        kind=Kind(row[1]),
        created_at=row[2],
        method=row[3],
        path=row[4],
        query=row[5],
        headers=_load_pairs(row[6]),
        body=row[7],
        topic=row[8],
        callback_url=row[9],
    )


def _dump_pairs(pairs: Pairs) -> str:
    return json.dumps([list(pair) for pair in pairs])


def _load_pairs(text: str | None) -> Pairs:
    if not text:
        return ()
    with contextlib.suppress(ValueError, TypeError):
        return tuple((str(name), str(value)) for name, value in json.loads(text))
    return ()
