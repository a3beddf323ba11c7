"""Hot reload in development: saved changes go live without a failed request."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import (
    REPO,
    Gateway,
    project_resources,
    running_gateway,
    running_replicas,
    wait_for,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "functions", root / "functions")
    shutil.copy(REPO / "functions.yaml", root / "functions.yaml")
    return root


@pytest.fixture
def dev(docker_client: docker.DockerClient, project: Path, tmp_path: Path) -> Iterator[Gateway]:
    with running_gateway(docker_client, project / "functions.yaml", "reload", tmp_path) as gateway:
        yield gateway


def save(path: Path, text: str) -> None:
    """Write the way editors do: a new file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    temporary.replace(path)


def test_edit_under_load_fails_no_request(dev: Gateway, project: Path) -> None:
    handler = project / "functions" / "hello.py"
    with httpx.Client(base_url=dev.url, timeout=30, trust_env=False) as client:
        assert client.get("/hello").text == "Hello, world!\n"
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=dev.url, timeout=30, trust_env=False) as client:
            while not stop.is_set():
                response = client.get("/hello")
                answers.append((response.status_code, response.text))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        save(handler, handler.read_text().replace("Hello,", "Howdy,"))
        wait_for(lambda: answers and answers[-1][1] == "Howdy, world!\n", 10, "the new code")
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    assert {status for status, _ in answers} == {200}, "a request failed during the reload"
    texts = [text for _, text in answers]
    assert set(texts) == {"Hello, world!\n", "Howdy, world!\n"}
    assert len(answers) > 50
    assert "reloaded hello" in dev.log()


def test_broken_code_keeps_the_old_version_serving(dev: Gateway, project: Path) -> None:
    handler = project / "functions" / "hello.py"
    good = handler.read_text()
    with httpx.Client(base_url=dev.url, timeout=30, trust_env=False) as client:
        assert client.get("/hello").status_code == 200
        save(handler, good + "\ndef broken(:\n    pass\n")
        wait_for(lambda: "failed to load" in dev.log(), 10, "the reload error")
        assert client.get("/hello").text == "Hello, world!\n"
        listed = {f["name"]: f for f in json.loads(dev.cli("ls", "--json").stdout)["functions"]}
        broken_line = len(good.splitlines()) + 2  # after the blank line appended
        assert f"hello.py:{broken_line}" in listed["hello"]["reload_error"]
        assert "SyntaxError" in listed["hello"]["reload_error"]
        save(handler, good.replace("Hello,", "Fixed,"))
        wait_for(lambda: client.get("/hello").text == "Fixed, world!\n", 10, "the fixed code")
        listed = {f["name"]: f for f in json.loads(dev.cli("ls", "--json").stdout)["functions"]}
        assert listed["hello"]["reload_error"] is None


def test_functions_yaml_add_remove_and_invalid(
    dev: Gateway, project: Path, docker_client: docker.DockerClient
) -> None:
    spec = project / "functions.yaml"
    original = spec.read_text()
    with httpx.Client(base_url=dev.url, timeout=30, trust_env=False) as client:
        assert client.get("/hello").status_code == 200
        echo_before = client.post("/echo", json={"a": 1})
        assert echo_before.status_code == 200
        echo_container = {c["Id"] for c in running_replicas(docker_client, dev.project, "echo")}

        added = original + (
            "\n  greeter:\n    handler: functions/hello.py\n"
            "    http:\n      - path: /greet\n        methods: [GET]\n"
        )
        save(spec, added)
        wait_for(lambda: client.get("/greet").status_code == 200, 20, "the added function")
        assert client.get("/greet").text == "Hello, world!\n"

        save(spec, added + "  broken: [\n")
        wait_for(lambda: "last valid configuration keeps serving" in dev.log(), 10, "the error")
        assert f"{spec}:" in dev.log()
        assert client.get("/greet").status_code == 200

        save(spec, original)
        wait_for(lambda: client.get("/greet").status_code == 404, 20, "the removed function")
        wait_for(
            lambda: (
                not [
                    c for c in project_resources(docker_client, dev.project)[0] if "-greeter-" in c
                ]
            ),
            20,
            "the removed function's containers to go",
        )
        # the untouched function kept its container
        still = {c["Id"] for c in running_replicas(docker_client, dev.project, "echo")}
        assert still == echo_container
