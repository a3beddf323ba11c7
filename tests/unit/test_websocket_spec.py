"""`websocket:` and `max_message_size` in functions.yaml, and replicas leaving service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runtime.spec import MiB, load_project
from tests.unit.test_pool import pool_with
from tests.unit.test_spec import assert_one_problem, load, problems_of, with_function
from tests.unit.test_spec_hostile import handler_errors, project_with


def test_websocket_defaults_off_with_a_one_mib_limit() -> None:
    hello = load(with_function()).functions["hello"]
    assert (hello.websocket, hello.max_message_size) == (False, MiB)
    on = load(with_function("websocket: true", "max_message_size: 64KiB")).functions["hello"]
    assert (on.websocket, on.max_message_size) == (True, 64 * 1024)


def test_bad_values_are_named_with_their_line() -> None:
    assert_one_problem(
        problems_of(with_function("websocket: yes please")),
        5,
        "functions.hello.websocket",
        "expected true or false",
    )
    assert_one_problem(
        problems_of(with_function("max_message_size: 17MiB")),
        5,
        "functions.hello.max_message_size",
        "expected a size up to 16MiB",
    )


def test_a_module_without_handle_websocket_is_refused_on_the_websocket_line(
    tmp_path: Path,
) -> None:
    spec = project_with(
        tmp_path,
        {"h.py": "def handle(e, c):\n    pass\n"},
        "fn: {handler: h.py, websocket: true}",
    )
    (problem,) = handler_errors(spec)
    assert (problem.line, problem.field) == (3, "functions.fn.websocket")
    assert "handle_websocket" in problem.message
    ok = project_with(
        tmp_path / "ok",
        {"h.py": "def handle(e, c):\n    pass\n\nasync def handle_websocket(ws, c):\n    pass\n"},
        "fn: {handler: h.py, websocket: true}",
    )
    assert load_project(ok, check_handlers=True).functions["fn"].websocket


def test_a_replica_taken_out_of_service_or_closed_tells_its_sockets(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 2)
        first, second = pool.replicas
        assert not first.leaving.is_set() and not second.leaving.is_set()
        pool.take_out(first)
        assert first.leaving.is_set() and not second.leaving.is_set()
        pool.close()
        assert second.leaving.is_set()

    asyncio.run(main())


def test_the_gateways_message_limit_is_the_largest_of_its_websocket_functions() -> None:
    from faas.serve import largest_message

    assert largest_message(load(with_function())) == MiB  # no websocket function
    assert largest_message(load(with_function("max_message_size: 8MiB"))) == MiB
    sockets = load(with_function("websocket: true", "max_message_size: 8MiB"))
    assert largest_message(sockets) == 8 * MiB
