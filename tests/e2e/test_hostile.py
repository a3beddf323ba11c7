"""Function code that attacks the gateway from inside its replica (issue 13, items 1-3 and 9).

A handler runs in the same process as the watchdog, so `functions/attack.py`
rewrites its replica's answer at the socket: smuggled answers behind bodyless
statuses, malformed framing, trailing bytes, an answer over the size limit, an
endless answer to a caller that never reads. For each, the attacker's caller
gets 502 (or its own bytes, framed by the gateway), the next call on the same
keep-alive connection gets its own answer, and other functions keep working.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import Gateway, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "hostile" / "functions.yaml"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(docker_client, SPEC, "hostile", tmp_path_factory.mktemp("logs")) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        yield client


def honest_call(client: httpx.Client, tag: str) -> None:
    """A call to another function on the same connection gets its own, correct answer."""
    response = client.get("/function/echo", params={"tag": tag})
    assert response.status_code == 200, response.text
    assert "x-forged" not in response.headers
    assert response.json()["query"] == {"tag": tag}
    assert response.json()["call_id"] == response.headers["x-call-id"]


SMUGGLING = ["smuggle-204", "smuggle-304", "smuggle-100", "upgrade", "trailing"]
MALFORMED = ["length-underscore", "length-plus", "bare-lf", "no-framing"]


@pytest.mark.parametrize("attack", SMUGGLING + MALFORMED)
def test_a_forged_answer_reaches_no_other_call(client: httpx.Client, attack: str) -> None:
    for round_ in range(3):  # the replica is left with a discarded connection each time
        response = client.get("/function/attack", params={"attack": attack})
        assert "x-forged" not in response.headers
        assert b"forged" not in response.content
        if attack == "trailing" and response.status_code == 200:
            # the trailing bytes arrived after the answer was framed: the caller got the
            # function's own two bytes, and the connection to the replica was dropped
            assert response.content == b"ok"
        else:
            assert response.status_code == 502, response.text
            assert response.headers["content-type"] == "application/json"
            assert "error" in response.json()
        honest_call(client, f"{attack}-{round_}")


def test_the_attacker_answers_honestly_again_afterwards(client: httpx.Client) -> None:
    client.get("/function/attack", params={"attack": "smuggle-204"})
    response = client.get("/function/attack")
    assert response.status_code == 200
    assert response.text == "honest answer\n"


def test_an_answer_over_the_size_limit_is_502_with_a_clear_message(client: httpx.Client) -> None:
    response = client.get("/function/attack", params={"attack": "too-large"})
    assert response.status_code == 502
    assert "max_response_size" in response.json()["error"]
    honest_call(client, "after-too-large")


def gateway_rss(gateway: Gateway) -> int:
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_a_large_answer_to_a_caller_that_never_reads_holds_no_memory(
    gateway: Gateway, client: httpx.Client
) -> None:
    """Back-pressure: the gateway stops reading from the replica while the caller does not
    read; the function's timeout ends the answer, and the gateway holds little meanwhile."""
    honest_call(client, "warm-up")
    before = gateway_rss(gateway)
    sockets = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /function/attack?attack=big HTTP/1.1\r\nhost: x\r\n\r\n")
            sockets.append(sock)
        peak = before
        deadline = time.monotonic() + 7  # past the function's 5 s timeout
        while time.monotonic() < deadline:
            peak = max(peak, gateway_rss(gateway))
            honest_call(client, "during-endless")  # other functions keep answering
            time.sleep(0.2)
        assert peak - before < 50 * MiB, f"gateway grew by {(peak - before) / MiB:.0f} MiB"
        # past the timeout the gateway dropped the answer: the connection ends
        for sock in sockets:
            sock.settimeout(30)
            received = 0
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
            assert received < 60 * MiB  # cut off: not taken in time
    finally:
        for sock in sockets:
            sock.close()
    honest_call(client, "after-endless")


def test_an_endless_answer_to_a_reading_caller_stops_at_max_duration(
    gateway: Gateway, client: httpx.Client
) -> None:
    """A chunked answer is a stream: no size limit, but `max_duration` ends it, cut off
    (the caller sees it incomplete, never as whole)."""
    with client.stream("GET", "/function/attack", params={"attack": "endless"}) as response:
        assert response.status_code == 200  # the head was already on its way
        received = 0
        with pytest.raises(httpx.HTTPError):
            for chunk in response.iter_raw():
                received += len(chunk)
    assert received > 0
    wait_for(lambda: "answer cut off" in gateway.log(), 10, "the cut-off logged")
    honest_call(client, "after-reading-endless")


def slow_calls_run(gateway: Gateway) -> list[str]:
    """The call ids `slow` printed as it began them, from the gateway's log store."""
    answer = gateway.admin_get("/system/logs?function=slow&limit=1000")
    assert answer.status_code == 200, answer.text
    lines = [line["message"] for line in answer.json()["lines"]]
    return [line.split()[1] for line in lines if line.startswith("running ")]


def test_calls_on_a_killed_replica_answer_502_and_run_once(
    gateway: Gateway, docker_client: docker.DockerClient
) -> None:
    """Issue 13, item 9: a call that reached a handler is never sent to a second replica."""
    results: dict[int, httpx.Response] = {}

    def call(index: int) -> None:
        results[index] = httpx.post(f"{gateway.url}/function/slow", timeout=60, trust_env=False)

    # four kept-alive connections to the replica, as a busy function has
    warm_up = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in warm_up:
        thread.start()
    for thread in warm_up:
        thread.join(60)
    assert [r.status_code for r in results.values()] == [200] * 4
    results.clear()
    already = set(slow_calls_run(gateway))
    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(set(slow_calls_run(gateway)) - already) >= 4, 30, "4 calls running")
    for container in running_replicas(docker_client, gateway.project, "slow"):
        docker_client.api.kill(container["Id"])
    for thread in threads:
        thread.join(60)
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [502] * 4, [r.text for r in results.values()]
    call_ids = {r.headers["x-call-id"] for r in results.values()}
    for r in results.values():
        assert "faas-" not in r.text  # no container names for callers
        assert json.loads(r.text)["call_id"] == r.headers["x-call-id"]
    # a new replica takes the next call; none of the four ran a second time
    after = httpx.post(f"{gateway.url}/function/slow", timeout=60, trust_env=False)
    assert after.status_code == 200, after.text
    ran = slow_calls_run(gateway)
    for call_id in call_ids:
        assert ran.count(call_id) <= 1, f"{call_id} ran {ran.count(call_id)} times"
