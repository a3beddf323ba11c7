"""CORS answered by a real gateway in front of real functions behind `auth: key`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from tests.conftest import Gateway, running_gateway, running_replicas, wait_for

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "cors"
APP = "https://app.example.com"
PARTNER = "https://partner.example.org"
FULL_APP = {"X-Forwarded-For": "203.0.113.9"}
"""A header the shorter road (gateway/protocol.py) declines: the call takes the full app."""
ROADS = [pytest.param({}, id="short-road"), pytest.param(FULL_APP, id="full-app")]


def preflight(origin: str = APP, method: str = "POST", **extra: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
        **extra,
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cors") / "project"
    shutil.copytree(PROJECT, root)
    return root / "functions.yaml"


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(docker_client, project, "cors", logs) as gateway:
        yield gateway


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        yield client


def key_for(gateway: Gateway, function: str) -> str:
    result = gateway.cli("keys", "create", "--name", "cors", "--function", function, "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["key"])


def described(gateway: Gateway, name: str) -> dict[str, Any]:
    listed = gateway.admin_get("/system/functions").json()["functions"]
    return next(f for f in listed if f["name"] == name)  # type: ignore[no-any-return]


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("road", ROADS)
def test_a_preflight_needs_no_key_and_wakes_nothing(
    gateway: Gateway,
    client: httpx.Client,
    docker_client: docker.DockerClient,
    road: dict[str, str],
) -> None:
    for path in ("/function/idle", "/function/idle/deeper", "/idle"):  # /idle declares OPTIONS
        answer = client.options(path, headers={**preflight(), **road})
        assert answer.status_code == 200, answer.text
        assert answer.text == "OK"
        assert answer.headers["access-control-allow-origin"] == APP
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert answer.headers["access-control-max-age"] == "300"
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "Origin" in answer.headers["vary"]
    subdomain = client.options("/idle", headers=preflight("https://a.b.tools.example.com"))
    assert subdomain.status_code == 200
    assert subdomain.headers["access-control-allow-origin"] == "https://a.b.tools.example.com"
    idle = described(gateway, "idle")
    assert (idle["replicas"], idle["starting"], idle["queue_depth"]) == (0, 0, 0)
    assert running_replicas(docker_client, gateway.project, "idle") == []


@pytest.mark.parametrize("road", ROADS)
def test_a_refused_preflight_is_400_and_says_why(
    client: httpx.Client, road: dict[str, str]
) -> None:
    evil = client.options("/function/idle", headers={**preflight("https://evil.example"), **road})
    assert (evil.status_code, evil.text) == (400, "Disallowed CORS origin")
    assert evil.headers["content-type"].startswith("text/plain") and evil.headers["x-call-id"]
    assert "access-control-allow-origin" not in evil.headers
    method = client.options("/idle", headers={**preflight(method="DELETE"), **road})
    assert (method.status_code, method.text) == (400, "Disallowed CORS method")
    asked = {**preflight(), "Access-Control-Request-Headers": "x-unlisted", **road}
    header = client.options("/function/idle", headers=asked)
    assert (header.status_code, header.text) == (400, "Disallowed CORS headers")


@pytest.mark.parametrize("road", ROADS)
def test_an_allowed_call_gets_the_headers_and_reaches_the_function(
    gateway: Gateway, client: httpx.Client, road: dict[str, str]
) -> None:
    key = key_for(gateway, "keyed")
    headers = {"Origin": APP, "Authorization": f"Bearer {key}", **road}
    for answer in (
        client.get("/function/keyed", headers=headers),
        client.post("/keyed", headers=headers),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.json()["headers"]["origin"] == APP  # the function sees who called
        assert answer.headers["access-control-allow-origin"] == APP
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert answer.headers["access-control-expose-headers"] == "X-Call-Id"
        assert "Origin" in answer.headers["vary"]
    other = client.get("/function/keyed", headers={**headers, "Origin": "https://evil.example"})
    assert other.status_code == 200  # CORS is the browser's to enforce; auth is ours
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("road", ROADS)
def test_the_gateways_own_errors_carry_the_headers(
    client: httpx.Client, road: dict[str, str]
) -> None:
    unauthorized = client.post("/function/idle", headers={"Origin": APP, **road})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"].startswith("Bearer")
    assert unauthorized.headers["access-control-allow-origin"] == APP
    assert unauthorized.headers["access-control-allow-credentials"] == "true"
    assert unauthorized.headers["access-control-expose-headers"] == "X-Call-Id"
    plain_options = client.options("/idle", headers={"Origin": APP, **road})  # no preflight
    assert plain_options.status_code == 401  # the function's own OPTIONS, behind its auth
    assert plain_options.headers["access-control-allow-origin"] == APP
    missing = client.get("/function/no-such-function", headers={"Origin": APP, **road})
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == APP
    no_origin = client.post("/function/idle", headers=road)  # not a browser's cross-origin call
    assert no_origin.status_code == 401 and cors_headers(no_origin) == {}
    assert no_origin.headers["vary"] == "Origin"  # a cache keeps it apart from those that are


def test_a_routes_own_cors_differs_from_the_gateways(client: httpx.Client) -> None:
    partner = client.options("/partner", headers=preflight(PARTNER))
    assert partner.status_code == 200, partner.text
    assert partner.headers["access-control-allow-origin"] == PARTNER
    assert partner.headers["access-control-max-age"] == "60"
    assert "access-control-allow-credentials" not in partner.headers
    refused = client.options("/partner", headers=preflight(APP))
    assert (refused.status_code, refused.text) == (400, "Disallowed CORS origin")
    # the same function on /function/partner is under the gateway's default
    default = client.options("/function/partner", headers=preflight(APP))
    assert default.status_code == 200
    assert default.headers["access-control-allow-origin"] == APP
    assert client.options("/function/partner", headers=preflight(PARTNER)).status_code == 400
    unauthorized = client.post("/partner", headers={"Origin": PARTNER})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == PARTNER
    assert "access-control-allow-credentials" not in unauthorized.headers


def test_without_cors_in_functions_yaml_nothing_changes(
    gateway: Gateway, client: httpx.Client, project: Path
) -> None:
    """The same project with every cors block taken out (a reload): preflights reach the
    function's auth as any OPTIONS does, and no answer names an origin."""
    original = project.read_text()
    plain = yaml.safe_load(original)
    del plain["gateway"]["cors"]
    del plain["functions"]["partner"]["http"][0]["cors"]
    try:
        save(project, yaml.safe_dump(plain))
        wait_for(
            lambda: client.options("/function/idle", headers=preflight()).status_code == 401,
            30,
            "the reload without cors",
        )
        key = key_for(gateway, "keyed")
        for road in ({}, FULL_APP):
            asked = client.options("/idle", headers={**preflight(), **road})
            assert asked.status_code == 401 and cors_headers(asked) == {}
            called = client.get(
                "/function/keyed",
                headers={"Origin": APP, "Authorization": f"Bearer {key}", **road},
            )
            assert called.status_code == 200 and cors_headers(called) == {}
            assert "vary" not in called.headers
            refused = client.post("/partner", headers={"Origin": PARTNER, **road})
            assert refused.status_code == 401 and cors_headers(refused) == {}
    finally:
        save(project, original)
        wait_for(
            lambda: client.options("/function/idle", headers=preflight()).status_code == 200,
            30,
            "the reload back to the cors settings",
        )


def save(path: Path, text: str) -> None:
    """Write the way editors do: a new file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    temporary.replace(path)
