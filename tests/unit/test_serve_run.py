from __future__ import annotations

import asyncio

import pytest

from faas.serve import run


def test_run_serves_on_uvloop_when_installed() -> None:
    loops: list[str] = []

    async def main() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    run(main())
    assert loops[0].startswith("uvloop")


def test_asyncio_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAAS_EVENT_LOOP", "asyncio")
    loops: list[str] = []

    async def main() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    run(main())
    assert loops[0].startswith("asyncio")
