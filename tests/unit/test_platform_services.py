"""Making a function's service: a refused write is tried again before the function fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtime.backends.base import ImageRequest, ReplicaSpec, Task
from runtime.errors import EngineUnavailable
from runtime.platform import Platform
from runtime.spec import load_project_text
from runtime.supply import services as services_module

SPEC = """\
version: 1
project: demo
functions:
  hello:
    handler: functions/hello.py
"""


class FlakyServices:
    """Just the service verbs the service supply calls here; the first `failures` writes
    are refused."""

    project = "demo"
    kind = "services"
    scales_itself = False

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def ensure_service(self, spec: ReplicaSpec) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise EngineUnavailable("rpc error: update out of sequence")

    async def set_replicas(self, function: str, count: int) -> None: ...

    async def tasks(self) -> list[Task]:
        return []


def prepared(failures: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[
    FlakyServices, str | None
]:  # fmt: skip
    monkeypatch.setattr(services_module, "SERVICE_RETRY_DELAY", 0.0)
    project = load_project_text(SPEC, filename="functions.yaml", root=tmp_path)
    backend = FlakyServices(failures)
    platform = Platform(project, backend)  # type: ignore[arg-type]
    pool = platform.pools["hello"]
    platform._built(pool, ImageRequest("hello", "faas-function:test", b""))
    asyncio.run(platform.supply.prepare(pool))
    return backend, pool.error


def test_a_refused_write_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend, error = prepared(2, tmp_path, monkeypatch)
    assert backend.calls == 3
    assert error is None


def test_the_function_fails_once_every_attempt_was_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, error = prepared(5, tmp_path, monkeypatch)
    assert backend.calls == services_module.SERVICE_ATTEMPTS
    assert error is not None and "out of sequence" in error
