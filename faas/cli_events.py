"""`faas publish` and `faas dlq`: durable work through the gateway or its queue file."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from faas import state
from faas.cli_common import (
    EXIT_FAILED,
    EXIT_INVALID,
    F,
    admin_api,
    console,
    errors,
    fail,
    file_option,
    load,
    project_option,
    read_data,
    running_gateway,
)
from runtime.errors import FaasError
from runtime.spec import Project

# -- durable work (issue 5): faas publish, faas dlq ------------------------------------------


@click.command()
@click.argument("topic")
@click.argument("data", required=False)
@file_option
@project_option
@click.option("-d", "--data", "data_option", default=None, help="The body; @FILE or - (stdin).")
@click.option(
    "-t",
    "--content-type",
    default=None,
    help="[default: application/json when the data parses as JSON, else text/plain]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the gateway's answer as JSON.")
def publish(
    topic: str,
    data: str | None,
    spec_file: Path,
    project: str | None,
    data_option: str | None,
    content_type: str | None,
    as_json: bool,
) -> None:
    """Publish an event to TOPIC; every subscribed function gets it, at least once.

    The gateway stores the event before it answers. Prints the event id.

    \b
    Examples:
      faas publish orders.created '{"order": 42}'
      faas publish orders.created --data @order.json
      echo hello | faas publish chat.message --data - -t text/plain
    """
    loaded = load(spec_file, project)
    running = running_gateway(loaded)
    if data is not None and data_option is not None:
        fail("give the data once: as an argument or with --data", EXIT_INVALID)
    body = read_data(data_option if data_option is not None else data) or b""
    kind = content_type or _guess_content_type(body)
    path = "/events/" + urllib.parse.quote(topic, safe="")
    answer = admin_api(loaded, running, "POST", path, content=body, headers={"content-type": kind})
    if as_json:
        click.echo(json.dumps(answer))
        return
    to = ", ".join(answer["subscribers"]) or "no subscriber (nothing stored)"
    errors.print(f"published to {topic}: {to}", highlight=False)
    click.echo(answer["event_id"])


@click.group()
def dlq() -> None:
    """Dead letters: deliveries that failed every attempt (or with a status not retried).

    Through the running gateway's admin API, or the queue file when none runs.

    \b
    Examples:
      faas dlq ls
      faas dlq ls --function mailer --json
      faas dlq replay 12 13        # pending again, attempts from 1
      faas dlq replay --all --function mailer
      faas dlq drop 12
    """


@dlq.command(name="ls")
@file_option
@project_option
@click.option("--function", default=None, help="Only this function's dead letters.")
@click.option("--json", "as_json", is_flag=True)
def dlq_ls(spec_file: Path, project: str | None, function: str | None, as_json: bool) -> None:
    """List dead letters, oldest first."""
    loaded = load(spec_file, project)
    letters = _dead_letters(loaded, function)
    if as_json:
        click.echo(json.dumps({"dead_letters": letters}, indent=2))
        return
    table = Table(title=f"dead letters of project {loaded.name}")
    for column in ("ID", "FUNCTION", "KIND", "TOPIC", "ATTEMPTS", "STATUS", "FAILED", "ERROR"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        failed = letter["failed_at"]
        table.add_row(
            str(letter["id"]),
            letter["function"],
            letter["kind"],
            letter["topic"] or "-",
            str(letter["attempts"]),
            str(letter["status"] or "-"),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(failed)) if failed else "-",
            letter["error"] or "",
        )
    console.print(table)


def _selection(command: F) -> F:
    """The dead letters a `replay` or `drop` acts on: ids, or --all [--function]."""
    for option in reversed(
        (
            click.argument("ids", nargs=-1, type=int),
            file_option,
            project_option,
            click.option(
                "--all", "everything", is_flag=True, help="Every dead letter (of --function)."
            ),
            click.option("--function", default=None, help="With --all: only this function's."),
        )
    ):
        command = option(command)
    return command


@dlq.command(name="replay")
@_selection
def dlq_replay(
    ids: tuple[int, ...],
    spec_file: Path,
    project: str | None,
    everything: bool,
    function: str | None,
) -> None:
    """Deliver dead letters again, their attempts counted from 1."""
    _dlq_act(spec_file, project, ids, everything, function, replay=True)


@dlq.command(name="drop")
@_selection
def dlq_drop(
    ids: tuple[int, ...],
    spec_file: Path,
    project: str | None,
    everything: bool,
    function: str | None,
) -> None:
    """Forget dead letters for good."""
    _dlq_act(spec_file, project, ids, everything, function, replay=False)


def _dead_letters(loaded: Project, function: str | None) -> list[dict[str, Any]]:
    running = state.read(loaded.root, loaded.name)
    if running is None:
        from faas import dlq as offline

        try:
            return offline.dead_letters(loaded.root, loaded.name, function)
        except FaasError as exc:
            fail(str(exc), EXIT_FAILED)
    query = "?" + urllib.parse.urlencode({"function": function}) if function else ""
    letters: list[dict[str, Any]] = admin_api(loaded, running, "GET", "/system/dlq" + query)[
        "dead_letters"
    ]
    return letters


def _dlq_act(
    spec_file: Path,
    project: str | None,
    ids: tuple[int, ...],
    everything: bool,
    function: str | None,
    *,
    replay: bool,
) -> None:
    loaded = load(spec_file, project)
    if bool(ids) == everything:
        fail("give dead letter ids, or --all", EXIT_INVALID)
    wanted = [d["id"] for d in _dead_letters(loaded, function)] if everything else list(ids)
    running = state.read(loaded.root, loaded.name)
    done: list[int] = []
    if running is None:
        from faas import dlq as offline

        try:
            act = offline.replay if replay else offline.drop
            done = act(loaded.root, loaded.name, wanted)
        except FaasError as exc:
            fail(str(exc), EXIT_FAILED)
    else:
        for delivery_id in wanted:
            if replay:
                admin_api(loaded, running, "POST", f"/system/dlq/{delivery_id}/replay")
            else:
                admin_api(loaded, running, "DELETE", f"/system/dlq/{delivery_id}")
            done.append(delivery_id)
    missing = sorted(set(wanted) - set(done))
    verb = "replayed" if replay else "dropped"
    errors.print(
        f"{verb} {len(done)} dead letter(s)" + (f" {', '.join(map(str, done))}" if done else "")
    )
    if missing:
        fail(f"no dead letter(s) {', '.join(map(str, missing))}", EXIT_FAILED)


def _guess_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


# -- end durable work --------------------------------------------------------------------------
