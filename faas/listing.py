"""The tables `faas ls` prints: the functions, then the warm pools, fitted to the terminal.

At 100 columns or more each table has all its columns; narrower, a compact layout
keeps every line within the width: fewer, shorter columns, no frame, routes as paths,
and errors below the table rather than in a column.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

WIDE = 100
"""From this many columns on, the full tables."""

STATE_COLOURS = {"ready": "green", "failed": "red", "down": "dim"}


def functions_table(rows: list[dict[str, Any]], title: str, width: int) -> RenderableType:
    """The functions, with their state, replicas, load, last cold start and routes."""
    wide = width >= WIDE
    table = Table(title=title, box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD)
    if wide:
        columns = ("FUNCTION", "STATE", "READY", "STARTING", "QUEUE", "IN FLIGHT", "COLD START")
        for column in (*columns, "ROUTES", "ERROR"):
            table.add_column(column, overflow="fold")
    else:
        for column in ("FUNCTION", "STATE", "READY", "QUEUE", "BUSY", "COLD"):
            table.add_column(column, no_wrap=True)
        table.add_column("ROUTES", overflow="fold", ratio=1)
    errors: list[Text] = []
    for row in rows:
        colour = STATE_COLOURS.get(row["state"], "yellow")
        state = f"[{colour}]{row['state']}[/]"
        if row.get("debug"):  # the debugger's port on 127.0.0.1 (faas up --debug)
            state += f"\ndebug {row['debug']}"
        cold = row.get("last_cold_start_ms")
        cold_text = f"{cold:.0f} ms" if cold else "-"
        error = row.get("error") or row.get("reload_error") or ""
        if wide:
            routes = ", ".join(f"{' '.join(r['methods'])} {r['path']}" for r in row["routes"])
            table.add_row(
                row["name"],
                state,
                str(row["replicas"]),
                str(row.get("starting", 0)),
                str(row.get("queue_depth", 0)),
                str(row.get("in_flight", 0)),
                cold_text,
                routes or "-",
                error,
            )
            continue
        starting = row.get("starting", 0)
        ready = f"{row['replicas']}+{starting}" if starting else str(row["replicas"])
        paths = ", ".join(dict.fromkeys(r["path"] for r in row["routes"]))
        table.add_row(
            row["name"],
            state,
            ready,
            str(row.get("queue_depth", 0)),
            str(row.get("in_flight", 0)),
            cold_text,
            paths or "-",
        )
        if error:
            errors.append(Text.assemble((f"{row['name']}: ", "bold red"), error))
    return Group(table, *errors) if errors else table


def warm_table(warm: dict[str, Any], width: int) -> Table:
    """The warm pools: what each holds and for whom."""
    total, budget = mib(warm["memory"]), mib(warm["memory_budget"])
    wide = width >= WIDE
    title = f"warm pools ({total} of {budget}, at most {warm['maximum']} each)"
    if not warm["memory_budget"]:  # a service backend's warm services (Swarm)
        title = f"warm services ({warm['maximum']} tasks each; ready: claimable now)"
    table = Table(title=title, box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD)
    columns = ["POOL", "READY", "KEEPS", "MEMORY", "PRELOADS", "FUNCTIONS"]
    if not wide:
        columns.remove("PRELOADS")
    for column in columns:
        table.add_column(column, overflow="fold")
    for pool in warm["pools"]:
        cells = [
            pool["pool"],
            str(pool["ready"]),
            str(pool["target"]),
            mib(pool["memory"]) if pool["per_watchdog"] else "-",
            ", ".join(pool["preload"]) or "-",
            ", ".join(pool["functions"]) or "-",
        ]
        if not wide:
            del cells[4]
        table.add_row(*cells)
    return table


def mib(count: int) -> str:
    return f"{count / (1024 * 1024):.0f} MiB"
