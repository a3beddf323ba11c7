"""Whole lines on stdout and stderr, whichever threads print.

Sync handlers run in a thread pool, and `print` writes its text and its newline
in two calls: two handlers printing at once could leave "running Arunning B"
on one line, which the gateway then reads as one log line of the wrong call.
Each thread's text is held until its newline and written as one line.
"""

from __future__ import annotations

import io
import threading
from typing import Any, TextIO


class LineWriter(io.TextIOBase):
    """Wraps a text stream: complete lines of each thread go out whole, flushed."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._lock = threading.Lock()
        self._pending = threading.local()

    def write(self, text: str) -> int:
        held = getattr(self._pending, "text", "") + text
        complete, newline, rest = held.rpartition("\n")
        self._pending.text = rest
        if newline:
            with self._lock:
                self._target.write(complete + newline)
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        """Write what this thread holds (a partial line someone asked to show now)."""
        held = getattr(self._pending, "text", "")
        self._pending.text = ""
        with self._lock:
            if held:
                self._target.write(held)
            self._target.flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return self._target.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._target.encoding

    def __getattr__(self, name: str) -> Any:  # buffer, errors, reconfigure, ...
        return getattr(self._target, name)
