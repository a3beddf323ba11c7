"""Secret values out of everything the platform shows: logs, `faas ls`, the admin API.

Function code is trusted with its own secrets but not to keep them out of its
output: a DSN built from `/run/secrets/dbpass` ends up in an exception's text,
a debug `print`, a traceback. The platform knows every secret value, so it
masks them wherever text leaves it, instead of trusting each place that
formats a message.

`Redactor` is pure: built from a set of values, it replaces each value and the
forms it commonly takes in text (URL-quoted as in a DSN, JSON- or
repr-escaped as in a log line or an exception message, base64 as in a Basic
header) with `***`. Values shorter than `MIN_LENGTH` are left alone: masking
every `true` or `8080` would garble the logs and hide nothing worth hiding.
`LiveRedactor` keeps one current, rebuilt when the values it is loaded from
change.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "***"
MIN_LENGTH = 6
CHECK_INTERVAL = 1.0
"""Seconds between looks at the secret store for changed values."""


class Redactor:
    """Masks a fixed set of secret values, and simple encodings of each, in text."""

    def __init__(self, values: Iterable[bytes | str] = (), min_length: int = MIN_LENGTH) -> None:
        forms: set[str] = set()
        for value in values:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            for candidate in _candidates(text):
                if len(candidate) >= min_length:
                    forms.update(form for form in _encodings(candidate) if form)
        # Longest first, so that a value is masked whole rather than a shorter one inside it.
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, data: Any) -> Any:
        """`data` with every string in it masked (dicts, lists and tuples are walked)."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self(data)
        if isinstance(data, Mapping):
            return {key: self.value(item) for key, item in data.items()}
        if isinstance(data, list | tuple):
            return type(data)(self.value(item) for item in data)
        return data


def _candidates(text: str) -> set[str]:
    """The value as stored and as code most likely reads it (stripped); each line of a
    multi-line value (a PEM key) too, since a traceback may quote only one."""
    candidates = {text, text.strip()}
    if "\n" in text.strip():
        candidates.update(line.strip() for line in text.splitlines())
    return candidates


def _encodings(text: str) -> set[str]:
    raw = text.encode()
    quoted = {
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote(text),  # keeps '/', as in a path
        urllib.parse.quote_plus(text, safe=""),
    }
    quoted |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), q) for q in quoted}
    return {
        text,
        *quoted,
        json.dumps(text, ensure_ascii=False)[1:-1],
        json.dumps(text)[1:-1],
        repr(text)[1:-1],
        str(raw)[2:-1],  # as bytes are shown: b'...'
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


class LiveRedactor:
    """The current `Redactor` for values that change while the platform runs.

    `load` returns today's secret values; it is called again at most every
    `interval` seconds when the redactor is used (reading a handful of small
    files), and at once on `refresh()`. Safe to call from any thread.
    """

    def __init__(
        self,
        load: Callable[[], Iterable[bytes]],
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._values: frozenset[bytes] = frozenset()
        self._current = Redactor()
        self._checked = float("-inf")

    def refresh(self) -> Redactor:
        """Load the values now (functions.yaml or a secret changed)."""
        values = frozenset(self._load())
        with self._lock:
            self._checked = self._clock()
            if values != self._values:
                self._values = values
                self._current = Redactor(values)
            return self._current

    def current(self) -> Redactor:
        if self._clock() - self._checked >= self._interval:
            return self.refresh()
        return self._current

    def __call__(self, text: str) -> str:
        return self.current()(text)

    def value(self, data: Any) -> Any:
        return self.current().value(data)
