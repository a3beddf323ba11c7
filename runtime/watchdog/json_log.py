"""Structured logs: one JSON object per line on stderr, for the watchdog and the handler."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger("faas.watchdog")

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


MIN_SECRET = 6
"""Shorter secret values are not masked (they would garble ordinary text)."""


def secret_mask(directory: str) -> Callable[[str], str] | None:
    """Masks the function's secret values (the files in `directory`) in a log line.

    The gateway masks every line it reads from a replica already; this keeps them
    out of the engine's own copy of the log (`docker logs`) too, for what goes
    through `logging`: an import failure, a handler's traceback. None: no secrets.
    """
    values: set[str] = set()
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in names:
        try:
            with open(os.path.join(directory, name), "rb") as file:
                text = file.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            continue
        for value in (text, text.strip()):
            if len(value) >= MIN_SECRET:
                values |= {value, json.dumps(value, ensure_ascii=False)[1:-1]}
    if not values:
        return None
    pattern = re.compile("|".join(map(re.escape, sorted(values, key=len, reverse=True))))
    return lambda line: pattern.sub("***", line)


class JsonFormatter(logging.Formatter):
    def __init__(self, function_name: str, mask: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.function_name = function_name
        self.mask = mask

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
        line = json.dumps(entry, ensure_ascii=False, default=repr)
        return line if self.mask is None else self.mask(line)


def setup_logging(
    function_name: str,
    level: str = "INFO",
    stream: TextIO | None = None,
    secrets_dir: str | None = None,
) -> None:
    """Send every logger through the JSON formatter (user code that calls `logging` too)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    mask = secret_mask(secrets_dir) if secrets_dir else None
    handler.setFormatter(JsonFormatter(function_name, mask))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
