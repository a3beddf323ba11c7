"""A warm watchdog's function archive: checked in full first, then written out.

A warm watchdog is a watchdog started without a function (FAAS_WARM=1); at a cold start the
gateway sends it one with `POST /_/init`, as one uncompressed tar archive (the layout is
part of the host <-> watchdog contract, wire.py):

    init.json       {"function": str, "handler_file": str,
                     "handler_name": str (default "handle"), "environment": {str: str}}
    app/<path>      the code, written to <code dir>/<path>
    deps/<path>     the function's requirements, written to <deps dir>/<path>
                    (a directory on the watchdog's PYTHONPATH)
    secrets/<name>  written to <secrets dir>/<name>, mode 0o400 (0o444 when written
                    as root for the user the watchdog becomes)

Only regular files are taken (directory members are ignored, links refused) and
nothing is extracted by `tarfile`, so no member can land outside those three
directories. `parse_archive` rejects the whole archive before `apply` writes
anything, so a refused archive leaves the warm watchdog as it was.

Who writes: a warm watchdog started as root forks a `RootWriter` first, then
becomes the replica user (`become`) before it serves a request or imports any
code of the function's, its preloaded requirements (`preload`) included. The
writer does nothing but wait for the one archive, check it again, write it into
the root-owned directories and exit; the watchdog, already unprivileged, hands
it the archive at /_/init. So no code of a function, its requirements' module-level
code included, ever runs as root, and none can change the files it was given.

Imported only by a warm watchdog: `tarfile` costs milliseconds that an ordinary start skips.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import socket
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

from .wire import INIT_CODE, INIT_DEPS, INIT_SECRETS, INIT_SETTINGS, InitSettings


class ArchiveError(ValueError):
    """The archive is unusable; the message says why (it is sent back to the gateway)."""


@dataclass(frozen=True, slots=True)
class FileToWrite:
    path: str  # relative, `/`-separated, no `.` or `..` parts
    data: bytes
    mode: int


@dataclass(frozen=True, slots=True)
class InitPlan:
    """Everything an archive asks for, validated; `apply` writes the files."""

    function: str
    handler_file: str
    handler_name: str = "handle"
    environment: dict[str, str] = field(default_factory=dict)
    code: list[FileToWrite] = field(default_factory=list)
    deps: list[FileToWrite] = field(default_factory=list)
    secrets: list[FileToWrite] = field(default_factory=list)


_KEYS = frozenset(InitSettings.__annotations__)
_CODE, _DEPS, _SECRETS = (prefix.rstrip("/") for prefix in (INIT_CODE, INIT_DEPS, INIT_SECRETS))
_KINDS = f"expected {INIT_SETTINGS}, {INIT_CODE}<path>, {INIT_DEPS}<path> or {INIT_SECRETS}<name>"


def parse_archive(data: bytes) -> InitPlan:
    """Read and validate the whole archive; raise ArchiveError on the first problem."""
    settings: bytes | None = None
    code: list[FileToWrite] = []
    deps: list[FileToWrite] = []
    secrets: list[FileToWrite] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                parts = _parts(member.name)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise ArchiveError(f"{member.name!r} is not a regular file")
                reader = archive.extractfile(member)
                assert reader is not None  # always a reader for a regular file
                content = reader.read()
                if parts == [INIT_SETTINGS]:
                    if settings is not None:
                        raise ArchiveError(f"{INIT_SETTINGS} appears twice")
                    settings = content
                elif len(parts) > 1 and parts[0] in (_CODE, _DEPS):
                    mode = 0o755 if member.mode & 0o100 else 0o644
                    into = code if parts[0] == _CODE else deps
                    into.append(FileToWrite("/".join(parts[1:]), content, mode))
                elif len(parts) > 1 and parts[0] == _SECRETS:
                    if len(parts) > 2:
                        raise ArchiveError(f"{member.name!r}: a secret name cannot contain '/'")
                    secrets.append(FileToWrite(parts[1], content, 0o400))
                else:
                    raise ArchiveError(f"{member.name!r}: {_KINDS}")
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"not a valid tar archive: {exc}") from None
    if settings is None:
        raise ArchiveError(f"{INIT_SETTINGS} is missing")
    _check_unique(code, INIT_CODE)
    _check_unique(deps, INIT_DEPS)
    _check_unique(secrets, INIT_SECRETS)
    return InitPlan(**_read_settings(settings), code=code, deps=deps, secrets=secrets)


def apply(
    plan: InitPlan, code_dir: str, secrets_dir: str, deps_dir: str, *, for_another_user: bool
) -> None:
    """Write the code, requirements and secrets; raises OSError (the plan is valid).

    The code and requirements then lose their write permissions, files and
    directories alike, as on the read-only filesystem of an image. Written as root
    for another user (`become` follows), they belong to root: the function cannot
    restore the permissions either, and its secrets are readable by all.
    """
    for files, directory in ((plan.code, code_dir), (plan.deps, deps_dir)):
        for file in files:
            target = os.path.join(directory, file.path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _write(target, file)
        if files:
            _drop_write_permissions(directory)
    if plan.secrets:
        os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    for file in plan.secrets:
        readable = FileToWrite(file.path, file.data, 0o444) if for_another_user else file
        _write(os.path.join(secrets_dir, file.path), readable)
    with contextlib.suppress(FileNotFoundError):  # nothing more is written there either
        os.chmod(secrets_dir, 0o555 if for_another_user else 0o500)


MAX_ARCHIVE = 256 * 1024 * 1024
"""Bytes the writer accepts at most (the gateway sends at most 8 MiB of code)."""


class RootWriter:
    """A child process, forked while this watchdog is still root and has run nothing of
    a function's, that writes one function archive as root and exits (module docstring).

    Its protocol, over a socket pair: the archive's length (8 bytes, big-endian) and the
    archive; then one status byte (`0` written, `1` refused, `2` not writable) and the
    reason, UTF-8.
    """

    def __init__(self, code_dir: str, secrets_dir: str, deps_dir: str) -> None:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the writer: never returns
            ours.close()
            _write_one(theirs, code_dir, secrets_dir, deps_dir)
        theirs.close()
        self._socket = ours
        self._pid = pid

    def write(self, archive: bytes) -> None:
        """Have the writer write `archive`; raises ArchiveError or OSError as `apply` would."""
        try:
            self._socket.sendall(len(archive).to_bytes(8, "big") + archive)
            self._socket.shutdown(socket.SHUT_WR)
            answer = _read_all(self._socket)
        finally:
            self._socket.close()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
        status, reason = answer[:1], answer[1:].decode(errors="replace")
        if status == b"0":
            return
        if status == b"1":
            raise ArchiveError(reason)
        raise OSError(reason or "the writer exited without an answer")


def _write_one(channel: socket.socket, code_dir: str, secrets_dir: str, deps_dir: str) -> None:
    """The writer's whole life (in the forked child): one archive, checked and written."""
    answer = b"2"
    try:
        size = int.from_bytes(_read_exactly(channel, 8), "big")
        if size > MAX_ARCHIVE:
            raise ArchiveError(f"the archive is over {MAX_ARCHIVE} bytes")
        plan = parse_archive(_read_exactly(channel, size))
        apply(plan, code_dir, secrets_dir, deps_dir, for_another_user=True)
        answer = b"0"
    except ArchiveError as exc:
        answer = b"1" + str(exc).encode()
    except (OSError, EOFError) as exc:
        answer = b"2" + str(exc).encode()
    finally:
        with contextlib.suppress(OSError):
            channel.sendall(answer)
        os._exit(0)


def _read_exactly(channel: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = channel.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the watchdog closed the channel")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_all(channel: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while chunk := channel.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Preloaded:
    imported: list[str]
    failed: dict[str, str]
    """Module -> why it did not import: the function imports it itself, and sees why."""
    ms: float


def preload(modules: tuple[str, ...]) -> Preloaded:
    """Import `modules` now, so that a function given this watchdog finds them imported."""
    started = time.perf_counter()
    imported: list[str] = []
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
        else:
            imported.append(name)
    return Preloaded(imported, failed, round((time.perf_counter() - started) * 1000, 1))


def become(uid: int, gid: int) -> None:
    """Leave root for good before function code runs (raises OSError if it cannot).

    setresuid from root to another user clears every capability (permitted and
    effective), and `no-new-privileges` keeps execve from granting any back.
    """
    if (os.geteuid(), os.getegid()) == (uid, gid):
        return
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _drop_write_permissions(root: str) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            os.chmod(path, os.stat(path).st_mode & ~0o222)
    for directory, _, _ in os.walk(root, topdown=False):
        os.chmod(directory, 0o555)


def _parts(name: str) -> list[str]:
    """`./app//x.py` -> ["app", "x.py"]; absolute names and `..` are refused outright."""
    if name.startswith("/"):
        raise ArchiveError(f"{name!r}: absolute names are not allowed")
    if "\x00" in name:
        raise ArchiveError(f"{name!r}: a name cannot contain NUL")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{name!r}: '..' is not allowed")
    return parts


def _check_unique(files: list[FileToWrite], prefix: str) -> None:
    """Two members for one file, or a file where another needs a directory, is an error."""
    paths: set[str] = set()
    for file in files:
        if file.path in paths:
            raise ArchiveError(f"{prefix}{file.path} appears twice")
        paths.add(file.path)
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in paths:
                raise ArchiveError(f"{prefix}{parent} is a file but {prefix}{path} is inside it")
            parent = parent.rpartition("/")[0]


def _read_settings(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:  # also undecodable UTF-8
        raise ArchiveError(f"init.json is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ArchiveError("init.json must be a JSON object")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ArchiveError(f"init.json has unknown keys: {', '.join(unknown)}")
    settings: dict[str, Any] = {}
    for key in ("function", "handler_file", "handler_name"):
        value = doc.get(key, "handle" if key == "handler_name" else None)
        if not isinstance(value, str) or not value:
            raise ArchiveError(f"init.json: {key} must be a non-empty string")
        settings[key] = value
    environment = doc.get("environment", {})
    if not isinstance(environment, dict) or not all(
        isinstance(value, str) for value in environment.values()
    ):
        raise ArchiveError("init.json: environment must map names to strings")
    for name, value in environment.items():
        if not name or "=" in name or "\x00" in name or "\x00" in value:
            raise ArchiveError(f"init.json: {name!r} cannot be an environment variable")
    settings["environment"] = environment
    return settings


def _write(path: str, file: FileToWrite) -> None:
    """Replace whatever is at `path` (even a read-only file) without following a symlink."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file.mode)
    with open(fd, "wb") as out:
        os.fchmod(fd, file.mode)  # exactly this mode, whatever the umask
        out.write(file.data)
