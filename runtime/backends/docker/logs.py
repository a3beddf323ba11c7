"""Reading a container's output, shared by the docker and swarm backends."""

from __future__ import annotations

import threading
from collections.abc import Callable

import docker.errors
from docker.api.client import APIClient

from runtime.backends.docker.engine import engine_errors


def read_logs(api: APIClient, container_id: str, tail: int) -> str:
    """The last `tail` lines of stdout and stderr; empty when the container is gone."""
    with engine_errors(f"reading logs of {container_id[:12]}"):
        try:
            raw = api.logs(container_id, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return ""
    return bytes(raw).decode("utf-8", "replace")


def follow_logs(api: APIClient, container_id: str, on_line: Callable[[str], None]) -> None:
    """Call `on_line` from a thread of its own with each line, until the container is removed.

    Not an executor thread: a follow lasts as long as the container, and
    teardown must not wait for it.
    """
    thread = threading.Thread(
        target=_follow, args=(api, container_id, on_line), name="logs", daemon=True
    )
    thread.start()


def _follow(api: APIClient, container_id: str, on_line: Callable[[str], None]) -> None:
    pending = b""
    try:
        stream = api.logs(container_id, stream=True, follow=True, stdout=True, stderr=True)
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line:
                    on_line(line.decode("utf-8", "replace"))
    except (docker.errors.DockerException, OSError):
        pass  # the container is gone
    if pending:
        on_line(pending.decode("utf-8", "replace"))
