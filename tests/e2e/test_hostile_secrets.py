"""Secrets and logs against careless and hostile functions, on a real engine and gateway.

A handler that puts its secret in an import-time exception must not show it to
callers, to the gateway's log, to `faas ls` or to `faas logs`; a function that
floods its output must not slow down another function's calls; a replica's
token must not be readable from its own /proc. Both ways a replica starts are
covered: on a warm watchdog (`POST /_/init`) and on a container of its own.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Gateway, run_cli, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "hostile-secrets"
SPECS = {"warm": PROJECT / "functions.yaml", "cold": PROJECT / "functions-cold.yaml"}
FLOOD_BYTES = 100_000_000
LOG_GROWTH_LIMIT = 5_000_000
"""Bytes the gateway's log may grow by while a function writes FLOOD_BYTES: generous."""


@pytest.fixture(scope="module")
def password() -> str:
    """A fresh value with characters a DSN must quote, stored before the gateway starts."""
    value = f"pw/{secrets.token_hex(8)}@{secrets.token_hex(4)}"
    result = run_cli("secrets", "set", "dbpass", "-f", str(SPECS["warm"]), "--value", value)
    assert result.returncode == 0, result.stderr
    return value


@pytest.fixture(scope="module", params=sorted(SPECS))
def gateway(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    password: str,
) -> Iterator[Gateway]:
    start: str = request.param
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(docker_client, SPECS[start], f"hsec-{start}", logs) as gateway:
        gateway.backend = start  # which way replicas start, for the tests that need one
        yield gateway


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        yield client


def forms_of(password: str) -> list[str]:
    return [password, urllib.parse.quote(password, safe="")]


def log_lines(gateway: Gateway, function: str) -> list[dict[str, Any]]:
    result = gateway.cli("logs", function, "--json", "--tail", "1000")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_an_import_failure_shows_callers_no_secret_and_logs_it_masked(
    gateway: Gateway, client: httpx.Client, password: str
) -> None:
    response = client.post("/function/leaky", json={"x": 1})
    assert response.status_code == 503
    error = response.json()["error"]
    # where to look, never what was raised (gateway/errors.py words it)
    assert error.startswith("function leaky is unavailable") and "`faas logs" in error, error
    for form in forms_of(password):
        assert form not in response.text
    assert "ConnectionError" not in response.text and "postgresql" not in response.text
    again = client.get("/function/leaky")  # from the recorded failure
    assert again.status_code == 503 and again.json()["error"] == error

    # `faas logs leaky`: where it failed and why, the secret masked
    lines = wait_for(
        lambda: [
            line
            for line in log_lines(gateway, "leaky")
            if "leaky.py:10" in json.dumps(line) or line.get("fields", {}).get("line") == 10
        ],
        30,
        "the import failure in `faas logs leaky`",
    )
    shown = json.dumps(lines)
    assert "ConnectionError" in shown and "postgresql://app:***@db:5432/app" in shown
    for form in forms_of(password):
        assert form not in json.dumps(log_lines(gateway, "leaky"))

    # `faas ls` (the admin API): failed, with the detail, masked
    listed = gateway.cli("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    row = {f["name"]: f for f in json.loads(listed.stdout)["functions"]}["leaky"]
    assert row["state"] == "failed"
    assert row["error"] == "its handler failed to import (see `faas logs leaky`)"
    assert "functions/leaky.py:10" in row["error_detail"]
    assert "***" in row["error_detail"]
    human = gateway.cli("ls")
    for form in forms_of(password):
        assert form not in listed.stdout and form not in human.stdout + human.stderr

    # the gateway's own log (its stderr: records, and every replica line it echoes)
    log = gateway.log()
    assert "leaky" in log
    for form in forms_of(password):
        assert form not in log


def test_a_replica_shows_no_token_in_proc(
    gateway: Gateway, client: httpx.Client, docker_client: docker.DockerClient, password: str
) -> None:
    response = client.get("/function/environ")
    assert response.status_code == 200, response.text
    shown = response.json()
    [replica] = running_replicas(docker_client, gateway.project, "environ")
    inspected = docker_client.api.inspect_container(replica["Id"])["Config"]["Env"]
    tokens = [entry.partition("=")[2] for entry in inspected if entry.startswith("FAAS_TOKEN=")]
    for view in ("self", "pid1"):
        assert "FAAS_HANDLER_FILE=" in shown[view] or gateway.backend == "warm", shown[view]
        assert "FAAS_TOKEN" not in shown[view]
        for token in tokens:
            assert token not in shown[view]
        assert password not in shown[view]  # secrets were never in the environment
    if not tokens:  # passed some other way than the environment: not visible there either
        assert all("FAAS_TOKEN" not in entry for entry in inspected)


def test_a_log_flood_is_dropped_and_slows_no_other_function(
    gateway: Gateway, client: httpx.Client
) -> None:
    if gateway.backend != "warm":
        pytest.skip("the flood is read the same way whichever way its replica started")
    assert client.get("/function/steady").status_code == 200  # started before the flood
    before = gateway.log_path.stat().st_size
    assert client.get("/function/flood", params={"bytes": FLOOD_BYTES}).text == "flooding"

    answered = 0
    deadline = time.monotonic() + 300
    while True:
        response = client.get("/function/steady")
        assert response.status_code == 200, response.text
        answered += 1
        progress = client.get("/function/flood", params={"check": "1"}).json()
        if progress["done"]:
            break
        assert time.monotonic() < deadline, f"the flood did not end: {progress}"
    assert progress["written"] >= FLOOD_BYTES
    for _ in range(20):  # and after it
        assert client.get("/function/steady").status_code == 200
        answered += 1

    reports = wait_for(
        lambda: [
            line for line in log_lines(gateway, "flood") if "bytes dropped" in line["message"]
        ],
        30,
        "a 'bytes dropped' line in `faas logs flood`",
    )
    dropped = sum(line["fields"]["dropped_bytes"] for line in reports)
    assert dropped > FLOOD_BYTES // 100  # what the engine had not rotated away when read
    assert len(reports) < 600  # about one a second, not one a line
    grown = gateway.log_path.stat().st_size - before
    assert grown < LOG_GROWTH_LIMIT, f"the gateway's log grew by {grown} bytes"
    assert answered > 20

    metrics = gateway.admin_get("/metrics").text
    sample = next(
        line
        for line in metrics.splitlines()
        if line.startswith('faas_replica_output_dropped_bytes_total{function="flood"}')
    )
    assert float(sample.split()[-1]) >= dropped
