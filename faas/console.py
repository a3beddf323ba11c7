"""Progress for long operations: bars on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

log = logging.getLogger("faas.progress")


class ProgressDisplay:
    """Receives (task, message, fraction) from any thread; see runtime.platform.FunctionProgress."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._interactive = self._console.is_terminal and sys.stderr.isatty()
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._last_message: dict[str, str] = {}
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[name]:<12}"),
            BarColumn(bar_width=24),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=False,
        )
        self._title = title

    def __enter__(self) -> ProgressDisplay:
        if self._interactive:
            self._console.print(f"[bold]{self._title}")
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._interactive:
            self._progress.stop()

    def __call__(self, task: str, message: str, fraction: float | None) -> None:
        with self._lock:
            if not self._interactive:
                if self._last_message.get(task) != message and (fraction in (None, 0.0, 1.0)):
                    log.info(message, extra={"task": task})
                self._last_message[task] = message
                return
            if task not in self._tasks:
                self._tasks[task] = self._progress.add_task(message, name=task, total=1.0)
            task_id = self._tasks[task]
            if fraction is None:
                self._progress.update(task_id, description=message)
            else:
                self._progress.update(task_id, description=message, completed=fraction)
