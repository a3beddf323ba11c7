"""Who may call what, and what a replica can do, on a real engine with a real gateway."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import jwt
import pytest

from runtime.backends.docker.containers import published_address
from tests import engines
from tests.conftest import Gateway, run_cli, running_gateway, running_replicas
from tests.engines import Target

pytestmark = pytest.mark.docker

# Every test here runs once on each engine and runtime the machine has.
engine = engines.engine
docker_client = engines.docker_client

SPEC = Path(__file__).parent / "projects" / "secure" / "functions.yaml"
ISSUER, AUDIENCE = "https://issuer.test", "faas-tests"


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    """Fresh secret values, stored with the CLI before the gateway starts."""
    chosen = {name: secrets.token_hex(16) for name in ("jwt-key", "hook-secret", "db-password")}
    for name, value in chosen.items():
        result = run_cli("secrets", "set", name, "-f", str(SPEC), "--value", value)
        assert result.returncode == 0, result.stderr
    return chosen


@pytest.fixture(scope="module")
def secure(
    engine: Target,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    values: dict[str, str],
) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(
        docker_client, SPEC, "secure", logs, *engine.up_args, env=engine.env
    ) as gateway:
        yield gateway


@pytest.fixture
def client(secure: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure.url, timeout=30, trust_env=False) as client:
        yield client


def create_key(gateway: Gateway, *functions: str) -> dict[str, str]:
    args = [arg for f in functions for arg in ("--function", f)]
    result = gateway.cli("keys", "create", "--name", "test", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def running_of(client: docker.DockerClient, project: str, function: str) -> list[dict[str, object]]:
    return running_replicas(client, project, function)


# -- API keys --------------------------------------------------------------------


def test_invoke_cli_sends_the_key_and_the_headers(secure: Gateway) -> None:
    """`faas invoke -k KEY -H 'Name: value'`: both reach the gateway (the key authenticates,
    the header reaches the function)."""
    key = create_key(secure, "keyed")["key"]
    result = secure.cli("invoke", "keyed", "-k", key, "-H", "X-Probe: from-cli")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["headers"]["x-probe"] == "from-cli"
    refused = secure.cli("invoke", "keyed", "-H", "X-Probe: from-cli")
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr


def test_api_key_accepted_in_both_headers_and_not_forwarded(
    secure: Gateway, client: httpx.Client
) -> None:
    key = create_key(secure, "keyed")["key"]
    by_bearer = client.get("/function/keyed", headers={"Authorization": f"Bearer {key}"})
    assert by_bearer.status_code == 200, by_bearer.text
    assert "authorization" not in by_bearer.json()["headers"]
    by_header = client.get("/function/keyed", headers={"X-API-Key": key})
    assert by_header.status_code == 200
    assert "x-api-key" not in by_header.json()["headers"]


def test_missing_and_wrong_keys_are_401_with_challenge(
    secure: Gateway, client: httpx.Client
) -> None:
    missing = client.get("/function/keyed")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('Bearer realm="faas"')
    key = create_key(secure, "keyed")["key"]
    tampered = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    wrong = client.get("/function/keyed", headers={"X-API-Key": tampered})
    assert wrong.status_code == 401
    assert client.get("/function/keyed", headers={"X-API-Key": "garbage"}).status_code == 401
    assert tampered not in secure.log() and key not in secure.log()
    assert "authentication failed" in secure.log()


def test_key_outside_its_scope_is_403_and_revocation_is_immediate(
    secure: Gateway, client: httpx.Client
) -> None:
    created = create_key(secure, "keyed")
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/function/other", headers=headers).status_code == 403
    assert client.get("/function/keyed", headers=headers).status_code == 200
    listed = secure.cli("keys", "ls", "--json")
    assert created["id"] in listed.stdout and created["key"] not in listed.stdout
    assert secure.cli("keys", "revoke", created["id"]).returncode == 0
    assert client.get("/function/keyed", headers=headers).status_code == 401


def test_keys_are_stored_as_hashes_only(secure: Gateway) -> None:
    created = create_key(secure)
    stored = (SPEC.parent / ".faas" / "keys.json").read_text()
    assert created["key"] not in stored
    # the secret part follows the key id (which is stored); it may hold "_" itself
    secret = created["key"].split(f"_{created['id']}_", 1)[1]
    assert len(secret) >= 24 and secret not in stored
    assert (SPEC.parent / ".faas" / "keys.json").stat().st_mode & 0o077 == 0


def test_rate_limit_per_key(secure: Gateway, client: httpx.Client) -> None:
    headers = {"X-API-Key": create_key(secure, "keyed")["key"]}
    statuses = [client.get("/function/keyed", headers=headers).status_code for _ in range(12)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    limited = client.get("/function/keyed", headers=headers)
    if limited.status_code == 429:
        assert int(limited.headers["retry-after"]) >= 1
    other_key = {"X-API-Key": create_key(secure, "keyed")["key"]}
    assert client.get("/function/keyed", headers=other_key).status_code == 200


# -- JWT -----------------------------------------------------------------------


def token(values: dict[str, str], **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "tester",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + int(overrides.pop("_expires_in", 60)),  # type: ignore[call-overload]
    }
    claims.update(overrides)
    key = str(claims.pop("_key", values["jwt-key"]))
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({}, 200),
        ({"functions": ["tokened"]}, 200),
        ({"_expires_in": -2}, 200),  # within the 5 s leeway
        ({"_expires_in": -120}, 401),
        ({"aud": "someone-else"}, 401),
        ({"aud": None}, 401),
        ({"iss": "https://evil.test"}, 401),
        ({"_key": "an-entirely-different-signing-key"}, 401),
        ({"functions": ["other"]}, 403),
    ],
    ids=[
        "valid",
        "scoped",
        "leeway",
        "expired",
        "audience",
        "no-audience",
        "issuer",
        "key",
        "scope",
    ],
)
def test_jwt(
    client: httpx.Client, values: dict[str, str], overrides: dict[str, object], status: int
) -> None:
    signed = token(values, **dict(overrides))
    response = client.get("/function/tokened", headers={"Authorization": f"Bearer {signed}"})
    assert response.status_code == status, response.text
    if status == 401:
        assert "www-authenticate" in response.headers


def test_jwt_missing_is_401(client: httpx.Client) -> None:
    assert client.get("/function/tokened").status_code == 401


# -- surface, webhooks, admin ------------------------------------------------------


def test_private_function_only_through_its_trigger(client: httpx.Client) -> None:
    assert client.get("/function/hidden").status_code == 404
    assert client.get("/hidden-trigger").json()["function"] == "hidden"


def test_tampered_webhook_never_starts_a_container(
    secure: Gateway,
    client: httpx.Client,
    values: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    body = b'{"action": "opened"}'
    forged = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
    for headers in ({"X-Hub-Signature-256": forged}, {}):
        response = client.post("/hooks/github", content=body, headers=headers)
        assert response.status_code == 401
    assert running_of(docker_client, secure.project, "hook") == []
    assert client.post("/function/hook", content=body).status_code == 404

    signature = (
        "sha256=" + hmac.new(values["hook-secret"].encode(), body, hashlib.sha256).hexdigest()
    )
    response = client.post(
        "/hooks/github", content=body, headers={"X-Hub-Signature-256": signature}
    )
    assert response.status_code == 200, response.text
    assert response.json()["body"] == body.decode()
    assert len(running_of(docker_client, secure.project, "hook")) == 1


def test_admin_api_needs_the_token(secure: Gateway) -> None:
    admin = httpx.Client(base_url=secure.admin_url, timeout=30, trust_env=False)
    for path in ("/system/functions", "/system/keys", "/metrics", "/system/scale-events"):
        refused = admin.get(path)
        assert refused.status_code == 401
        assert refused.headers["x-call-id"] == refused.json()["call_id"]
        wrong = admin.get(path, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        assert secure.admin_get(path).status_code == 200
    admin.close()
    token_file = SPEC.parent / ".faas" / "admin-token"
    assert token_file.stat().st_mode & 0o077 == 0


def test_large_headers_are_431(client: httpx.Client) -> None:
    response = client.get("/function/hidden", headers={"X-Big": "x" * 5000})
    assert response.status_code == 431


# -- replicas -----------------------------------------------------------------------


def replica_address(
    client: docker.DockerClient, project: str, function: str
) -> tuple[str, str, str]:
    """(address on the project network, where this host dials it, its token)."""
    (container,) = running_of(client, project, function)
    attrs = client.api.inspect_container(container["Id"])
    mode = attrs["HostConfig"]["NetworkMode"]
    if mode.startswith("container:"):
        # the replica joined its network sandbox's namespace: the address is the sandbox's
        attrs_with_address = client.api.inspect_container(mode.split(":", 1)[1])
    else:  # started on a warm watchdog, which has its own
        attrs_with_address = attrs
    networks = attrs_with_address["NetworkSettings"]["Networks"]
    address = next(iter(networks.values()))["IPAddress"]
    published = published_address(attrs_with_address)
    env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
    return address, published or f"{address}:8080", env["FAAS_TOKEN"]


def test_isolation_probe(
    secure: Gateway,
    client: httpx.Client,
    values: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    assert client.get("/function/peer").status_code == 200
    peer, dialed, peer_token = replica_address(docker_client, secure.project, "peer")
    report = client.get("/function/probe", params={"peer": f"{peer}:8080"}).json()
    assert report["uid"] == 10001 and report["gid"] == 10001
    assert report["cap_eff"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert report["writable"] == {
        "/app/x": False,
        "/etc/x": False,
        "/opt/faas/x": False,
        "/run/x": False,
        "/tmp/x": True,
    }
    assert report["reaches_peer"] is False
    # the replica's token was removed from its environment before the handler loaded
    assert "FAAS_TOKEN" not in report["environment"]

    # from this host, where the gateway dials it (its published port where there is one)
    direct = httpx.get(f"http://{dialed}/", timeout=5, trust_env=False)
    assert direct.status_code == 403
    forged = httpx.get(f"http://{dialed}/", headers={"X-Faas-Token": "nope"}, timeout=5)
    assert forged.status_code == 403
    real = httpx.get(f"http://{dialed}/", headers={"X-Faas-Token": peer_token}, timeout=5)
    assert real.status_code == 200


def test_secret_is_only_in_the_mounted_file(
    secure: Gateway,
    client: httpx.Client,
    values: dict[str, str],
    docker_client: docker.DockerClient,
) -> None:
    secret = values["db-password"]
    report = client.get("/function/probe").json()
    assert report["secrets"] == {"db-password": secret}
    assert secret not in json.dumps(report["environment"])
    for container in docker_client.api.containers(
        all=True, filters={"label": f"faas.project={secure.project}"}
    ):
        try:
            inspected = json.dumps(docker_client.api.inspect_container(container["Id"]))
            logs = docker_client.api.logs(container["Id"]).decode(errors="replace")
        except docker.errors.NotFound:
            continue  # an idle replica removed since the listing
        assert secret not in inspected
        assert secret not in logs
        image = docker_client.api.inspect_image(container["Image"])
        assert secret not in json.dumps(image)
        assert secret not in json.dumps(docker_client.api.history(container["Image"]))
    assert secret not in secure.log()


def test_admin_api_is_not_served_beyond_loopback(
    engine: Target, docker_client: docker.DockerClient, tmp_path: Path, values: dict[str, str]
) -> None:
    """Functions listening on every address, the admin listener stays on loopback, and the
    function listener has no admin API even with the token."""
    if engine.name != "docker":
        pytest.skip("about the gateway's listeners, not the engine: runs on docker only")
    import ipaddress

    from tests.conftest import start_gateway, unique_project

    # the host's own address on Docker's default bridge: not loopback, reachable locally
    subnet = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
    bridge = str(ipaddress.ip_network(subnet)[1])
    gateway = start_gateway(SPEC, unique_project("remote"), tmp_path, "--host", "0.0.0.0")
    try:
        remote = f"http://{bridge}:{gateway.port}"
        headers = gateway.admin_headers
        assert httpx.get(f"{remote}/healthz", trust_env=False).status_code == 200
        assert httpx.get(f"{remote}/system/functions", headers=headers).status_code == 404
        assert httpx.get(f"{remote}/metrics", headers=headers).status_code == 404
        assert httpx.get(f"{remote}/ui", headers=headers).status_code == 404
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{bridge}:{gateway.admin_port}/healthz", trust_env=False)
        assert gateway.admin_get("/system/functions").status_code == 200
    finally:
        assert gateway.stop() == 0
