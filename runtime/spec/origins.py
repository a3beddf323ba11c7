"""Browser origins as `cors.allow_origins` names them, and which origins a list allows.

An entry is one of

- an origin, `https://app.example.com` or `http://localhost:3000`: a scheme, a host
  and an optional port, nothing else (a browser's `Origin` header has no path);
- `*`: any origin;
- a subdomain pattern, `https://*.example.com[:port]`: any host ending in
  `.example.com` (not `example.com` itself), with that scheme and exactly that port
  (none written: the scheme's default, which browsers leave out). The pattern needs at
  least two labels after `*.`, so `https://*.com` is refused; it cannot know which
  suffixes are public (`*.co.uk` is allowed and allows every site under co.uk).

Entries are kept as browsers serialize an origin, which is what they are compared
with byte for byte: scheme and host lowercased, a default port (`:443` for https,
`:80` for http) dropped. `null` (sandboxed frames, `file:` pages) is refused: every
such page sends the same `null`, so allowing it allows them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ANY = "*"
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EXAMPLES = '"https://app.example.com", "http://localhost:3000", "https://*.example.com" or "*"'


def origin_entry(text: str) -> str:
    """`text` as a normalized entry; ValueError saying what is wrong with it."""
    if text == ANY:
        return text
    if text.strip().lower() == "null":
        raise ValueError(
            "the origin 'null' is sent by every sandboxed frame and file: page; "
            "allowing it allows them all"
        )
    if not text.isascii():
        raise ValueError(f"write internationalized host names in their xn-- form, got {text!r}")
    lowered = text.lower()
    match = _ORIGIN.fullmatch(lowered)
    if match is None:
        raise ValueError(_why_not(text, lowered))
    scheme, host, port = match["scheme"], match["host"], match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"expected a port from 1 to 65535, got {port} in {text!r}")
    if host.startswith("*.") and host.count(".") < 2:
        raise ValueError(
            f"a subdomain pattern needs at least two labels after '*.', like "
            f"https://*.example.com, got {text!r}"
        )
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{int(port)}"


def _why_not(text: str, lowered: str) -> str:
    scheme, sep, rest = lowered.partition("://")
    if not sep:
        return f"expected an origin like {EXAMPLES}, got {text!r}"
    if any(c in rest for c in "/?#"):
        at = min(i for i in (rest.find(c) for c in "/?#") if i >= 0)
        return (
            f"an origin is scheme://host[:port] with no path, got {text!r}; "
            f"write {scheme}://{rest[:at]}"
        )
    if "@" in rest:
        return f"an origin has no user name or password, got {text!r}"
    if "*" in rest:
        return (
            f"'*' may only stand for the leftmost labels, as in https://*.example.com, got {text!r}"
        )
    return f"expected an origin like {EXAMPLES}, got {text!r}"


def pattern_regex(entries: Iterable[str]) -> str | None:
    """One regular expression that fully matches the origins the subdomain patterns
    among `entries` allow; None when there are none."""
    parts = []
    for entry in entries:
        scheme, _, rest = entry.partition("://")
        if not rest.startswith("*."):
            continue
        parts.append(re.escape(f"{scheme}://") + rf"(?:{_LABEL}\.)+" + re.escape(rest[2:]))
    return "|".join(parts) or None


def exact(entries: Iterable[str]) -> tuple[str, ...]:
    """The entries that name one origin each (or `*`), not a pattern."""
    return tuple(entry for entry in entries if "://*." not in entry)
