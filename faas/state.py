"""The running gateway's addresses and pid, kept under the project's `.faas/` directory.

`faas up` writes it; `faas ls`, `faas invoke` and `faas down` read it to find
the platform they act on: the function listener for calls, the admin listener
(where `faas up --admin-port` put it) for everything else.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = ".faas"


@dataclass(frozen=True)
class GatewayState:
    pid: int
    host: str
    port: int
    project: str
    tls: bool = False
    admin_host: str | None = None
    admin_port: int | None = None
    """None: a gateway from before the admin listener, serving its admin API on `port`."""

    @property
    def url(self) -> str:
        """The function listener."""
        return self._url(self.host, self.port)

    @property
    def admin_url(self) -> str:
        """The admin listener: the admin API and the dashboard."""
        if self.admin_port is None:
            return self.url
        return self._url(self.admin_host or self.host, self.admin_port)

    def _url(self, host: str, port: int) -> str:
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{port}"


def state_dir(project_root: Path) -> Path:
    path = project_root / STATE_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _path(project_root: Path, project: str) -> Path:
    return project_root / STATE_DIR / f"gateway-{project}.json"


def write(project_root: Path, state: GatewayState) -> None:
    state_dir(project_root)
    path = _path(project_root, state.project)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state)))
    temporary.replace(path)


def read(project_root: Path, project: str) -> GatewayState | None:
    """The recorded gateway, or None when none is recorded or its process is gone."""
    path = _path(project_root, project)
    try:
        state = GatewayState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not _alive(state.pid):
        return None
    return state


def clear(project_root: Path, project: str, pid: int) -> None:
    path = _path(project_root, project)
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def admin_token(project_root: Path, *, create: bool = False) -> str | None:
    """The admin API's token, in an owner-only file; made on first use when `create`."""
    path = project_root / STATE_DIR / "admin-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
    state_dir(project_root)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token
