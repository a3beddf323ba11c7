"""Replica output in the terminal of `faas up`, one colour per function, like docker compose."""

from __future__ import annotations

import time
import zlib

from rich.console import Console
from rich.markup import escape

from runtime.loghub import LogLine

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta")
LEVEL_STYLES = {"warning": "yellow", "error": "bold red", "critical": "bold red"}


class ReplicaPrinter:
    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def __call__(self, line: LogLine) -> None:
        colour = COLOURS[zlib.crc32(line.function.encode()) % len(COLOURS)]
        stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
        prefix = f"[{colour}]{escape(line.replica):<28} |[/]"
        message = escape(line.message)
        style = LEVEL_STYLES.get(line.level)
        if style:
            message = f"[{style}]{message}[/]"
        call = f" [dim]call_id={line.call_id}[/]" if line.call_id else ""
        self._console.print(f"{stamp} {prefix} {message}{call}")
