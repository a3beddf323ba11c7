"""gateway.jwt.jwks_url on a real gateway, with the key set served from 127.0.0.1.

One gateway sees the provider unreachable at first, then serving key A, then
rotating to key B, then gone: what a token gets at each step, without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import Gateway, running_gateway

pytestmark = pytest.mark.docker

A, B, STRANGER = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "abc")


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    found: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)  # type: ignore[assignment]
    return {**found, "kid": kid, "use": "sig", "alg": "RS256"}


def token(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    claims = {"sub": f"user-{kid}", "aud": "faas-tests", "exp": int(time.time()) + 600}
    return {"authorization": f"Bearer {jwt.encode(claims, key, 'RS256', headers={'kid': kid})}"}


class Provider(ThreadingHTTPServer):
    """An identity provider's JWKS endpoint: `keys` is what it serves, None answers 503."""

    keys: list[dict[str, Any]] | None = None
    fetches = 0


class Handler(BaseHTTPRequestHandler):
    server: Provider

    def do_GET(self) -> None:
        self.server.fetches += 1
        keys = self.server.keys
        body = json.dumps({"keys": keys}).encode() if keys is not None else b"unavailable"
        self.send_response(200 if keys is not None and self.path == "/jwks.json" else 503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def gateway(
    docker_client: docker.DockerClient, tmp_path: Path, provider: Provider
) -> Iterator[Gateway]:
    root = tmp_path / "project"
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "hello.py").write_text("def handle(event, context):\n    return 'hi'\n")
    (root / "functions.yaml").write_text(
        "version: 1\n"
        "gateway:\n"
        "  jwt:\n"
        f"    jwks_url: http://127.0.0.1:{provider.server_address[1]}/jwks.json\n"
        "    jwks_refetch_interval: 0s    # every unknown kid refetches: rotation at once\n"
        "    audience: faas-tests\n"
        "functions:\n"
        "  hello:\n"
        "    handler: functions/hello.py\n"
        "    auth: jwt\n"
        "    http: [{path: /hello, methods: [GET]}]\n"
    )
    with running_gateway(docker_client, root / "functions.yaml", "jwks", tmp_path) as gateway:
        yield gateway


def refused(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    assert fragment in response.json()["error"], response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="faas"')


def test_keys_rotate_without_a_restart(gateway: Gateway, provider: Provider) -> None:
    with httpx.Client(base_url=gateway.url, timeout=60, trust_env=False) as client:
        refused(client.get("/hello", headers=token(A, "a")), "could not be fetched")

        provider.keys = [jwk(A, "a")]
        answer = client.get("/hello", headers=token(A, "a"))
        assert (answer.status_code, answer.text) == (200, "hi")
        fetched = provider.fetches
        assert client.get("/hello", headers=token(A, "a")).status_code == 200
        assert provider.fetches == fetched  # held, not fetched per call

        provider.keys = [jwk(B, "b")]  # the provider rotates: a new key with a new kid
        answer = client.get("/hello", headers=token(B, "b"))
        assert (answer.status_code, answer.text) == (200, "hi")
        refused(client.get("/hello", headers=token(A, "a")), "kid 'a'")  # rotated out
        refused(client.get("/hello", headers=token(STRANGER, "x")), "kid 'x'")
        refused(client.get("/hello", headers=token(STRANGER, "b")), "Signature verification")

        provider.shutdown()
        provider.server_close()  # gone: connections are refused
        refused(client.get("/hello", headers=token(STRANGER, "y")), "kid 'y'")
        answer = client.get("/hello", headers=token(B, "b"))  # the held key still works
        assert (answer.status_code, answer.text) == (200, "hi")

    log = gateway.log()
    assert "JWKS fetch failed (keeping the 1 keys held)" in log
    assert "Traceback" not in log
