"""The pure parts of the JetStream queue and of gateway coordination."""

from __future__ import annotations

import asyncio
import json
from typing import cast

from nats.aio.msg import Msg

from runtime.cluster.depth import DepthReport, decode, encode, gateway_key, total_depth
from runtime.events.jetstream.codec import (
    CallEntry,
    DeadInfo,
    dead_headers,
    dead_letter_from,
    decode_call,
    encode_call,
    message_from,
    message_headers,
    new_call,
)
from runtime.events.jetstream.held import Held, Holdings
from runtime.events.jetstream.track import Track
from runtime.events.queue import CallbackState, Kind, Message, Result, State

MESSAGE = Message(
    "c1",
    Kind.CALL,
    1.5,
    method="PUT",
    path="/x",
    query=b"a=\xff&b=1",
    headers=(("content-type", "text/plain"), ("x-y", "é")),
    body=b"\x00\nbody",
    callback_url="https://hooks.test/x",
)


def test_messages_round_trip_through_headers() -> None:
    headers = message_headers(MESSAGE, "dedup")
    assert headers["Nats-Msg-Id"] == "dedup"
    assert all(value.isascii() and "\n" not in value for value in headers.values())
    assert message_from(headers, MESSAGE.body) == MESSAGE


def test_dead_letters_carry_their_failure() -> None:
    headers = dead_headers(MESSAGE, DeadInfo("a", 3, 500, "boom", 9.0), "a.7")
    letter = dead_letter_from(12, headers)
    assert (letter.id, letter.message_id, letter.kind, letter.function) == (
        12,
        "c1",
        Kind.CALL,
        "a",
    )
    assert (letter.attempts, letter.status, letter.error, letter.failed_at) == (3, 500, "boom", 9.0)


def test_call_records_round_trip_with_raw_bodies() -> None:
    entry = new_call(MESSAGE, "a", 4)
    assert decode_call(encode_call(entry, 1 << 20)) == entry
    done = CallEntry(
        **{
            **{name: getattr(entry, name) for name in CallEntry.__dataclass_fields__},
            "state": State.DONE,
            "attempts": 2,
            "result": Result(200, (("content-type", "x"),), b"\n\x00\xff", None, 0.25),
            "callback_state": CallbackState.PENDING,
        }
    )
    assert decode_call(encode_call(done, 1 << 20)) == done
    record = done.record("c1")
    assert (record.id, record.state, record.result, record.callback_url) == (
        "c1",
        State.DONE,
        done.result,
        "https://hooks.test/x",
    )


def test_a_result_too_big_for_the_server_is_cut_and_says_so() -> None:
    big = Result(200, (), b"x" * 5000, None, 0.0)
    entry = new_call(MESSAGE, "a", 4)
    entry = CallEntry(
        **{**{n: getattr(entry, n) for n in CallEntry.__dataclass_fields__}, "result": big}
    )
    value = encode_call(entry, 2000)
    assert len(value) <= 2000
    result = decode_call(value).result
    assert result is not None and result.body == b"x" * len(result.body)
    assert result.error is not None and "max_payload" in result.error
    assert json.loads(value.partition(b"\n")[0])["function"] == "a"


def test_a_refresh_in_flight_keeps_what_happened_meanwhile() -> None:
    track = Track()
    track.change(undelivered=3)  # enqueued before the request was sent
    track.begin_refresh()
    track.change(undelivered=-1, unacked=1)  # leased while it was in flight
    assert (track.waiting(), track.in_flight()) == (2, 1)
    track.end_refresh(undelivered=3, unacked=0)  # the answer includes the enqueues only
    assert (track.waiting(), track.in_flight(), track.stored()) == (2, 1, 3)
    track.begin_refresh()
    track.change(undelivered=1)
    track.abort_refresh()  # a failed read loses nothing
    assert track.waiting() == 3


def test_due_times_and_quiet_after_a_short_fetch() -> None:
    track = Track()
    assert track.next_due() is None
    track.change(undelivered=1)
    assert track.next_due() == 0.0  # due now
    track.change(undelivered=-1, unacked=1)
    track.held = 1
    track.fetched(asked=5, got=1, now=100.0, poll=1.0, skew=1.0)
    assert track.next_due() is None  # all of it is ours
    track.held = 0
    track.retries[7] = 103.0
    assert (track.next_due(), track.pending(102.0), track.pending(103.0)) == (103.0, 0, 1)
    track.retries[8] = 100.5  # put back here, due, but taken by another gateway meanwhile
    track.fetched(asked=5, got=0, now=102.0, poll=1.0, skew=1.0)
    assert track.retries == {7: 103.0} and track.quiet_until == 103.0
    track.retries.clear()
    assert track.next_due() == 103.0  # another gateway's lease may lapse: poll, quietly


def test_depth_sums_fresh_reports_only() -> None:
    reports = [
        DepthReport(100.0, {"a": 2, "b": 1}),
        DepthReport(97.5, {"a": 5}),  # stale at 3 s
        DepthReport(100.5, {"a": 1, "c": -1}),  # a clock slightly ahead: fresh
    ]
    assert total_depth(reports, now=100.0, stale_after=2.0) == {"a": 3, "b": 1, "c": 0}
    assert total_depth([], now=100.0) == {}
    assert decode(encode(reports[0])) == reports[0]
    assert gateway_key("host.example:8080/x") == "host_example_8080_x"


class _Msg:
    naks = 0

    async def nak(self) -> None:
        _Msg.naks += 1


def test_a_delivery_held_again_counts_once() -> None:
    tracks: dict[str, Track] = {}
    holdings = Holdings(lambda key: tracks.setdefault(key, Track()))
    msg = cast(Msg, _Msg())
    holdings.add("a", 7, Held(msg, 1, 10.0, 0))
    holdings.add("a", 7, Held(msg, 2, 20.0, 0))  # its lease ran out, redelivered here
    held = holdings.get("a", 7)
    assert tracks["a"].held == 1 and held is not None and held.attempt == 2
    holdings.drop("a", 7)
    holdings.drop("a", 7)
    assert tracks["a"].held == 0
    holdings.add("a", 8, Held(msg, 1, 10.0, 0))
    holdings.add("a", 9, Held(msg, 1, 30.0, 0))
    holdings.add("b", 1, Held(msg, 1, 30.0, 0))
    assert holdings.expire(20.0) == 1 and tracks["a"].held == 1
    asyncio.run(holdings.hand_back())
    assert (tracks["a"].held, tracks["b"].held, _Msg.naks) == (0, 0, 2)
