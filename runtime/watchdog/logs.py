"""Structured logs: one JSON object per line on stderr, for the watchdog and the handler."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

log = logging.getLogger("faas.watchdog")

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, function_name: str) -> None:
        super().__init__()
        self.function_name = function_name

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "function": self.function_name,
        }
        if record.name not in ("faas.watchdog", "function"):
            entry["logger"] = record.name
        entry["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=repr)


def setup_logging(function_name: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger through the JSON formatter (user code that calls `logging` too)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(function_name))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
