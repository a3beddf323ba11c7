"""The example project, served by a real gateway on real containers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import httpx
import pytest

from tests.conftest import (
    REPO,
    Gateway,
    claimed_warm_tasks,
    project_resources,
    running_gateway,
    running_replicas,
)
from tests.engines import TARGETS, Target, drops_every_capability, require, target_params

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=[*target_params(), pytest.param(None, id="swarm")])
def where(request: pytest.FixtureRequest) -> Target | None:
    """Every engine and runtime of the docker backend (tests/engines.py), and swarm (None)."""
    target: Target | None = request.param
    if target is None:
        request.getfixturevalue("swarm")
    else:
        require(target)
    return target


@pytest.fixture(scope="module")
def docker_client(where: Target | None) -> Iterator[docker.DockerClient]:
    client = (where or TARGETS["docker"]).client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def examples(
    where: Target | None,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The examples on each backend and engine: the same calls must answer the same."""
    backend = "docker" if where is not None else "swarm"
    args = ("--backend", backend, *(where.up_args if where else ()))
    logs = tmp_path_factory.mktemp("logs")
    spec = REPO / "functions.yaml"
    name = where.name if where else backend
    env = where.env if where else None
    with running_gateway(docker_client, spec, f"ex-{name}", logs, *args, env=env) as gateway:
        gateway.backend = backend
        yield gateway


@pytest.fixture
def client(examples: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=examples.url, timeout=30, trust_env=False) as client:
        yield client


def test_hello_through_function_url(client: httpx.Client) -> None:
    response = client.get("/function/hello")
    assert response.status_code == 200, response.text
    assert response.text == "Hello, world!\n"
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.headers["x-call-id"]) == 32


def test_hello_through_declared_route_with_query(client: httpx.Client) -> None:
    response = client.get("/hello", params={"name": "Ada"})
    assert response.status_code == 200, response.text
    assert response.text == "Hello, Ada!\n"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_echo_every_declared_method(client: httpx.Client, method: str) -> None:
    response = client.request(method, "/echo", json={"n": 1, "s": "x"}, params={"q": "1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == method
    assert body["json"] == {"n": 1, "s": "x"}
    assert body["query"] == {"q": "1"}
    assert body["path"] == "/echo"
    assert body["call_id"] == response.headers["x-call-id"]


def test_function_url_passes_the_sub_path(client: httpx.Client) -> None:
    response = client.post("/function/echo/a/b", content=b"[1, 2]")
    assert response.json()["path"] == "/a/b"
    assert response.json()["json"] == [1, 2]


def test_openfaas_style_status_code(client: httpx.Client) -> None:
    response = client.post("/echo", content=b"not json")
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not valid JSON"}


def test_undeclared_method_is_405_with_allow(client: httpx.Client) -> None:
    response = client.delete("/echo")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, PUT"
    assert "not allowed" in response.json()["error"]


def test_unknown_function_is_404(client: httpx.Client) -> None:
    response = client.get("/function/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
    assert client.get("/no/such/route").status_code == 404


def test_async_handler(client: httpx.Client) -> None:
    response = client.get("/countdown", params={"ms": "20"})
    assert response.status_code == 200, response.text
    assert response.json()["slept_ms"] == 20


def test_function_with_pypi_requirement(client: httpx.Client) -> None:
    response = client.get("/sizes", params={"bytes": "3000000"})
    assert response.status_code == 200, response.text
    assert response.text == "2.9 MiB\n"


def test_internal_headers_from_callers_are_stripped(examples: Gateway) -> None:
    # A forged token header must neither reach the function nor replace the real one.
    with httpx.Client(base_url=examples.url, timeout=30, trust_env=False) as client:
        response = client.get(
            "/function/hello", headers={"X-Faas-Token": "forged", "X-Faas-Call-Id": "forged"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-call-id"] != "forged"


def test_large_body_streams_through(client: httpx.Client) -> None:
    payload = json.dumps({"blob": "x" * 500_000}).encode()
    response = client.post("/echo", content=payload)
    assert response.status_code == 200, response.text
    assert len(response.json()["json"]["blob"]) == 500_000


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    response = client.post("/echo", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert "limit" in response.json()["error"]

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 65536

    response = client.post("/echo", content=chunks())
    assert response.status_code == 413


def test_system_functions_and_ls(examples: Gateway, client: httpx.Client) -> None:
    client.get("/hello")
    assert client.get("/system/functions").status_code == 404  # the admin listener's only
    assert httpx.get(examples.admin_url + "/system/functions", trust_env=False).status_code == 401
    listed = {f["name"]: f for f in examples.admin_get("/system/functions").json()["functions"]}
    assert set(listed) == {"hello", "echo", "countdown", "sizes", "audit", "digest"}
    assert listed["hello"]["state"] == "ready"
    assert listed["hello"]["replicas"] == 1
    result = examples.cli("ls", "--json")
    assert result.returncode == 0, result.stderr
    rows = {f["name"]: f for f in json.loads(result.stdout)["functions"]}
    assert rows["hello"]["state"] == "ready"
    table = examples.cli("ls")
    assert "hello" in table.stdout and "ready" in table.stdout


def test_invoke_cli(examples: Gateway) -> None:
    result = examples.cli("invoke", "hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world!\n"
    result = examples.cli("invoke", "echo", "--data", '{"a": 1}')
    assert json.loads(result.stdout)["json"] == {"a": 1}
    result = examples.cli("invoke", "nope")
    assert result.returncode == 1


def test_replicas_are_labelled_and_hardened(
    where: Target | None,
    examples: Gateway,
    client: httpx.Client,
    docker_client: docker.DockerClient,
) -> None:
    client.get("/hello")
    _containers, networks = project_resources(docker_client, examples.project)
    if examples.backend == "swarm":  # an overlay network per function, and the warm services'
        functions = ["audit", "countdown", "digest", "echo", "hello", "sizes", "warm"]
        assert sorted(networks) == [f"faas-{examples.project}-{f}" for f in functions]
    else:
        assert networks == [f"faas-{examples.project}"]
    hello = running_replicas(docker_client, examples.project, "hello") or claimed_warm_tasks(
        docker_client, examples, "hello"
    )
    assert len(hello) == 1
    config = docker_client.api.inspect_container(hello[0]["Id"])
    host = config["HostConfig"]
    environment = dict(item.split("=", 1) for item in config["Config"]["Env"])
    if config["Config"]["Labels"].get("faas.role") == "warm":
        # a warm watchdog starts as root and becomes the replica user before the import
        assert (config["Config"]["User"], environment["FAAS_RUN_AS"]) == ("0:0", "10001:10001")
    else:
        assert config["Config"]["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert drops_every_capability(host["CapDrop"])
    if examples.backend == "docker":  # Swarm services cannot set it before API 1.46
        assert "no-new-privileges" in host["SecurityOpt"]
    if where is None or where.limits_in_inspect:
        assert host["Memory"] == 128 * 1024 * 1024
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] > 0
    published = [b for bindings in (host["PortBindings"] or {}).values() for b in bindings]
    # nothing published, or only on loopback (engines the host cannot route to)
    assert all(binding["HostIp"] == "127.0.0.1" for binding in published)


def test_example_event_consumer_and_async_call(examples: Gateway, client: httpx.Client) -> None:
    published = client.post("/events/orders.created", json={"id": 42})
    assert published.status_code == 202, published.text
    assert published.json()["subscribers"] == ["audit"]
    assert client.get("/function/audit").status_code == 404  # private: only its topics

    def delivered() -> bool:
        queue = examples.admin_get("/system/queue").json()["functions"]
        return bool(queue["audit"].get("done") == 1)

    deadline = time.monotonic() + 30
    while not delivered():
        assert time.monotonic() < deadline, "the example event was not delivered"
        time.sleep(0.1)
    accepted = client.post("/async-function/echo", json={"later": True})
    assert accepted.status_code == 202, accepted.text
    call = f"/system/calls/{accepted.json()['call_id']}"
    while examples.admin_get(call).json()["status"] != "succeeded":
        assert time.monotonic() < deadline + 30, "the example async call did not finish"
        time.sleep(0.1)
    assert json.loads(examples.admin_get(call).json()["result"]["body"])["json"] == {"later": True}
