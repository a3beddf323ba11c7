"""Mistakes in what functions.yaml points at stop `faas up` with exit 2 before anything starts.

The engine is needed only to show that nothing was made: no container, no
network labelled with the project. The reload case runs a real gateway.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import (
    REPO,
    Gateway,
    free_port,
    left_behind,
    run_cli,
    running_gateway,
    unique_project,
    wait_for,
)

pytestmark = pytest.mark.docker

MEMORY_LIMIT = 2 * 1024**3
"""Address space for each `faas up`: were the alias bomb expanded, it would die here, not swap."""

HELLO = "def handle(event, context):\n    return 'hi'\n"
LAUGHS = "\n".join(
    ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in pairwise("abcdefghi")]
    + ["functions:", "  hello: {handler: functions/hello.py}", ""]
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def faas(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faas", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**(environ or os.environ), "NO_COLOR": "1", "COLUMNS": "300"},
        preexec_fn=_limit_memory,
    )


def project(root: Path, spec: str, handlers: dict[str, str]) -> Path:
    for name, source in handlers.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    (root / "functions.yaml").write_text(spec)
    return root / "functions.yaml"


SPEC = "version: 1\ndefaults:\n  auth: none\nfunctions:\n  hello:\n    handler: {handler}\n"
"""The handler is on line 6."""

MISTAKES = {
    "alias bomb": (
        LAUGHS,
        {"functions/hello.py": HELLO},
        [":2: found anchor '&a': YAML anchors and aliases are not supported; write the value out"],
    ),
    "missing handler file": (
        SPEC.format(handler="functions/helo.py"),
        {"functions/hello.py": HELLO},
        [
            ":6: functions.hello.handler: handler file functions/helo.py does not exist",
            "did you mean functions/hello.py?",
        ],
    ),
    "syntax error": (
        SPEC.format(handler="functions/hello.py"),
        {"functions/hello.py": "import json\n\ndef handle(event, context:\n    return 1\n"},
        [":6: functions.hello.handler: functions/hello.py:3: "],
    ),
    "missing handler function": (
        SPEC.format(handler="functions/hello.py:nosuchfunc"),
        {"functions/hello.py": HELLO},
        [":6: functions.hello.handler: functions/hello.py has no top-level function 'nosuchfunc'"],
    ),
    "secret without a value": (
        SPEC.format(handler="functions/hello.py") + "    secrets: [nowhere-set]\n",
        {"functions/hello.py": HELLO},
        [
            ":7: functions.hello.secrets[0]: secret 'nowhere-set' has no value; set it with "
            "`faas secrets set nowhere-set` or the environment variable FAAS_SECRET_NOWHERE_SET"
        ],
    ),
    "unset variable": (
        SPEC.format(handler="functions/hello.py")
        + "    environment:\n      DB_HOST: ${NOWHERE_SET_DB_HOST}\n",
        {"functions/hello.py": HELLO, ".env": "# NOWHERE_SET_DB_HOST is not here either\nA=1\n"},
        [
            ":8: functions.hello.environment.DB_HOST: environment variable NOWHERE_SET_DB_HOST "
            "is not set (in the environment or .env)"
        ],
    ),
    "malformed placeholder": (
        SPEC.format(handler="functions/hello.py") + "    timeout: ${TIMEOUT:-30s\n",
        {"functions/hello.py": HELLO},
        [":7: functions.hello.timeout: '${' at character 1 is not closed by '}'"],
    ),
}


@pytest.mark.parametrize(("spec", "handlers", "expected"), MISTAKES.values(), ids=MISTAKES.keys())
def test_faas_up_exits_2_and_starts_nothing(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    spec: str,
    handlers: dict[str, str],
    expected: list[str],
) -> None:
    spec_file = project(tmp_path, spec, handlers)
    name = unique_project("config")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_SECRET_")}
    args = ("up", "-f", str(spec_file), "--project", name, "--port", str(free_port()))
    result = faas(*args, environ=environ)
    assert result.returncode == 2, result.stdout + result.stderr
    for fragment in expected:
        assert fragment in result.stderr, result.stderr
    assert f"{spec_file}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert left_behind(docker_client, name) == ([], [])
    assert not (tmp_path / ".faas" / f"gateway-{name}.json").exists()


def test_a_secret_set_in_the_environment_counts(tmp_path: Path) -> None:
    """The check reads the store and FAAS_SECRET_*; with a value the next mistake shows."""
    spec = SPEC.format(handler="functions/gone.py") + "    secrets: [db-password]\n"
    spec_file = project(tmp_path, spec, {})
    environ = {**os.environ, "FAAS_SECRET_DB_PASSWORD": "set"}
    result = faas("up", "-f", str(spec_file), "--port", str(free_port()), environ=environ)
    assert result.returncode == 2
    assert "has no value" not in result.stderr
    assert "functions/gone.py does not exist" in result.stderr


def test_faas_build_checks_handlers_but_needs_no_secret_values(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    spec = SPEC.format(handler="functions/hello.py:main") + "    secrets: [nowhere-set]\n"
    spec_file = project(tmp_path, spec, {"functions/hello.py": HELLO})
    name = unique_project("config")
    result = faas("build", "-f", str(spec_file), "--project", name)
    assert result.returncode == 2
    assert f"{spec_file}:6: functions.hello.handler: " in result.stderr
    assert "has no value" not in result.stderr
    assert left_behind(docker_client, name) == ([], [])


@pytest.fixture
def dev(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Gateway]:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "functions", root / "functions")
    shutil.copy(REPO / "functions.yaml", root / "functions.yaml")
    with running_gateway(docker_client, root / "functions.yaml", "config", tmp_path) as gateway:
        yield gateway


def save(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    temporary.replace(path)


def test_a_reload_with_a_bad_handler_keeps_the_last_valid_spec_serving(dev: Gateway) -> None:
    spec = dev.spec_file
    original = spec.read_text()
    route = "    http:\n      - path: /greet\n        methods: [GET]\n"
    with httpx.Client(base_url=dev.url, timeout=30, trust_env=False) as client:
        assert client.get("/hello").status_code == 200
        line = len(original.splitlines()) + 3
        save(spec, original + "\n  greeter:\n    handler: functions/hello.py:greet\n" + route)
        wait_for(lambda: "last valid configuration keeps serving" in dev.log(), 20, "the error")
        assert f"{spec}:{line}: functions.greeter.handler: " in dev.log()
        assert "has no top-level function 'greet'" in dev.log()
        assert client.get("/greet").status_code == 404
        assert client.get("/hello").status_code == 200

        save(spec, original + "\n  greeter:\n    handler: functions/hello.py\n" + route)
        wait_for(lambda: client.get("/greet").status_code == 200, 20, "the fixed function")


def test_a_saved_dotenv_is_applied_like_a_saved_functions_yaml(dev: Gateway) -> None:
    """The placeholders of functions.yaml read .env, so saving .env reconciles too."""
    spec = dev.spec_file
    dotenv = spec.with_name(".env")
    route = "    http:\n      - path: ${GREET_PATH:-/greet}\n        methods: [GET]\n"
    with httpx.Client(base_url=dev.url, timeout=30, trust_env=False) as client:
        save(spec, spec.read_text() + "\n  greeter:\n    handler: functions/hello.py\n" + route)
        wait_for(lambda: client.get("/greet").status_code == 200, 20, "the default path")
        save(dotenv, "GREET_PATH=/welcome\n")
        wait_for(lambda: client.get("/welcome").status_code == 200, 20, "the path from .env")
        assert client.get("/greet").status_code == 404
        save(dotenv, "GREET_PATH=/welcome\nbroken line\n")
        wait_for(lambda: f"{dotenv}:2: expected KEY=VALUE" in dev.log(), 20, "the .env error")
        assert client.get("/welcome").status_code == 200


def test_an_isolation_the_engine_cannot_give_exits_2_naming_the_function() -> None:
    result = run_cli(
        "up", "-f", str(REPO / "functions.yaml"), "--isolation", "gvisor", "--backend", "swarm",
        "--port", str(free_port()), "--admin-port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "function hello: isolation: gvisor runs on the docker backend only" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_engine_at_the_address_exits_3_saying_what_to_start(tmp_path: Path) -> None:
    env = {"CONTAINER_HOST": f"unix://{tmp_path}/podman.sock"}
    result = run_cli(
        "up", "-f", str(REPO / "functions.yaml"), "--engine", "podman",
        "--port", str(free_port()), "--admin-port", str(free_port()), env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert f"no Podman API answers at unix://{tmp_path}/podman.sock" in result.stderr
    assert "podman system service" in result.stderr
    assert "Traceback" not in result.stderr
