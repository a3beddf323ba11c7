"""Scale from zero by queue depth, on a real engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import Gateway, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "scaling" / "functions.yaml"


@pytest.fixture(scope="module")
def scaling(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(docker_client, SPEC, "scale", tmp_path_factory.mktemp("logs")) as gateway:
        yield gateway


def running(client: docker.DockerClient, project: str, function: str) -> list[str]:
    return [c["Id"] for c in running_replicas(client, project, function)]


async def burst(url: str, count: int, params: dict[str, str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:
        return await asyncio.gather(*(client.get(url, params=params) for _ in range(count)))


def test_min_replicas_are_running_after_up(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    assert len(running(docker_client, scaling.project, "fast")) == 1
    assert running(docker_client, scaling.project, "slow") == []


def test_burst_scales_to_max_then_back_to_zero(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    assert running(docker_client, scaling.project, "slow") == []
    first = httpx.get(f"{scaling.url}/function/slow", params={"ms": "10"}, timeout=30)
    assert first.status_code == 200
    assert len(running(docker_client, scaling.project, "slow")) == 1

    responses = asyncio.run(burst(f"{scaling.url}/function/slow", 50, {"ms": "300"}))
    assert [r.status_code for r in responses] == [200] * 50
    replicas = {r.json()["replica"] for r in responses}
    assert len(replicas) == 4, replicas
    events = scaling.admin_get("/system/scale-events").json()["events"]
    assert max(e["to"] for e in events if e["function"] == "slow") == 4

    wait_for(
        lambda: running(docker_client, scaling.project, "slow") == [],
        timeout=30,
        what="slow to scale back to zero containers",
    )
    listed = {f["name"]: f for f in scaling.admin_get("/system/functions").json()["functions"]}
    assert listed["slow"]["replicas"] == 0
    assert listed["slow"]["state"] == "idle"
    assert listed["slow"]["last_cold_start_ms"] > 0


def test_full_queue_answers_429_while_others_serve(scaling: Gateway) -> None:
    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            warm = await client.get(f"{scaling.url}/function/narrow", params={"ms": "1"})
            assert warm.status_code == 200
            calls = [
                asyncio.ensure_future(
                    client.get(f"{scaling.url}/function/narrow", params={"ms": "1500"})
                )
                for _ in range(8)
            ]
            await asyncio.sleep(0.5)
            other = await client.get(f"{scaling.url}/function/fast")
            return list(await asyncio.gather(*calls)), other

    responses, other = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    # one replica with one slot: 1 running + 2 queued succeed, the rest are turned away
    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429], statuses
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
    assert "max_queue" in rejected.json()["error"]
    assert other.status_code == 200


def test_metrics_expose_scaling_gauges(scaling: Gateway) -> None:
    text = scaling.admin_get("/metrics").text
    assert 'faas_function_replicas{function="fast",state="ready"} 1.0' in text
    assert "faas_cold_start_seconds_bucket" in text
    assert 'faas_invocations_total{function="slow",status="200"}' in text


def test_killed_replica_loses_no_queued_call(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            calls = [
                asyncio.ensure_future(
                    client.get(f"{scaling.url}/function/slow", params={"ms": "800"})
                )
                for _ in range(16)
            ]
            deadline = time.monotonic() + 20
            while len(running(docker_client, scaling.project, "slow")) < 2:
                assert time.monotonic() < deadline, "slow never reached two replicas"
                await asyncio.sleep(0.05)
            victim = running(docker_client, scaling.project, "slow")[0]
            await asyncio.to_thread(docker_client.containers.get(victim).kill)
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(scenario())
    statuses = [r.status_code for r in responses]
    # calls in flight on the killed replica (at most its 2 slots) fail fast with 502;
    # every other call, queued or running elsewhere, succeeds
    assert set(statuses) <= {200, 502}, statuses
    assert statuses.count(502) <= 2, statuses
    for response in responses:
        if response.status_code == 502:
            assert "slow" in response.json()["error"]


def test_scale_by_hand_through_the_admin_api(
    scaling: Gateway, docker_client: docker.DockerClient
) -> None:
    result = scaling.cli("scale", "narrow", "--min", "1", "--max", "1")
    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: len(running(docker_client, scaling.project, "narrow")) == 1, 30, "min 1 to hold"
    )
    listed = {f["name"]: f for f in scaling.admin_get("/system/functions").json()["functions"]}
    assert listed["narrow"]["scale"]["min"] == 1
    refused = scaling.cli("scale", "narrow", "--min", "3", "--max", "2")
    assert refused.returncode == 1
    assert "min <= max" in refused.stderr
    assert scaling.cli("scale", "nope", "--min", "1").returncode == 1
