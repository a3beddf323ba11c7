"""Secrets: stored owner-only under `.faas/secrets/`, handed to replicas as read-only files.

A value comes from `faas secrets set NAME` (the store) or, when the store has
none, from the environment variable `FAAS_SECRET_<NAME>` (upper case, `-` and
`.` as `_`). Replicas never see secrets in their environment: each secret a
function names is written to `.faas/run/<project>/secrets/<name>` (a directory
only the owner can enter) and bind-mounted read-only at `/run/secrets/<name>`.
Values are never logged and never part of an error message; what functions
print or raise is masked by runtime/redact.py, which `known_values` feeds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import FaasError

if TYPE_CHECKING:
    from runtime.spec import Project

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class SecretMissing(FaasError):
    pass


ENV_PREFIX = "FAAS_SECRET_"


def env_name(name: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


class SecretStore:
    def __init__(self, state_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self._dir = state_dir / "secrets"
        self._environ = os.environ if environ is None else environ

    def set(self, name: str, value: bytes) -> None:
        _check_name(name)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._dir / name
        temporary = path.with_name(f".{name}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(value)
        temporary.replace(path)

    def remove(self, name: str) -> bool:
        _check_name(name)
        try:
            (self._dir / name).unlink()
        except FileNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        if not self._dir.is_dir():
            return []
        return sorted(p.name for p in self._dir.iterdir() if not p.name.startswith("."))

    def get(self, name: str) -> bytes:
        _check_name(name)
        try:
            return (self._dir / name).read_bytes()
        except FileNotFoundError:
            pass
        from_env = self._environ.get(env_name(name))
        if from_env is not None:
            return from_env.encode()
        raise SecretMissing(
            f"secret {name!r} has no value: set it with `faas secrets set {name}` "
            f"or the environment variable {env_name(name)}"
        )

    def known_values(self, names: Iterable[str] = ()) -> list[bytes]:
        """Every value this store could hand out, for masking them in output: the stored
        secrets, `names` that only the environment sets, and every FAAS_SECRET_* variable.

        Never raises: a value that cannot be read is one that cannot leak from here.
        """
        values: list[bytes] = []
        try:
            stored = self.names()
        except OSError:
            stored = []
        for name in {*stored, *names}:
            try:
                values.append(self.get(name))
            except (FaasError, OSError):
                continue
        values += [
            value.encode()
            for key, value in self._environ.items()
            if key.startswith(ENV_PREFIX) and value
        ]
        return values

    def materialize(self, run_dir: Path, names: Iterable[str]) -> dict[str, Path]:
        """Write the named secrets as files a replica can mount; returns name -> host path.

        The directory is owner-only; the files are world-readable so the replica's
        unprivileged user can read its bind mount (nothing else can reach the directory).
        """
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        paths: dict[str, Path] = {}
        for name in names:
            path = run_dir / name
            value = self.get(name)
            temporary = path.with_name(f".{name}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(value)
            temporary.replace(path)
            paths[name] = path
        return paths


def secret_names(project: Project) -> set[str]:
    """Every secret `project` names: its functions' files, webhook and callback keys, the
    JWT key and the project's callback key."""
    names = {name for spec in project.functions.values() for name in spec.secrets}
    names |= {spec.callback_secret for spec in project.functions.values() if spec.callback_secret}
    names |= {
        route.webhook_secret
        for spec in project.functions.values()
        for route in spec.routes
        if route.webhook_secret
    }
    gateway = project.gateway
    if gateway.jwt is not None and gateway.jwt.secret:
        names.add(gateway.jwt.secret)
    if gateway.callback_secret:
        names.add(gateway.callback_secret)
    return names


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise FaasError(
            f"invalid secret name {name!r}: use lowercase letters, digits, '.', '_' and '-'"
        )
