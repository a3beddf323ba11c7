"""One-shot containers of a base image that image builds need: the interpreter probe
and the wheel builder. Both run with no network, no capabilities, as uid 10001.

Files go in and out through the API (`put_archive`, `get_archive`), not bind
mounts, so this works with remote, rootless and Podman engines alike. The
builder runs the host's own pip (copied in, pure Python) on the image's python3,
since most base images ship none: pip supports every interpreter it runs on.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import threading
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import docker.errors
import requests.exceptions
from docker.api.client import APIClient

from runtime.errors import ImageBuildError
from runtime.interpreter import PROBE, Interpreter, parse_probe, to_dict
from runtime.own_code import walk_files
from runtime.requirements import cache_base
from runtime.sdists import build_failure, wheel_command

TOOL_USER = "10001:10001"
PROBE_TIMEOUT = 60
BUILD_TIMEOUT = 900
PIP_ROOT = "/opt/faas-pip"

_probed: dict[str, Interpreter] = {}
_lock = threading.Lock()


def interpreter(api: APIClient, image_id: str) -> Interpreter:
    """The facts of `image_id`'s python3, probed once per image id (kept on disk)."""
    with _lock:
        known = _probed.get(image_id)
    if known is not None:
        return known
    cached = cache_base() / "interpreters" / f"{image_id.replace(':', '-')}.json"
    found: Interpreter | None = None
    if cached.is_file():
        try:
            found = parse_probe(cached.read_text())
        except ValueError:
            found = None
    if found is None:
        code, output, _ = _run(api, image_id, ["python3", "-c", PROBE], {}, PROBE_TIMEOUT)
        try:
            if code != 0:
                raise ValueError(f"python3 exited {code}: {output.strip()[-300:]}")
            found = parse_probe(output)
        except ValueError as exc:
            raise ImageBuildError(
                f"cannot tell which Python base image {image_id[:19]} runs: {exc}"
            ) from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(to_dict(found)))
    with _lock:
        _probed[image_id] = found
    return found


def build_wheel(
    api: APIClient, image_id: str, sdist: str, inputs: Mapping[str, bytes]
) -> dict[str, bytes]:
    """Build `sdist` (one of `inputs`, name -> content, with its build requirements'
    wheels) into wheels in a container of `image_id`: wheel name -> content."""
    files = {f"in/{name}": content for name, content in inputs.items()}
    files.update(_pip_files())
    code, output, collected = _run(
        api, image_id, wheel_command(sdist), files, BUILD_TIMEOUT,
        environment={"PYTHONPATH": PIP_ROOT, "HOME": "/tmp", "PIP_NO_INPUT": "1"},
        collect="/out",
    )  # fmt: skip
    if code != 0:
        has_compiler = interpreter(api, image_id).has_compiler
        raise ImageBuildError(build_failure(sdist, output, has_compiler=has_compiler))
    wheels = {PurePosixPath(n).name: c for n, c in collected.items() if n.endswith(".whl")}
    if not wheels:
        raise ImageBuildError(f"building {sdist} made no wheel:\n{output.strip()[-500:]}")
    return wheels


def _pip_files() -> dict[str, bytes]:
    import pip

    source = Path(pip.__file__).resolve().parent
    return {
        name: path.read_bytes()
        for name, path in walk_files(source, PurePosixPath(PIP_ROOT.lstrip("/")) / "pip")
        if "/__pycache__/" not in name
    }


def _run(
    api: APIClient,
    image_id: str,
    command: list[str],
    files: Mapping[str, bytes],
    timeout: int,
    *,
    environment: Mapping[str, str] | None = None,
    collect: str | None = None,
) -> tuple[int, str, dict[str, bytes]]:
    """Run `command` in a new container of `image_id` holding `files` (path under / ->
    content): its exit code, its output, and (with `collect`, after a success) the files
    of that directory."""
    host_config = api.create_host_config(
        network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"]
    )
    container = api.create_container(
        image_id,
        command=command,
        user=TOOL_USER,
        environment=dict(environment or {}),
        working_dir="/tmp",
        network_disabled=True,
        host_config=host_config,
        labels={"faas.role": "build-tool"},
    )["Id"]
    try:
        directories = {"in", "out"} if collect else set()
        api.put_archive(container, "/", _archive(files, directories))
        try:
            api.start(container)
        except docker.errors.APIError as exc:  # e.g. no python3 in the image
            raise ImageBuildError(
                f"cannot run {command[0]} in image {image_id[:19]}: {exc.explanation or exc}"
            ) from None
        try:
            code = int(api.wait(container, timeout=timeout)["StatusCode"])
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            raise ImageBuildError(f"{' '.join(command[:4])} ran over {timeout} s: {exc}") from None
        output = api.logs(container, stdout=True, stderr=True).decode(errors="replace")
        collected = _extract(api, container, collect) if collect and code == 0 else {}
        return code, output, collected
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container, force=True)


def _archive(files: Mapping[str, bytes], directories: set[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(directories):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.uid = info.gid = 10001
            archive.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def _extract(api: APIClient, container: str, directory: str) -> dict[str, bytes]:
    stream, _ = api.get_archive(container, directory)
    data = b"".join(stream)
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                found[member.name] = handle.read()
    return found
