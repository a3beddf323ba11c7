"""Pure checks of the gateway's credentials handling: keys, tokens, webhooks, rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Mapping
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import Caller, Denied, Guard
from gateway.keys import KeyStore
from gateway.ratelimit import RateLimiter
from runtime.secrets import SecretStore
from runtime.spec import FunctionSpec, Project, RateLimit, load_project_text

SPEC = """\
version: 1
gateway:
  jwt: {algorithms: [RS256], public_key_file: jwt.pub, audience: api, issuer: me}
functions:
  open: {handler: f.py, auth: none}
  keyed: {handler: f.py}
  tokened: {handler: f.py, auth: jwt}
"""


def authenticate(
    guard: Guard, headers: Mapping[str, str], client: str, function: FunctionSpec
) -> Caller:
    return asyncio.run(guard.authenticate(headers, client, function))


@pytest.fixture
def rsa_key(tmp_path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "jwt.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


@pytest.fixture
def project(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Project:
    return load_project_text(SPEC, filename="functions.yaml", root=tmp_path)


@pytest.fixture
def guard(project: Project, tmp_path: Path) -> Guard:
    state = tmp_path / ".faas"
    return Guard(project, KeyStore(state), SecretStore(state, environ={}), "admin-secret")


def test_open_function_needs_nothing(guard: Guard, project: Project) -> None:
    caller = authenticate(guard, {}, "10.0.0.1", project.functions["open"])
    assert caller.identity == "ip:10.0.0.1" and not caller.rate_limited


def test_keys_scope_and_revocation(guard: Guard, project: Project, tmp_path: Path) -> None:
    store = KeyStore(tmp_path / ".faas")
    record, secret = store.create("ci", ("keyed",))
    caller = authenticate(guard, {"x-api-key": secret}, "c", project.functions["keyed"])
    assert caller.identity == f"key:{record.id}" and caller.rate_limited
    with pytest.raises(Denied) as denied:
        authenticate(guard, {"x-api-key": secret + "x"}, "c", project.functions["keyed"])
    assert denied.value.status == 401
    store.revoke(record.id)
    with pytest.raises(Denied):
        authenticate(guard, {"authorization": f"Bearer {secret}"}, "c", project.functions["keyed"])


def test_rs256_tokens(guard: Guard, project: Project, rsa_key: rsa.RSAPrivateKey) -> None:
    tokened = project.functions["tokened"]
    claims = {"sub": "s", "aud": "api", "iss": "me", "exp": int(time.time()) + 60}
    good = jwt.encode(claims, rsa_key, algorithm="RS256")
    assert (
        authenticate(guard, {"authorization": f"Bearer {good}"}, "c", tokened).identity == "jwt:s"
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        jwt.encode(claims, other, algorithm="RS256"),
        jwt.encode({**claims, "aud": "nope"}, rsa_key, algorithm="RS256"),
        jwt.encode({**claims, "exp": int(time.time()) - 3600}, rsa_key, algorithm="RS256"),
    ):
        with pytest.raises(Denied) as denied:
            authenticate(guard, {"authorization": f"Bearer {bad}"}, "c", tokened)
        assert denied.value.status == 401
        assert "www-authenticate" in denied.value.headers


def test_webhook_signature(guard: Guard, tmp_path: Path) -> None:
    SecretStore(tmp_path / ".faas").set("hook", b"k3y")
    body = b"payload"
    good = "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert guard.verify_webhook("hook", body, {"x-hub-signature-256": good}, "f", "c")
    with pytest.raises(Denied):
        guard.verify_webhook("hook", body + b"!", {"x-hub-signature-256": good}, "f", "c")


@pytest.mark.parametrize(
    ("admin_listener", "token", "status"),
    [(True, "admin-secret", None), (True, "wrong", 401), (True, None, 401),
     (False, "admin-secret", 404)],
)  # fmt: skip
def test_admin(
    project: Project, tmp_path: Path, admin_listener: bool, token: str | None, status: int | None
) -> None:
    """The listener decides: off the admin listener even the right token finds nothing."""
    state = tmp_path / ".faas"
    secrets = SecretStore(state, environ={})
    guard = Guard(project, KeyStore(state), secrets, "admin-secret", admin_listener=admin_listener)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if status is None:
        guard.admin(headers)
        return
    with pytest.raises(Denied) as denied:
        guard.admin(headers)
    assert denied.value.status == status


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(RateLimit(requests=2, per=1.0))
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    assert limiter.take("b", 0.0) == 0.0
    assert limiter.take("a", 0.6) == 0.0


def test_secret_store_prefers_the_store_then_the_environment(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, environ={"FAAS_SECRET_DB_PASSWORD": "from-env"})
    assert store.get("db-password") == b"from-env"
    store.set("db-password", b"stored")
    assert store.get("db-password") == b"stored"
    assert (tmp_path / "secrets" / "db-password").stat().st_mode & 0o077 == 0
    files = store.materialize(tmp_path / "run", ["db-password"])
    assert files["db-password"].read_bytes() == b"stored"
    assert (tmp_path / "run").stat().st_mode & 0o077 == 0
