"""Where async-call results may be POSTed (`gateway.callback_allow`), checked before storing.

A callback makes the gateway send a request the caller chose, so an open
callback is a server-side request forgery waiting to happen: by default
the list is empty and `X-Callback-Url` is refused. Each entry is either

- a URL prefix, `https://hooks.example.com/faas/`: same scheme, host and
  port (the scheme's default when none is written), and a path under the
  prefix's path (at a `/` boundary: `/faas` allows `/faas/x`, not `/faasx`);
- a host pattern, `hooks.example.com`, `*.example.com` (subdomains only),
  `127.0.0.1`, `[::1]`, optionally with `:port`: http or https, any path,
  any port unless one is written.

URLs with credentials (`http://user@host/`) or `.`/`..` path segments are
refused outright; the gateway never follows a callback's redirects.
Matching is on the URL's host name, not on what it resolves to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\]")


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def entry_problem(entry: str) -> str | None:
    """Why `entry` cannot be a `callback_allow` entry, or None."""
    try:
        _parse_entry(entry)
    except ValueError as exc:
        return str(exc)
    return None


def url_problem(url: str, allowed: Iterable[str]) -> str | None:
    """Why the gateway must not POST to `url`, or None when an entry allows it."""
    try:
        target = _target(url)
    except ValueError as exc:
        return str(exc)
    entries = list(allowed)
    if not entries:
        return "callbacks are disabled: list allowed targets in gateway.callback_allow"
    for entry in entries:
        if _allows(_parse_entry(entry), target):
            return None
    return f"{target.scheme}://{target.host}:{target.port} is not in gateway.callback_allow"


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"not a valid URL: {url!r}") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("callback URLs must not carry credentials")
    segments = unquote(parts.path).split("/")
    if "." in segments or ".." in segments:
        raise ValueError("callback URLs must not have '.' or '..' path segments")
    scheme = parts.scheme.lower()
    return _Target(scheme, _host(parts), port or DEFAULT_PORTS[scheme], parts.path or "/")


def _host(parts: SplitResult) -> str:
    host = (parts.hostname or "").lower().rstrip(".")
    return f"[{host}]" if ":" in host else host


def _parse_entry(entry: str) -> tuple[str, str, int | None, str | None]:
    """(scheme or "", host pattern, port or None, path prefix or None)."""
    text = entry.strip()
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL prefix, got {entry!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"a URL prefix has no credentials, query or fragment: {entry!r}")
        try:
            explicit = parts.port
        except ValueError:
            raise ValueError(f"invalid port in {entry!r}") from None
        return scheme, _host(parts), explicit or DEFAULT_PORTS[scheme], parts.path or "/"
    host = text.lower()
    port: int | None = None
    match = re.fullmatch(r"(.+?)(?::(\d{1,5}))?", host)
    if match and match.group(2) and not host.endswith("]"):
        host, port = match.group(1), int(match.group(2))
    if not _HOST.fullmatch(host) or (port is not None and not 0 < port < 65536):
        raise ValueError(
            "expected a URL prefix like https://hooks.example.com/faas/ or a host like "
            f"hooks.example.com, *.example.com, 127.0.0.1 or [::1], maybe with :port, got {entry!r}"
        )
    return "", host, port, None


def _allows(entry: tuple[str, str, int | None, str | None], target: _Target) -> bool:
    scheme, host, port, path = entry
    if scheme and scheme != target.scheme:
        return False
    if port is not None and port != target.port:
        return False
    if host.startswith("*."):
        if not target.host.endswith(host[1:]):
            return False
    elif host != target.host:
        return False
    if path is None or path == "/":
        return True
    return target.path == path or target.path.startswith(path.rstrip("/") + "/")
