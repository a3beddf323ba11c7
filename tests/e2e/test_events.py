"""Durable work on a real engine: topics, async calls with signed callbacks, retries, the DLQ,
cron, back-pressure, and a gateway killed with SIGKILL that loses nothing."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from runtime.events import signing
from tests.conftest import (
    Gateway,
    left_behind,
    running_gateway,
    start_gateway,
    unique_project,
    wait_for,
)

pytestmark = pytest.mark.docker

HERE = Path(__file__).parent / "projects" / "events"
SPEC = HERE / "functions.yaml"
CRASH_SPEC = HERE / "crash.yaml"


def forget_queue(project: str) -> None:
    for path in (HERE / ".faas").glob(f"queue-{project}.db*"):
        path.unlink()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every callback POSTed to it."""

    server: ThreadingHTTPServer
    calls: list[Received] = field(default_factory=list)
    status: int = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def by_call(self) -> dict[str, Received]:
        """Callbacks by the call id in their (signed) webhook-id."""
        return {signing.parse_message_id(r.headers["webhook-id"])[0]: r for r in list(self.calls)}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    recorded: list[Received] = []
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            recorded.append(Received(self.path, headers, body))
            self.send_response(state["receiver"].status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(server, recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["receiver"]
    server.shutdown()
    server.server_close()


KEYED_SECRET = signing.new_secret()
"""The `keyed` function's own callback key, given to the gateway as FAAS_SECRET_KEYED_CALLBACKS."""


@pytest.fixture(scope="module")
def events(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAAS_SECRET_KEYED_CALLBACKS", KEYED_SECRET)  # read when the gateway starts
        with running_gateway(docker_client, SPEC, "events", tmp_path_factory.mktemp("logs")) as gw:
            yield gw
    forget_queue(gw.project)


@pytest.fixture
def client(events: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=events.url, timeout=30, trust_env=False) as client:
        yield client


def recorded(client: httpx.Client, function: str) -> list[dict[str, Any]]:
    response = client.get(f"/function/{function}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def publish(client: httpx.Client, topic: str, data: Any) -> dict[str, Any]:
    response = client.post(f"/events/{topic}", json=data)
    assert response.status_code == 202, response.text
    assert response.headers["x-event-id"] == response.json()["event_id"]
    return response.json()  # type: ignore[no-any-return]


def seen(client: httpx.Client, function: str, event_id: str) -> list[dict[str, Any]]:
    return [e for e in recorded(client, function) if e["event_id"] == event_id]


# -- topics --------------------------------------------------------------------------------


def test_an_event_fans_out_to_every_subscriber(client: httpx.Client) -> None:
    answer = publish(client, "orders.created", {"order": 1})
    assert answer["subscribers"] == ["audit", "mailer", "ledger"]
    event_id = answer["event_id"]
    for function in ("audit", "mailer", "ledger"):
        (delivered,) = wait_for(lambda f=function: seen(client, f, event_id), 20, function)
        assert delivered["topic"] == "orders.created"
        assert delivered["data"] == {"order": 1}
        assert delivered["content_type"] == "application/json"
        assert delivered["attempt"] == 1
    # each subscriber's delivery is its own call
    ids = {seen(client, f, event_id)[0]["call_id"] for f in ("audit", "mailer", "ledger")}
    assert len(ids) == 3


def test_wildcard_subscriptions(client: httpx.Client) -> None:
    deep = publish(client, "orders.eu.created", {"order": 2})
    shipped = publish(client, "orders.shipped", {"order": 3})
    assert deep["subscribers"] == ["ledger"]  # orders.> only
    assert shipped["subscribers"] == ["mailer", "ledger"]  # orders.* and orders.>
    wait_for(lambda: seen(client, "ledger", deep["event_id"]), 20, "orders.> delivery")
    wait_for(lambda: seen(client, "mailer", shipped["event_id"]), 20, "orders.* delivery")
    wait_for(lambda: seen(client, "ledger", shipped["event_id"]), 20, "orders.> delivery")
    time.sleep(0.5)
    assert seen(client, "mailer", deep["event_id"]) == []
    assert seen(client, "audit", shipped["event_id"]) == []


def test_topics_without_subscribers_and_bad_topics(client: httpx.Client) -> None:
    nobody = publish(client, "nobody.listens", {"x": 1})
    assert nobody["subscribers"] == []
    for bad in ("orders..created", "orders.*", "faas.cron"):
        response = client.post(f"/events/{bad}", content=b"x")
        assert response.status_code == 400, (bad, response.text)
    assert client.get("/events/orders.created").status_code == 405


def test_publish_from_the_cli(events: Gateway, client: httpx.Client) -> None:
    result = events.cli("publish", "orders.created", '{"order": 4}')
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    assert "audit, mailer, ledger" in result.stderr
    (delivered,) = wait_for(lambda: seen(client, "audit", event_id), 20, "CLI event")
    assert delivered["data"] == {"order": 4}
    text = events.cli("publish", "orders.created", "--data", "plain words", "--json")
    assert text.returncode == 0, text.stderr
    plain_id = json.loads(text.stdout)["event_id"]
    (plain,) = wait_for(lambda: seen(client, "audit", plain_id), 20, "CLI text event")
    assert plain["data"] == "plain words"
    assert plain["content_type"].startswith("text/plain")


# -- retries and dead letters --------------------------------------------------------------


def test_failing_twice_then_succeeding_is_delivered_three_times(
    events: Gateway, client: httpx.Client
) -> None:
    event_id = publish(client, "jobs.flaky", {"n": 1})["event_id"]

    def attempts() -> list[int]:
        return [a["attempt"] for a in recorded(client, "flaky") if a["event_id"] == event_id]

    wait_for(lambda: len(attempts()) >= 3, 20, "three attempts")
    time.sleep(0.5)  # and no fourth
    assert attempts() == [1, 2, 3]
    counts = events.admin_get("/system/queue").json()["functions"]["flaky"]
    assert counts.get("pending", 0) == counts.get("leased", 0) == counts.get("dead", 0) == 0


def dead_letters(events: Gateway) -> list[dict[str, Any]]:
    result = events.cli("dlq", "ls", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["dead_letters"]  # type: ignore[no-any-return]


def test_always_failing_ends_in_the_dead_letter_list_and_replays(
    events: Gateway, client: httpx.Client
) -> None:
    event_id = publish(client, "jobs.poison", {"n": 1})["event_id"]

    def letter() -> dict[str, Any] | None:
        return next((d for d in dead_letters(events) if d["message_id"] == event_id), None)

    dead = wait_for(letter, 30, "a dead letter")
    assert (dead["function"], dead["kind"], dead["topic"]) == ("poison", "event", "jobs.poison")
    assert (dead["attempts"], dead["status"]) == (3, 500)
    assert "attempt 3 of 3" in dead["error"]
    table = events.cli("dlq", "ls")
    assert table.returncode == 0 and "poison" in table.stdout

    assert client.get("/function/poison", params={"heal": "1"}).json()["healed"] is True
    replayed = events.cli("dlq", "replay", str(dead["id"]))
    assert replayed.returncode == 0, replayed.stderr

    def tries() -> list[int]:
        state = client.get("/function/poison").json()
        return [a["attempt"] for a in state["attempts"] if a["event_id"] == event_id]

    wait_for(lambda: tries() == [1, 2, 3, 1], 20, "the replayed delivery")
    wait_for(lambda: letter() is None, 10, "the dead letter to go")
    missing = events.cli("dlq", "replay", str(dead["id"]))
    assert missing.returncode == 1 and "404" in missing.stderr


def test_a_status_not_retried_is_dead_at_once_and_can_be_dropped(
    events: Gateway, client: httpx.Client
) -> None:
    event_id = publish(client, "jobs.poison", {"doomed": True})["event_id"]

    def letter() -> dict[str, Any] | None:
        return next((d for d in dead_letters(events) if d["message_id"] == event_id), None)

    dead = wait_for(letter, 20, "a dead letter")
    assert (dead["attempts"], dead["status"]) == (1, 422)
    assert "not retried" in dead["error"]
    dropped = events.cli("dlq", "drop", str(dead["id"]))
    assert dropped.returncode == 0, dropped.stderr
    assert letter() is None


# -- cron ------------------------------------------------------------------------------------


def test_cron_fires_on_schedule(client: httpx.Client) -> None:
    def firings() -> list[dict[str, Any]]:
        return recorded(client, "tick")

    wait_for(lambda: len(firings()) >= 3, 20, "three firings")
    fired = firings()
    scheduled = [dt.datetime.fromisoformat(f["data"]["scheduled_at"]) for f in fired]
    assert all(at.second % 2 == 0 and at.microsecond == 0 for at in scheduled), fired
    assert all((b - a).total_seconds() == 2 for a, b in itertools.pairwise(scheduled)), fired
    for firing in fired:
        assert firing["topic"] == "faas.cron" and firing["attempt"] == 1
        assert firing["data"]["schedule"] == "*/2 * * * * *"
        assert firing["data"]["timezone"] == "UTC"
        fired_at = dt.datetime.fromisoformat(firing["data"]["fired_at"])
        late = fired_at - dt.datetime.fromisoformat(firing["data"]["scheduled_at"])
        assert 0 <= late.total_seconds() < 1.0, firing


# -- async calls -----------------------------------------------------------------------------


def test_async_call_posts_a_signed_callback(
    events: Gateway, client: httpx.Client, receiver: Receiver
) -> None:
    response = client.post(
        "/async-function/work/sub/path?x=1",
        content=b"payload",
        headers={"X-Callback-Url": receiver.url + "/done", "X-Marker": "m1"},
    )
    assert response.status_code == 202, response.text
    call_id = response.json()["call_id"]
    assert response.headers["x-call-id"] == call_id

    callback = wait_for(lambda: receiver.by_call().get(call_id), 20, "the callback")
    assert callback.path == "/done"
    # what a receiver does: verify the raw body and the webhook-* headers with the package
    # (which also refuses a timestamp more than 5 minutes off), then trust only the id's parts
    secret = (HERE / ".faas" / "callback-key").read_text().strip()
    assert secret.startswith("whsec_")
    Webhook(secret).verify(callback.body, callback.headers, json_parse=False)
    assert signing.parse_message_id(callback.headers["webhook-id"]) == (call_id, "work", 200)
    assert abs(int(callback.headers["webhook-timestamp"]) - time.time()) < 60
    for name, value in [
        ("webhook-id", f"{call_id}:work:500"),
        ("webhook-id", f"{'0' * 32}:work:200"),
        ("webhook-timestamp", str(int(callback.headers["webhook-timestamp"]) - 1)),
    ]:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(callback.body, {**callback.headers, name: value})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(callback.body + b"x", callback.headers)
    assert "x-faas-signature" not in callback.headers
    assert callback.headers["x-call-id"] == call_id  # informational copies, unsigned
    assert callback.headers["x-function-name"] == "work"
    assert callback.headers["x-function-status"] == "200"
    assert float(callback.headers["x-duration-seconds"]) >= 0
    assert callback.headers["content-type"] == "application/json"
    result = json.loads(callback.body)
    assert result == {
        "method": "POST",
        "path": "/sub/path",
        "query": {"x": "1"},
        "body": "payload",
        "call_id": call_id,
        "marker": "m1",
    }

    def status() -> dict[str, Any]:
        return events.admin_get(f"/system/calls/{call_id}").json()  # type: ignore[no-any-return]

    record = wait_for(lambda: status()["callback"]["status"] == "sent" and status(), 10, "sent")
    assert record["status"] == "succeeded" and record["attempts"] == 1
    assert record["result"]["status"] == 200
    assert json.loads(record["result"]["body"]) == result
    assert record["result"]["headers"]["x-work"] == "yes"
    assert record["callback"]["response_status"] == 200
    assert events.admin_get("/system/calls/nope").status_code == 404
    assert client.get(f"/system/calls/{call_id}").status_code == 404  # admin listener only
    without_token = httpx.get(f"{events.admin_url}/system/calls/{call_id}", trust_env=False)
    assert without_token.status_code == 401


def test_a_failed_call_reports_its_status_in_the_callback(
    client: httpx.Client, receiver: Receiver
) -> None:
    response = client.post(
        "/async-function/work?status=500",
        headers={"X-Callback-Url": receiver.url + "/failed"},
    )
    call_id = response.json()["call_id"]
    callback = wait_for(lambda: receiver.by_call().get(call_id), 30, "the callback")
    assert callback.headers["webhook-id"] == f"{call_id}:work:500"  # after 3 attempts
    Webhook((HERE / ".faas" / "callback-key").read_text().strip()).verify(
        callback.body, callback.headers, json_parse=False
    )


def test_a_function_with_its_own_key_signs_with_it(
    client: httpx.Client, receiver: Receiver
) -> None:
    response = client.post("/async-function/keyed", headers={"X-Callback-Url": receiver.url})
    call_id = response.json()["call_id"]
    callback = wait_for(lambda: receiver.by_call().get(call_id), 30, "the callback")
    Webhook(KEYED_SECRET).verify(callback.body, callback.headers, json_parse=False)
    assert callback.headers["webhook-id"] == f"{call_id}:keyed:200"
    with pytest.raises(WebhookVerificationError):  # not the project's key
        project_secret = (HERE / ".faas" / "callback-key").read_text().strip()
        Webhook(project_secret).verify(callback.body, callback.headers, json_parse=False)


def test_callback_targets_outside_the_allow_list_are_refused(client: httpx.Client) -> None:
    for url in ("http://192.0.2.1/cb", "http://127.0.0.1@evil.example/", "file:///etc/passwd"):
        response = client.post("/async-function/work", headers={"X-Callback-Url": url})
        assert response.status_code == 400, (url, response.text)
        assert "X-Callback-Url refused" in response.json()["error"]
    assert client.post("/async-function/nope").status_code == 404


def test_cancel_a_call_still_waiting(events: Gateway, client: httpx.Client) -> None:
    running = client.post("/async-function/narrow?sleep=2").json()["call_id"]
    waiting = client.post("/async-function/narrow").json()["call_id"]
    cancelled = client.delete(f"/async-function/{waiting}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    busy = client.delete(f"/async-function/{running}")
    assert busy.status_code == 409, busy.text
    assert client.delete("/async-function/unknown").status_code == 404

    def status(call_id: str) -> str:
        return str(events.admin_get(f"/system/calls/{call_id}").json()["status"])

    wait_for(lambda: status(running) == "succeeded", 20, "the running call")
    time.sleep(0.3)
    record = events.admin_get(f"/system/calls/{waiting}").json()
    assert (record["status"], record["attempts"], record["result"]) == ("cancelled", 0, None)


def test_a_full_backlog_answers_429(events: Gateway, client: httpx.Client) -> None:
    first = client.post("/async-function/tight?sleep=1.5")
    second = client.post("/async-function/tight")
    third = client.post("/async-function/tight")
    assert [first.status_code, second.status_code] == [202, 202]
    assert third.status_code == 429, third.text
    assert "max_backlog" in third.json()["error"]
    assert int(third.headers["retry-after"]) >= 1

    def succeeded(call_id: str) -> bool:
        return bool(events.admin_get(f"/system/calls/{call_id}").json()["status"] == "succeeded")

    wait_for(lambda: succeeded(second.json()["call_id"]), 20, "the backlog to drain")
    assert client.post("/async-function/tight").status_code == 202


# -- a gateway killed mid-delivery -----------------------------------------------------------


def test_sigkill_loses_no_accepted_call(
    docker_client: docker.DockerClient, tmp_path: Path, receiver: Receiver
) -> None:
    project = unique_project("crash")
    gateway = start_gateway(CRASH_SPEC, project, tmp_path)
    restarted: Gateway | None = None
    try:
        with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
            headers = {"X-Callback-Url": receiver.url + "/crash"}
            ids = [
                client.post("/async-function/work?sleep=0.3", headers=headers).json()["call_id"]
                for _ in range(40)
            ]
        wait_for(lambda: len(set(ids) & set(receiver.by_call())) >= 3, 30, "some callbacks")
        gateway.stop(signal.SIGKILL)
        before = len(set(ids) & set(receiver.by_call()))
        assert before < len(ids), "everything was delivered before the kill; nothing tested"
        down = gateway.cli("down")
        assert down.returncode == 0, down.stderr
        restarted = start_gateway(CRASH_SPEC, project, tmp_path)
        wait_for(lambda: set(ids) <= set(receiver.by_call()), 60, "every call after restart")
        queue = restarted.admin_get("/system/queue").json()["functions"]["work"]
        assert queue.get("pending", 0) == queue.get("leased", 0) == queue.get("dead", 0) == 0
        assert queue["done"] == len(ids)
    finally:
        for process in (gateway, restarted):
            if process is not None:
                process.stop()
        run = gateway.cli("down")
        assert run.returncode == 0, run.stderr
        forget_queue(project)
    assert left_behind(docker_client, project) == ([], [])


def test_queue_file_is_owner_only(events: Gateway) -> None:
    queue = HERE / ".faas" / f"queue-{events.project}.db"
    assert queue.stat().st_mode & 0o777 == 0o600
    assert (HERE / ".faas").stat().st_mode & 0o777 == 0o700
    assert (HERE / ".faas" / "callback-key").stat().st_mode & 0o777 == 0o600


def test_a_reloaded_functions_yaml_changes_subscriptions(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    (root / "functions").mkdir(parents=True)
    shutil.copy(HERE / "functions" / "recorder.py", root / "functions" / "recorder.py")
    spec = root / "functions.yaml"
    first = (
        "version: 1\ngateway: {events_auth: none}\ndefaults: {auth: none, memory: 64MiB}\n"
        "functions:\n"
        "  first:\n    handler: functions/recorder.py\n    events: [a.b]\n"
    )
    spec.write_text(first)
    with (
        running_gateway(docker_client, spec, "evreload", tmp_path) as gateway,
        httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client,
    ):
        assert publish(client, "a.b", {"n": 1})["subscribers"] == ["first"]
        added = first + "  second:\n    handler: functions/recorder.py\n    events: [a.*]\n"
        temporary = spec.with_name(".functions.yaml.swp")
        temporary.write_text(added)
        temporary.replace(spec)  # as editors save

        def subscribers() -> list[str]:
            return list(publish(client, "a.c", {"probe": True})["subscribers"])

        wait_for(lambda: subscribers() == ["second"], 30, "the new subscription")
        event_id = publish(client, "a.b", {"n": 2})["event_id"]
        wait_for(lambda: seen(client, "second", event_id), 30, "the new subscriber")
        wait_for(lambda: seen(client, "first", event_id), 30, "the old subscriber")
