"""Who may publish to a topic (`gateway.events_auth`, or the admin token on the admin listener)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest

from gateway.auth import Denied, Guard
from gateway.keys import KeyStore
from runtime.secrets import SecretStore
from runtime.spec import load_project_text

SPEC = """\
version: 1
gateway:
  events_auth: {mode}
  jwt: {{algorithms: [HS256], secret: jwt-key}}
functions:
  audit: {{handler: f.py, events: [orders.created]}}
  mailer: {{handler: f.py, events: ["orders.*"]}}
"""
SUBSCRIBERS = ["audit", "mailer"]


def guard_for(tmp_path: Path, mode: str, admin_listener: bool = False) -> Guard:
    project = load_project_text(SPEC.format(mode=mode), filename="f.yaml", root=tmp_path)
    state = tmp_path / ".faas"
    secrets = SecretStore(state, environ={"FAAS_SECRET_JWT_KEY": "k" * 32})
    return Guard(project, KeyStore(state), secrets, "admin-secret", admin_listener=admin_listener)


def publish(guard: Guard, headers: dict[str, str]) -> str:
    caller = asyncio.run(guard.publisher(headers, "10.0.0.9", "orders.created", SUBSCRIBERS))
    return caller.identity


def denied(guard: Guard, headers: dict[str, str]) -> int:
    with pytest.raises(Denied) as caught:
        publish(guard, headers)
    return caught.value.status


def test_keys_must_reach_every_subscriber(tmp_path: Path) -> None:
    guard = guard_for(tmp_path, "key")
    store = KeyStore(tmp_path / ".faas")
    everything = store.create("all")[1]
    both = store.create("both", ("audit", "mailer"))[1]
    one = store.create("one", ("audit",))[1]
    assert publish(guard, {"x-api-key": everything}).startswith("key:")
    assert publish(guard, {"authorization": f"Bearer {both}"}).startswith("key:")
    with pytest.raises(Denied) as caught:
        publish(guard, {"x-api-key": one})
    assert caught.value.status == 403 and "mailer" in caught.value.message
    assert denied(guard, {}) == 401
    assert denied(guard, {"x-api-key": "faas_nope"}) == 401


def test_tokens_scope_by_their_functions_claim(tmp_path: Path) -> None:
    guard = guard_for(tmp_path, "jwt")
    claims = {"sub": "svc", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, "k" * 32, algorithm="HS256")
    assert publish(guard, {"authorization": f"Bearer {token}"}) == "jwt:svc"
    narrow = jwt.encode({**claims, "functions": ["audit"]}, "k" * 32, algorithm="HS256")
    assert denied(guard, {"authorization": f"Bearer {narrow}"}) == 403


def test_open_publishing(tmp_path: Path) -> None:
    assert publish(guard_for(tmp_path, "none"), {}) == "ip:10.0.0.9"


def test_the_admin_token_publishes_on_the_admin_listener_only(tmp_path: Path) -> None:
    admin = {"authorization": "Bearer admin-secret"}
    assert publish(guard_for(tmp_path, "key", admin_listener=True), admin) == "admin"
    # where functions answer, the admin token is just an unknown key, whatever the address
    assert denied(guard_for(tmp_path, "key"), admin) == 401
