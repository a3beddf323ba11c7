"""Keys from gateway.jwt.jwks_url: when to fetch, which keys count, what a token gets."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from gateway.auth import Denied, Guard
from gateway.jwks import FetchFailed, FetchState, JwksKeys, KeyUnavailable, should_fetch
from gateway.jwks import signing_keys as parse
from gateway.keys import KeyStore
from runtime.errors import SpecError
from runtime.secrets import SecretStore
from runtime.spec import load_project_text

URL = "https://issuer.test/.well-known/jwks.json"
LIFESPAN, INTERVAL = 300.0, 30.0
A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
B = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str | None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)  # type: ignore[assignment]
    return {**found, **({"kid": kid} if kid else {}), **extra}


def document(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


@pytest.mark.parametrize(
    ("state", "have_key", "now", "fetch"),
    [
        (FetchState(), False, 0.0, True),  # the first token fetches
        (FetchState(), True, 0.0, True),
        (FetchState(100.0, 100.0), True, 200.0, False),  # held and fresh
        (FetchState(100.0, 100.0), False, 129.0, False),  # unknown kid, but fetched 29 s ago
        (FetchState(100.0, 100.0), False, 130.0, True),
        (FetchState(100.0, 100.0), True, 400.0, True),  # held but old
        (FetchState(100.0, 390.0), True, 400.0, False),  # old, and the last attempt failed
        (FetchState(None, 390.0), False, 400.0, False),  # nothing held, provider down: wait
        (FetchState(None, 390.0), False, 420.0, True),
    ],
)
def test_should_fetch(state: FetchState, have_key: bool, now: float, fetch: bool) -> None:
    assert should_fetch(state, have_key, now, LIFESPAN, INTERVAL) is fetch


def test_signing_keys_keeps_rsa_signing_keys_for_the_algorithms() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(other.public_key()))
    keys = parse(
        document(
            jwk(A, "a"),
            jwk(B, "b", alg="RS384"),
            jwk(B, "enc", use="enc"),
            jwk(B, "ps", alg="PS256"),
            {**ec_jwk, "kid": "ec"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken"},
            "not a key",
            json.loads(RSAAlgorithm.to_jwk(A)) | {"kid": "private"},
        ),
        ("RS256", "RS384"),
    )
    assert set(keys) == {"a", "b"}
    assert (keys["a"].algorithm, keys["b"].algorithm) == (None, "RS384")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>", "not JSON"),
        (b'{"keys": {}}', "not a JWK Set"),
        (b"[]", "not a JWK Set"),
        (document(), "has no RSA signing key for RS256"),
        (document(jwk(A, "a", alg="RS512")), "has no RSA signing key"),
    ],
)
def test_signing_keys_refuses(body: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse(body, ("RS256",))


class Provider:
    """A fake JWKS endpoint and clock: what it serves, whether it answers, how often asked."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.body = document(*keys)
        self.up = True
        self.fetches = 0
        self.now = 1000.0

    async def fetch(self, url: str) -> bytes:
        assert url == URL
        self.fetches += 1
        await asyncio.sleep(0)  # let concurrent callers pile up behind the lock
        if not self.up:
            raise FetchFailed("connection refused")
        return self.body

    def keys(self) -> JwksKeys:
        return JwksKeys(
            URL,
            ("RS256",),
            lifespan=LIFESPAN,
            refetch_interval=INTERVAL,
            fetch=self.fetch,
            clock=lambda: self.now,
        )


def key_id(keys: JwksKeys, kid: str | None) -> str:
    found = asyncio.run(keys.key(kid))
    for name, private in (("A", A), ("B", B)):
        if found.key.public_numbers() == private.public_key().public_numbers():
            return name
    raise AssertionError("an unknown key")


def unavailable(keys: JwksKeys, kid: str | None) -> str:
    with pytest.raises(KeyUnavailable) as caught:
        asyncio.run(keys.key(kid))
    return str(caught.value)


def test_rotation_fetches_for_an_unknown_kid_at_most_once_per_interval() -> None:
    provider = Provider(jwk(A, "a"))
    keys = provider.keys()
    assert key_id(keys, "a") == "A" and provider.fetches == 1
    assert key_id(keys, "a") == "A" and provider.fetches == 1  # cached
    provider.body = document(jwk(A, "a"), jwk(B, "b"))
    provider.now += 5
    assert "kid 'b'" in unavailable(keys, "b")  # too soon after the last fetch
    assert provider.fetches == 1
    provider.now += INTERVAL
    assert key_id(keys, "b") == "B" and provider.fetches == 2
    assert "kid 'made-up'" in unavailable(keys, "made-up")
    assert provider.fetches == 2


def test_a_failed_fetch_keeps_the_keys_held(caplog: pytest.LogCaptureFixture) -> None:
    provider = Provider(jwk(A, "a"))
    keys = provider.keys()
    assert key_id(keys, "a") == "A"
    provider.up = False
    provider.now += LIFESPAN + 1  # old: due for a fetch, which fails
    assert key_id(keys, "a") == "A" and provider.fetches == 2
    assert "JWKS fetch failed (keeping the 1 keys held)" in caplog.text
    assert "kid 'new'" in unavailable(keys, "new")
    assert provider.fetches == 2  # the failure counts toward the interval too


def test_with_no_key_ever_fetched_the_message_says_so() -> None:
    provider = Provider(jwk(A, "a"))
    provider.up = False
    message = unavailable(provider.keys(), "a")
    assert message == (
        "no signing keys are available: the key set at "
        "https://issuer.test/.well-known/jwks.json could not be fetched"
    )


def test_a_token_without_kid_uses_the_only_key() -> None:
    provider = Provider(jwk(A, None))
    assert key_id(provider.keys(), None) == "A"
    provider = Provider(jwk(A, "a"), jwk(B, "b"))
    assert "names no key" in unavailable(provider.keys(), None)


def test_callers_waiting_for_a_fetch_share_it() -> None:
    provider = Provider(jwk(A, "a"))
    keys = provider.keys()

    async def many() -> list[object]:
        return await asyncio.gather(*(keys.key("a") for _ in range(10)))

    assert len(asyncio.run(many())) == 10
    assert provider.fetches == 1


# --- the guard ---------------------------------------------------------------------------------

SPEC = f"""\
version: 1
gateway:
  jwt:
    jwks_url: {URL}
    audience: api
functions:
  tokened: {{handler: f.py, auth: jwt}}
"""


def guard_with(tmp_path: Path, provider: Provider) -> Guard:
    project = load_project_text(SPEC, filename="functions.yaml", root=tmp_path)
    state = tmp_path / ".faas"
    secrets = SecretStore(state, environ={})
    return Guard(project, KeyStore(state), secrets, "admin", jwks=provider.keys())


def call(guard: Guard, token: str) -> str:
    project = load_project_text(SPEC, filename="functions.yaml", root=Path("/srv"))
    headers = {"authorization": f"Bearer {token}"}
    return asyncio.run(guard.authenticate(headers, "c", project.functions["tokened"])).identity


def refused(guard: Guard, token: str) -> str:
    with pytest.raises(Denied) as caught:
        call(guard, token)
    assert caught.value.status == 401
    assert caught.value.headers["www-authenticate"].startswith("Bearer")
    return caught.value.message


CLAIMS = {"sub": "s", "aud": "api", "exp": 4_102_444_800}
"""Expiring in 2100: a time taken at import would pass while a long suite runs."""


def unsigned(header: dict[str, Any]) -> str:
    """A token PyJWT would not encode (its header breaks the rules); never verified."""
    parts = (json.dumps(header).encode(), json.dumps(CLAIMS).encode(), b"sig")
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in parts)


def test_guard_verifies_with_the_key_the_token_names(tmp_path: Path) -> None:
    provider = Provider(jwk(A, "a"), jwk(B, "b", alg="RS256"))
    guard = guard_with(tmp_path, provider)
    assert call(guard, jwt.encode(CLAIMS, A, "RS256", headers={"kid": "a"})) == "jwt:s"
    assert call(guard, jwt.encode(CLAIMS, B, "RS256", headers={"kid": "b"})) == "jwt:s"
    wrong = jwt.encode(CLAIMS, B, "RS256", headers={"kid": "a"})
    assert "Signature verification failed" in refused(guard, wrong)
    assert "its key is for RS256, not RS512" in refused(
        guard, jwt.encode(CLAIMS, B, "RS512", headers={"kid": "b"})
    )
    assert "kid 'c'" in refused(guard, jwt.encode(CLAIMS, A, "RS256", headers={"kid": "c"}))
    assert "must be a string" in refused(guard, unsigned({"alg": "RS256", "kid": 7}))
    assert "not valid" in refused(guard, "garbage")
    hmac_token = jwt.encode(CLAIMS, "k" * 32, "HS256", headers={"kid": "a"})
    assert "alg value is not allowed" in refused(guard, hmac_token)


def test_guard_with_the_provider_down_answers_401(tmp_path: Path) -> None:
    provider = Provider(jwk(A, "a"))
    provider.up = False
    message = refused(
        guard_with(tmp_path, provider), jwt.encode(CLAIMS, A, "RS256", headers={"kid": "a"})
    )
    assert "could not be fetched" in message


# --- the spec ----------------------------------------------------------------------------------


def spec_problems(jwt_lines: str) -> list[tuple[int | None, str, str]]:
    text = f"version: 1\ngateway:\n  jwt:\n{jwt_lines}functions:\n  f: {{handler: f.py}}\n"
    with pytest.raises(SpecError) as caught:
        load_project_text(text, filename="functions.yaml", root=Path("/srv"))
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_spec_defaults_to_rs256_with_a_jwks_url() -> None:
    text = (
        f"version: 1\ngateway:\n  jwt: {{jwks_url: '{URL}'}}\nfunctions:\n  f: {{handler: f.py}}\n"
    )
    settings = load_project_text(text, filename="functions.yaml", root=Path("/srv")).gateway.jwt
    assert settings is not None
    assert (settings.algorithms, settings.jwks_url) == (("RS256",), URL)
    assert (settings.jwks_lifespan, settings.jwks_refetch_interval) == (300.0, 30.0)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "    jwks_url: ftp://issuer.test/keys\n",
            (4, "gateway.jwt.jwks_url", "expected an http(s) URL"),
        ),
        ("    jwks_url: https:///keys\n", (4, "gateway.jwt.jwks_url", "expected an http(s) URL")),
        (
            f"    jwks_url: {URL}\n    public_key_file: jwt.pub\n",
            (5, "gateway.jwt.public_key_file", "set jwks_url or public_key_file, not both"),
        ),
        (
            f"    jwks_url: {URL}\n    algorithms: [HS256]\n",
            (5, "gateway.jwt.algorithms", "jwks_url serves public keys"),
        ),
        (
            "    algorithms: [RS256]\n    jwks_lifespan: 5m\n",
            (3, "gateway.jwt", "need 'public_key_file' (a PEM file) or 'jwks_url'"),
        ),
        (
            "    algorithms: [RS256]\n    public_key_file: k.pem\n    jwks_refetch_interval: 1s\n",
            (6, "gateway.jwt.jwks_refetch_interval", "applies to jwks_url, which is not set"),
        ),
        (
            f"    jwks_url: {URL}\n    jwks_lifespan: 0s\n",
            (5, "gateway.jwt.jwks_lifespan", "expected a duration greater than 0"),
        ),
    ],
)
def test_spec_refuses(lines: str, expected: tuple[int, str, str]) -> None:
    problems = spec_problems(lines)
    line, field, fragment = expected
    assert any(p[:2] == (line, field) and fragment in p[2] for p in problems), problems
