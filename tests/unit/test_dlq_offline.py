"""`faas dlq` with no gateway running: it reads and changes the queue file itself."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from click.testing import CliRunner

from faas.cli import main
from runtime.events.queue import Kind, Message, Result, State
from runtime.events.sqlite import SqliteQueue, queue_path

SPEC = "version: 1\nfunctions:\n  a:\n    handler: a.py\n    events: [x.y]\n"


def dead_letter(root: Path, project: str) -> None:
    async def make() -> None:
        queue = SqliteQueue(queue_path(root / ".faas", project))
        await queue.open(time.time())
        try:
            message = Message("e1", Kind.EVENT, time.time(), body=b"{}", topic="x.y")
            await queue.enqueue(message, ["a"], {"a": 10})
            (delivery,) = await queue.lease("a", 1, time.time(), 30)
            await queue.finish(delivery, State.DEAD, Result(500, error="boom"), time.time())
        finally:
            await queue.close()

    asyncio.run(make())


def faas(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "-f", str(root / "functions.yaml"), "--project", "p"])
    return result.exit_code, result.stdout, result.stderr


def test_ls_replay_and_drop_without_a_gateway(tmp_path: Path) -> None:
    (tmp_path / "functions.yaml").write_text(SPEC)
    assert faas(tmp_path, "dlq", "ls", "--json")[1].strip() == '{\n  "dead_letters": []\n}'
    assert not queue_path(tmp_path / ".faas", "p").exists()  # looking creates nothing

    dead_letter(tmp_path, "p")
    code, out, _ = faas(tmp_path, "dlq", "ls", "--json")
    assert code == 0
    (letter,) = json.loads(out)["dead_letters"]
    assert (letter["function"], letter["status"], letter["error"]) == ("a", 500, "boom")

    code, _, err = faas(tmp_path, "dlq", "replay", str(letter["id"]))
    assert code == 0 and "replayed 1" in err
    assert json.loads(faas(tmp_path, "dlq", "ls", "--json")[1])["dead_letters"] == []
    code, _, err = faas(tmp_path, "dlq", "drop", str(letter["id"]))
    assert code == 1 and "no dead letter" in err

    dead_letter_again = faas(tmp_path, "dlq", "drop", "--all")
    assert dead_letter_again[0] == 0
    code, _, err = faas(tmp_path, "dlq", "replay")
    assert code == 2 and "ids, or --all" in err
