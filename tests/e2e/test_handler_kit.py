"""`faas.testing.call` answers as a real replica does, through the gateway.

The same cases run both ways: over HTTP through a real gateway to real replicas,
and in-process with faas.testing. Status, content type, the handler's own headers and
the body must be equal (the call id aside, which differs by nature).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from faas.testing import call
from tests.conftest import Gateway, running_gateway

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "kit"
SECRET = "kit-token-value-1234"
OWN_HEADERS = ("x-kind", "x-a", "x-s")


@pytest.fixture(scope="module")
def kit(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Path]]:
    root = tmp_path_factory.mktemp("kit") / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns(".faas", "__pycache__"))
    logs = tmp_path_factory.mktemp("logs")
    env = {"FAAS_SECRET_KIT_TOKEN": SECRET}
    spec = root / "functions.yaml"
    with running_gateway(docker_client, spec, "kit", logs, "--no-reload", env=env) as gateway:
        yield gateway, root


CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    # (function, method, query, request): what both sides are sent
    ("cases", "GET", "case=text", {}),
    ("cases", "GET", "case=json", {}),
    ("cases", "GET", "case=list", {}),
    ("cases", "GET", "case=tuple", {}),
    ("cases", "GET", "case=response", {}),
    ("cases", "GET", "case=bytes", {}),
    ("cases", "GET", "case=none", {}),
    ("cases", "GET", "case=status-code", {}),
    ("cases", "GET", "case=query&tag=a&tag=b&tag=&x", {}),
    ("cases", "PUT", "case=request", {"json": {"n": 1}, "headers": {"X-Custom": "yes"}}),
    ("cases", "POST", "case=request", {"body": b"", "headers": {"X-Custom": "empty"}}),
    ("cases", "GET", "case=secret", {}),
    ("cases", "GET", "case=env", {}),
    ("cases", "GET", "case=raise", {}),
    ("cases", "GET", "case=invalid", {}),
    ("cases", "GET", "case=bad-status", {}),
    ("cases", "GET", "case=slow", {}),
    ("cases", "GET", "case=unknown", {}),
    ("async-cases", "POST", "case=ok", {"body": b"12345"}),
    ("async-cases", "GET", "case=raise", {}),
    ("async-cases", "GET", "case=slow", {}),
]


def comparable(status: int, headers: Any, body: bytes) -> dict[str, Any]:
    """What must agree: the status, the content type, the handler's headers, the body."""
    content: Any = body
    if headers.get("content-type", "").startswith("application/json") and body:
        content = json.loads(body)
        if isinstance(content, dict) and "call_id" in content:
            content["call_id"] = "<call id>"
    return {
        "status": status,
        "content-type": headers.get("content-type"),
        "own": {name: headers.get(name) for name in OWN_HEADERS if name in headers},
        "body": content,
    }


@pytest.mark.parametrize(("function", "method", "query", "request_"), CASES)
def test_in_process_call_answers_as_the_replica_does(
    kit: tuple[Gateway, Path], function: str, method: str, query: str, request_: dict[str, Any]
) -> None:
    gateway, root = kit
    route = f"/{function}"
    over_http = httpx.request(
        method,
        f"{gateway.url}{route}?{query}",
        json=request_.get("json"),
        content=request_.get("body"),
        headers=request_.get("headers"),
        timeout=30,
        trust_env=False,
    )
    handler = root / "functions" / ("cases.py" if function == "cases" else "async_cases.py")
    sent = {"json": request_["json"]} if "json" in request_ else {"body": request_.get("body")}
    in_process = call(
        str(handler) + ("" if function == "cases" else ":handle"),
        method=method,
        path=route,
        query=query,
        headers=request_.get("headers"),
        secrets={"kit-token": SECRET},
        env={"GREETING": "bonjour"},
        timeout=2,
        function_name=function,
        **sent,
    )
    expected = comparable(over_http.status_code, over_http.headers, over_http.content)
    got = comparable(in_process.status, in_process.headers, in_process.body)
    assert got == expected
    assert in_process.headers["x-call-id"] == in_process.call_id
    assert (in_process.error is None) == (in_process.status < 500)
