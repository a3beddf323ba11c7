"""How queue records are laid out in JetStream messages and key-value entries (pure).

A stored message keeps its body as the NATS payload, untouched, and
everything else as one JSON header (`Faas-Message`); a dead letter adds a
`Faas-Dead` header. A call record is a KV value: its JSON, a newline (JSON
never contains a raw one), then the result body as raw bytes, so a result
costs no base64. Query strings travel as latin-1 text, which maps bytes
one to one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from runtime.events.queue import (
    CallbackState,
    CallRecord,
    DeadLetter,
    Kind,
    Message,
    Pairs,
    Result,
    State,
)

MESSAGE_HEADER = "Faas-Message"
DEAD_HEADER = "Faas-Dead"
DEDUP_HEADER = "Nats-Msg-Id"


def message_headers(message: Message, dedup_id: str) -> dict[str, str]:
    fields = {
        "id": message.id,
        "kind": message.kind.value,
        "created_at": message.created_at,
        "method": message.method,
        "path": message.path,
        "query": message.query.decode("latin-1"),
        "headers": [list(pair) for pair in message.headers],
        "topic": message.topic,
        "callback_url": message.callback_url,
    }
    return {MESSAGE_HEADER: json.dumps(fields), DEDUP_HEADER: dedup_id}


def message_from(headers: dict[str, str] | None, body: bytes | None) -> Message:
    if not headers or MESSAGE_HEADER not in headers:
        raise ValueError("not a queued message: the Faas-Message header is missing")
    fields = json.loads(headers[MESSAGE_HEADER])
    return Message(
        id=str(fields["id"]),
        kind=Kind(fields["kind"]),
        created_at=float(fields["created_at"]),
        method=str(fields["method"]),
        path=str(fields["path"]),
        query=str(fields["query"]).encode("latin-1"),
        headers=_pairs(fields["headers"]),
        body=body or b"",
        topic=fields["topic"],
        callback_url=fields["callback_url"],
    )


@dataclass(frozen=True, slots=True)
class DeadInfo:
    function: str
    attempts: int
    status: int | None
    error: str | None
    failed_at: float | None


def dead_headers(message: Message, info: DeadInfo, dedup_id: str) -> dict[str, str]:
    return {**message_headers(message, dedup_id), DEAD_HEADER: json.dumps(asdict(info))}


def dead_letter_from(seq: int, headers: dict[str, str] | None) -> DeadLetter:
    if not headers or DEAD_HEADER not in headers:
        raise ValueError("not a dead letter: the Faas-Dead header is missing")
    message = message_from(headers, b"")
    info = DeadInfo(**json.loads(headers[DEAD_HEADER]))
    return DeadLetter(
        id=seq,
        message_id=message.id,
        kind=message.kind,
        function=info.function,
        topic=message.topic,
        attempts=info.attempts,
        status=info.status,
        error=info.error,
        failed_at=info.failed_at,
    )


@dataclass(frozen=True, slots=True)
class CallEntry:
    """An async call's record in the `calls` bucket; `seq` finds its message for `cancel`."""

    function: str
    state: State
    attempts: int
    created_at: float
    due_at: float
    seq: int
    started_at: float | None = None
    finished_at: float | None = None
    result: Result | None = None
    callback_url: str | None = None
    callback_state: CallbackState | None = None
    callback_attempts: int = 0
    callback_status: int | None = None
    callback_error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in (State.DONE, State.DEAD, State.CANCELLED)

    def record(self, call_id: str) -> CallRecord:
        return CallRecord(
            id=call_id,
            function=self.function,
            state=self.state,
            attempts=self.attempts,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            due_at=self.due_at,
            result=self.result if self.state in (State.DONE, State.DEAD) else None,
            callback_url=self.callback_url,
            callback_state=self.callback_state,
            callback_attempts=self.callback_attempts,
            callback_status=self.callback_status,
            callback_error=self.callback_error,
        )


def new_call(message: Message, function: str, seq: int) -> CallEntry:
    return CallEntry(
        function=function,
        state=State.PENDING,
        attempts=0,
        created_at=message.created_at,
        due_at=message.created_at,
        seq=seq,
        callback_url=message.callback_url,
    )


def encode_call(entry: CallEntry, max_size: int) -> bytes:
    """The KV value; a result body that would not fit in `max_size` bytes is cut, and says so."""
    fields: dict[str, Any] = {
        name: getattr(entry, name) for name in CallEntry.__dataclass_fields__ if name != "result"
    }
    fields["result"], body = None, b""
    if entry.result is not None:
        result = entry.result
        fields["result"] = {
            "status": result.status,
            "headers": [list(pair) for pair in result.headers],
            "error": result.error,
            "duration": result.duration,
        }
        body = result.body
    room = max_size - len(json.dumps(fields)) - 512  # the cut note, the KV subject
    if len(body) > room:
        body = body[: max(room, 0)]
        note = f"result body cut to {len(body)} bytes to fit the NATS max_payload"
        error = fields["result"]["error"]
        fields["result"]["error"] = f"{error}; {note}" if error else note
    head = json.dumps(fields).encode()
    return head + b"\n" + body


def decode_call(value: bytes) -> CallEntry:
    head, _, body = value.partition(b"\n")
    fields = json.loads(head)
    raw = fields.pop("result")
    result = None
    if raw is not None:
        result = Result(
            int(raw["status"]), _pairs(raw["headers"]), body, raw["error"], float(raw["duration"])
        )
    callback_state = fields.pop("callback_state")
    return CallEntry(
        **{**fields, "state": State(fields["state"])},
        result=result,
        callback_state=CallbackState(callback_state) if callback_state else None,
    )


def _pairs(raw: Any) -> Pairs:
    return tuple((str(name), str(value)) for name, value in raw)
