"""Debug mode: an editor attaches to a function's replica through the port `faas up`
prints, stops a real call at a breakpoint, and the call answers once it continues."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import REPO, Gateway, running_gateway, running_replicas, wait_for
from tests.dap import DapClient, attach

pytestmark = pytest.mark.docker

PROJECT = REPO / "tests" / "e2e" / "projects" / "debug"
HANDLER_IN_REPLICA = "/app/functions/paused.py"
"""Where the handler is inside the replica (the README's `pathMappings` say so too)."""
BREAKPOINT_LINE = 3
WAIT = 20.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    return root


@pytest.fixture(params=["auto", "published"])
def gateway(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    project: Path,
    tmp_path: Path,
) -> Iterator[Gateway]:
    """Replicas dialed at their address here, or at ports published on 127.0.0.1 (as on
    rootless engines): the debugger is relayed from either."""
    spec = project / "functions.yaml"
    extra = (
        *("--debug", "paused", "--debug-port", "0"),  # any free port: tests run side by side
        *("--replica-access", request.param),
    )
    with running_gateway(docker_client, spec, "debug", tmp_path, *extra) as gateway:
        yield gateway


def debug_port(gateway: Gateway, function: str) -> int:
    found = re.search(rf"debug: {function} listening on 127\.0\.0\.1:(\d+) ", gateway.log())
    assert found, f"no debug port printed for {function}:\n{gateway.log()}"
    return int(found.group(1))


class Call(threading.Thread):
    """An HTTP call to the function, in the background, so it can wait at a breakpoint."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(daemon=True)
        self.url = f"{gateway.url}/function/paused"
        self.response: httpx.Response | None = None

    def run(self) -> None:
        self.response = httpx.get(self.url, timeout=60, trust_env=False)


def stop_at_breakpoint_and_continue(client: DapClient, gateway: Gateway, *, hold: float) -> str:
    """Call the function, see it stop at the breakpoint with the call unanswered (for
    `hold` seconds), continue it; the call's answer."""
    call = Call(gateway)
    call.start()
    try:
        stopped = client.event("stopped", WAIT)
        assert stopped["body"]["reason"] == "breakpoint"
        thread = stopped["body"]["threadId"]
        frames = client.call("stackTrace", {"threadId": thread})["body"]["stackFrames"]
        assert (frames[0]["source"]["path"], frames[0]["line"]) == (
            HANDLER_IN_REPLICA,
            BREAKPOINT_LINE,
        )
        call.join(hold)
        assert call.is_alive() and call.response is None, "the call answered while paused"
        client.call("continue", {"threadId": thread})
    finally:
        call.join(WAIT)
    assert call.response is not None, "the call did not answer after continue"
    assert call.response.status_code == 200, call.response.text
    return call.response.text


def test_a_breakpoint_stops_a_call_until_the_debugger_continues(
    gateway: Gateway, project: Path, docker_client: docker.DockerClient
) -> None:
    port = debug_port(gateway, "paused")
    debug_port(gateway, "marked")  # `debug: true` in functions.yaml
    # started at once, before any call: a debugger can attach before the first one
    assert running_replicas(docker_client, gateway.project, "paused")
    breakpoints = {HANDLER_IN_REPLICA: [BREAKPOINT_LINE]}
    client = attach("127.0.0.1", port, breakpoints)
    try:
        # held past the function's 2 s timeout: lifted while debugging, in the gateway
        # and in the watchdog (`timeout_left`: the handler's deadline is far away)
        text = stop_at_breakpoint_and_continue(client, gateway, hold=2.5)
        assert text == '{"timeout_left":true}'
        # a saved change is re-imported in place: the session stays, the breakpoint holds
        handler = project / "functions" / "paused.py"
        saved = handler.with_name(".paused.py.swp")
        saved.write_text(handler.read_text().replace('"timeout_left"', '"reloaded"'))
        saved.replace(handler)
        wait_for(lambda: "reloaded marked, paused" in gateway.log(), WAIT, "the reload")
        text = stop_at_breakpoint_and_continue(client, gateway, hold=0)
        assert text == '{"reloaded":true}'
        client.call("disconnect", {"terminateDebuggee": False})
    finally:
        client.close()
    # and a debugger can attach again, to the same port
    client = attach("127.0.0.1", port, breakpoints)
    try:
        assert stop_at_breakpoint_and_continue(client, gateway, hold=0) == '{"reloaded":true}'
    finally:
        client.close()
    # what a debugged function changes stays with it
    listed = httpx.get(
        f"{gateway.admin_url}/system/functions", headers=gateway.admin_headers, trust_env=False
    ).json()["functions"]
    debug = {row["name"]: row["debug"] for row in listed}
    assert debug == {
        "paused": f"127.0.0.1:{port}",
        "marked": f"127.0.0.1:{debug_port(gateway, 'marked')}",
        "plain": None,
    }
    assert httpx.get(f"{gateway.url}/function/plain", trust_env=False).text == "plain\n"
    (plain,) = running_replicas(docker_client, gateway.project, "plain")
    environment = docker_client.api.inspect_container(plain["Id"])["Config"]["Env"]
    assert not [entry for entry in environment if entry.startswith("FAAS_DEBUG_PORT=")]
    # and it keeps exactly one replica
    refused = httpx.post(
        f"{gateway.admin_url}/system/functions/paused/scale",
        json={"min": 1, "max": 3},
        headers=gateway.admin_headers,
        trust_env=False,
    )
    assert refused.status_code == 400, refused.text
    assert "keeps exactly one replica" in refused.json()["error"]
