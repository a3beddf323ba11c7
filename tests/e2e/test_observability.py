"""Logs, metrics, tracing and the CLI's machine-readable output, on a real engine."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, running_gateway, wait_for

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "observe" / "functions.yaml"


@pytest.fixture(scope="module")
def observed(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(docker_client, SPEC, "observe", tmp_path_factory.mktemp("logs")) as gw:
        yield gw


def test_faas_logs_shows_printed_and_logged_lines(observed: Gateway) -> None:
    marker = uuid.uuid4().hex[:8]
    response = httpx.get(f"{observed.url}/function/talker", params={"say": marker}, timeout=30)
    call_id = response.json()["call_id"]

    def lines() -> list[dict[str, object]]:
        result = observed.cli("logs", "talker", "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    wait_for(lambda: any(f"logged {marker}" == line["message"] for line in lines()), 10, "logs")
    found = lines()
    printed = next(line for line in found if line["message"] == f"printed {marker}")
    logged = next(line for line in found if line["message"] == f"logged {marker}")
    assert printed["function"] == "talker"
    assert str(printed["replica"]).startswith(f"faas-{observed.project}-talker-")
    assert logged["level"] == "warning"
    assert logged["call_id"] == call_id
    # the terminal of faas up shows replica output too
    assert f"printed {marker}" in observed.log()
    text = observed.cli("logs", "talker").stdout
    assert f"printed {marker}" in text


def test_metrics_parse_and_move(observed: Gateway) -> None:
    def total() -> float:
        text = observed.admin_get("/metrics").text
        for family in text_string_to_metric_families(text):
            if family.name == "faas_invocations":
                return sum(
                    s.value
                    for s in family.samples
                    if s.labels.get("function") == "talker" and s.name.endswith("_total")
                )
        return 0.0

    before = total()
    for _ in range(3):
        assert httpx.get(f"{observed.url}/function/talker", timeout=30).status_code == 200
    assert total() == before + 3
    families = {f.name for f in text_string_to_metric_families(observed.admin_get("/metrics").text)}
    assert {
        "faas_function_replicas",
        "faas_function_queue_depth",
        "faas_invocation_duration_seconds",
        "faas_cold_start_seconds",
    } <= families


def test_traceparent_reaches_the_handler(observed: Gateway) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    sent = f"00-{trace}-00f067aa0ba902b7-01"
    seen = httpx.get(
        f"{observed.url}/function/talker", headers={"traceparent": sent}, timeout=30
    ).json()["traceparent"]
    assert seen.split("-")[1] == trace
    fresh = httpx.get(f"{observed.url}/function/talker", timeout=30).json()["traceparent"]
    assert len(fresh.split("-")[1]) == 32


def test_cli_json_outputs_parse(observed: Gateway) -> None:
    for args in (("ls", "--json"), ("keys", "ls", "--json"), ("logs", "--json", "-n", "5")):
        result = observed.cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        for chunk in result.stdout.strip().split("\n") if args[0] == "logs" else [result.stdout]:
            if chunk:
                json.loads(chunk)


def test_logs_follow_streams_new_lines(observed: Gateway) -> None:
    import subprocess
    import sys

    marker = uuid.uuid4().hex[:8]
    follower = subprocess.Popen(
        [sys.executable, "-m", "faas", "logs", "talker", "-f", "--json", "-n", "0",
         "--file", str(SPEC), "--project", observed.project],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        httpx.get(f"{observed.url}/function/talker", params={"say": marker}, timeout=30)
        assert follower.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            if marker in line:
                break
        else:
            raise AssertionError("the followed log never showed the new line")
    finally:
        follower.terminate()
        follower.wait(10)
        if follower.stdout is not None:
            follower.stdout.close()
