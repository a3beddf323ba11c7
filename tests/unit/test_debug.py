"""Debug mode's pure parts: what it changes in a function, where it is refused, what a
debugged replica is created with, and the loopback port it is relayed from."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from faas.cli import main
from runtime.backends.base import ReplicaSpec
from runtime.backends.docker import containers
from runtime.debug_relay import DebugRelay, bind_debug_port
from runtime.errors import FaasError, SpecError
from runtime.spec import Project, load_project_text
from runtime.spec.debug import DEBUG_TIMEOUT, debug_problems, unknown_functions, with_debug
from runtime.watchdog import wire
from runtime.watchdog.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
DEBUG_PROJECT = REPO / "tests" / "e2e" / "projects" / "debug" / "functions.yaml"

SPEC = """\
version: 1
defaults:
  timeout: 2s
functions:
  hello:
    handler: functions/hello.py
    scale: {min: 0, max: 4}
  marked:
    handler: functions/marked.py
    debug: true
"""


def load(text: str = SPEC) -> Project:
    return load_project_text(textwrap.dedent(text), filename="functions.yaml", root=Path("/p"))


def test_debug_true_means_one_replica_kept_and_no_timeout() -> None:
    project = load()
    marked, hello = project.functions["marked"], project.functions["hello"]
    assert (marked.debug, marked.scale.min, marked.scale.max) == (True, 1, 1)
    assert marked.timeout == DEBUG_TIMEOUT
    assert (hello.debug, hello.scale.min, hello.scale.max, hello.timeout) == (False, 0, 4, 2.0)


def test_the_command_line_debugs_named_functions_and_leaves_the_others() -> None:
    project = with_debug(load(), ["hello"])
    hello = project.functions["hello"]
    assert (hello.debug, hello.scale.min, hello.scale.max) == (True, 1, 1)
    assert hello.timeout == DEBUG_TIMEOUT
    assert project.functions["marked"].debug
    assert unknown_functions(project, ["hello", "nope", "also-not"]) == ["also-not", "nope"]


def test_debug_must_be_a_boolean_and_is_no_default() -> None:
    with pytest.raises(SpecError) as bad:
        load(SPEC.replace("debug: true", "debug: maybe"))
    assert bad.value.problems[0].field == "functions.marked.debug"
    with pytest.raises(SpecError) as in_defaults:
        load(SPEC.replace("  timeout: 2s", "  debug: true"))
    assert in_defaults.value.problems[0].field == "defaults.debug"


def test_where_debugging_is_refused_each_function_is_named_with_its_line() -> None:
    project = with_debug(load(), ["hello"])
    problems = debug_problems(project, "`faas deploy` runs it in the cluster")
    assert [(p.line, p.field) for p in problems] == [(None, ""), (10, "functions.marked.debug")]
    assert str(problems[0]).startswith("/p/functions.yaml: --debug hello: debugging is for")
    assert "`faas deploy` runs it in the cluster" in problems[1].message
    assert debug_problems(load(SPEC.replace("    debug: true\n", "")), "any") == []


def debugged_spec(**changes: object) -> ReplicaSpec:
    return ReplicaSpec(
        function="hello",
        image="faas-function:abc",
        token="t0ken",
        handler_file="functions/hello.py",
        timeout=DEBUG_TIMEOUT,
        debugger="/cache/debugpy",
        **changes,  # type: ignore[arg-type]
    )


def test_a_debugged_replica_mounts_debugpy_read_only_and_has_no_call_timeout() -> None:
    spec = debugged_spec()
    environment = containers.replica_environment(spec)
    assert environment[wire.DEBUG_PORT_ENV] == str(wire.DEBUG_PORT)
    assert float(environment[wire.TIMEOUT_ENV]) == DEBUG_TIMEOUT
    binds = containers.host_config_args(spec, "demo", sandbox="net")["binds"]
    assert binds["/cache/debugpy"] == {"bind": wire.DEBUGGER_DIR, "mode": "ro"}
    plain = ReplicaSpec(function="hello", image="i", token="t")
    assert wire.DEBUG_PORT_ENV not in containers.replica_environment(plain)
    assert wire.TIMEOUT_ENV not in containers.replica_environment(plain)


def test_a_debugged_replica_publishes_its_debugger_on_loopback_only_where_replicas_publish() -> (
    None
):
    published = containers.EngineOptions(published=True)
    spec = debugged_spec()
    host = containers.sandbox_host_config_args("demo", published, debug=True)
    assert host["port_bindings"] == {
        wire.PORT: ("127.0.0.1", None),
        wire.DEBUG_PORT: ("127.0.0.1", None),
    }
    assert containers.sandbox_args(spec, "demo", "n", published)["ports"] == [
        wire.PORT,
        wire.DEBUG_PORT,
    ]
    assert "port_bindings" not in containers.sandbox_host_config_args("demo", debug=True)
    attrs = {"NetworkSettings": {"Ports": {f"{wire.DEBUG_PORT}/tcp": [{"HostPort": "40001"}]}}}
    assert containers.published_address(attrs, wire.DEBUG_PORT) == "127.0.0.1:40001"


def test_the_watchdog_reads_its_debug_port() -> None:
    base = {wire.TOKEN_ENV: "t", wire.HANDLER_FILE_ENV: "h.py"}
    assert load_settings(base).debug_port == 0
    assert load_settings({**base, wire.DEBUG_PORT_ENV: "5678"}).debug_port == 5678
    with pytest.raises(ConfigError, match="FAAS_DEBUG_PORT=70000 is out of range"):
        load_settings({**base, wire.DEBUG_PORT_ENV: "70000"})


def test_the_debug_port_skips_ports_in_use_and_taken() -> None:
    busy = bind_debug_port(0, set())
    first = busy.getsockname()[1]
    try:
        assert busy.getsockname()[0] == "127.0.0.1"
        # `first` is in use, `first + 1` taken by another debugged function
        chosen = bind_debug_port(first, {first + 1})
        try:
            host, port = chosen.getsockname()
            assert host == "127.0.0.1"
            assert port >= first + 2  # the next free one (usually first + 2 itself)
        finally:
            chosen.close()
    finally:
        busy.close()


def test_no_free_debug_port_is_an_error() -> None:
    with pytest.raises(FaasError, match="no free port for a debugger"):
        bind_debug_port(65535, {65535})  # the one port there is, taken


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["up", "--no-reload", "--debug", "paused"], "--no-reload serves the project as in"),
        (["up", "--backend", "swarm"], "the swarm backend runs replicas as services"),
        (["deploy"], "`faas deploy` runs it in the cluster"),
        (["export", "kubernetes"], "an export runs it in a cluster"),
    ],
)
def test_debugging_outside_development_exits_2_before_anything_starts(
    command: list[str], expected: str
) -> None:
    if command[0] == "export":
        arguments = [*command, "-f", str(DEBUG_PROJECT)]
    else:
        arguments = [command[0], "-f", str(DEBUG_PROJECT), *command[1:]]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # as printed, wrapped at the terminal's width
    assert "functions.marked.debug: debugging is for development only" in output
    assert expected in output
    if "--debug" in command:
        assert "--debug paused: debugging is for development only" in output


def test_debugging_a_function_the_project_lacks_exits_2() -> None:
    result = CliRunner().invoke(main, ["up", "-f", str(DEBUG_PROJECT), "--debug", "paused,nope"])
    assert result.exit_code == 2
    assert "has no function named nope" in " ".join(result.output.split())


async def _echo_upstream() -> tuple[asyncio.Server, str, list[asyncio.StreamWriter]]:
    """A stand-in for a replica's debugger: echoes what it reads."""
    accepted: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", accepted


def test_the_relay_reaches_the_ready_replica_and_ends_with_either_side() -> None:
    async def scenario() -> None:
        server, address, accepted = await _echo_upstream()
        target: list[str | None] = [None]
        relay = DebugRelay("hello", lambda: target[0])
        await relay.open(bind_debug_port(0, set()))
        try:
            # no replica ready: the connection is closed at once
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # a replica ready: bytes go both ways
            target[0] = address
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"Content-Length: 2\r\n\r\n{}")
            assert await asyncio.wait_for(reader.readexactly(23), 5) == (
                b"Content-Length: 2\r\n\r\n{}"
            )
            # the replica goes away (replaced): the editor's connection ends too
            accepted[0].close()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # a session open when the relay closes (the function is no longer debugged)
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        finally:
            await asyncio.wait_for(relay.close(), 5)
            server.close()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    asyncio.run(scenario())
