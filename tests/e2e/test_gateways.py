"""Two gateways sharing one NATS server and one project's Swarm services.

Both serve calls; one sets replica counts; events published to one are
delivered at least once, none lost, when that one is killed with SIGKILL.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import (
    Gateway,
    left_behind,
    start_gateway,
    unique_project,
    wait_for,
)
from tests.nats_server import NatsServer, nats_server

__all__ = ["nats_server"]

pytestmark = pytest.mark.docker

EVENTS = 40
HANDLER = """\
import time


def handle(event, context):
    time.sleep(0.05)
    print(f"DELIVERED {event.json()['n']}")
    return "ok"
"""


@pytest.fixture
def pair(
    swarm: None, nats_server: NatsServer, docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    (tmp_path / "worker.py").write_text(HANDLER)
    spec = tmp_path / "functions.yaml"
    spec.write_text(
        "version: 1\n"
        f"cluster: {{backend: swarm, queue: nats, nats_url: '{nats_server.url}'}}\n"
        # the service's tasks, which both gateways follow the output of (a claimed warm
        # task is one gateway's: only its log would show the deliveries)
        "gateway: {events_auth: none, warm_tasks: 0}\n"
        "defaults: {auth: none, timeout: 2s}\n"
        "functions:\n"
        "  worker:\n"
        "    handler: worker.py\n"
        "    events: [work.*]\n"
        "    scale: {min: 0, max: 2, target_concurrency: 4, idle_timeout: 30s}\n"
    )
    project = unique_project("pair")
    first = start_gateway(spec, project, tmp_path)
    (tmp_path / "second").mkdir()
    second = start_gateway(spec, project, tmp_path / "second")
    try:
        yield first, second
    finally:
        for gateway in (first, second):
            gateway.stop()
        down = second.cli("down")
        assert down.returncode == 0, down.stderr
        assert left_behind(docker_client, project) == ([], [])


def delivered(gateway: Gateway) -> set[int]:
    return {int(n) for n in re.findall(r"DELIVERED (\d+)", gateway.log())}


def test_both_serve_one_scales_and_nothing_is_lost_when_one_is_killed(
    pair: tuple[Gateway, Gateway],
) -> None:
    first, second = pair
    for gateway in pair:
        response = httpx.post(
            f"{gateway.url}/function/worker", json={"n": -1}, timeout=60, trust_env=False
        )
        assert response.status_code == 200, response.text
    leaders = [g for g in pair if "scaling led by this gateway" in g.log()]
    assert len(leaders) == 1, [g.log()[-2000:] for g in pair]

    for n in range(EVENTS):
        published = httpx.post(
            f"{first.url}/events/work.item", json={"n": n}, timeout=30, trust_env=False
        )
        assert published.status_code == 202, published.text
    wait_for(lambda: len(delivered(second)) >= 5, 60, "the first deliveries")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    first.stopped = True
    # Deliveries the killed gateway held come back once their lease (2 x timeout + 30 s) ends.
    wait_for(
        lambda: delivered(second) >= set(range(EVENTS)),
        120,
        "every event to be delivered by the surviving gateway",
    )
    # the survivor leads once the killed gateway's lease lapses (its TTL is 5 s)
    wait_for(lambda: "scaling led by this gateway" in second.log(), 30, "the survivor to lead")
