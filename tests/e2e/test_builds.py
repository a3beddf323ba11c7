"""Builds that follow the base image: Debian packages from its own apt sources, and
requirements with no wheel built from source in a container of it.

Nothing here reaches outside this machine. The base image of these functions is
the platform's (built by scripts/test) with its apt sources replaced by a local
repository that this test makes (a .deb written here, in Python); a second image
points apt at a port where nothing listens. The requirement with no wheel is a
source distribution this test writes, whose build backend records where it ran.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from runtime.spec import DEFAULT_BASE_IMAGE
from tests.conftest import Gateway, running_gateway, running_replicas, wait_for
from tests.e2e.test_warm_kinds import unassigned

pytestmark = pytest.mark.docker

PACKAGE = "faas-hello"
GREETING = "hello from a Debian package\n"
GREETING_FILE = "/usr/share/faas-hello/greeting.txt"

# -- a local apt repository ----------------------------------------------------------


def _tar_gz(files: dict[str, bytes]) -> bytes:
    """A package member: its files, after the directories that hold them (dpkg wants both)."""
    buffer = io.BytesIO()
    directories = sorted({str(p) for name in files for p in Path(name).parents} - {"."})
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for directory in directories:
            info = tarfile.TarInfo(f"./{directory}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            archive.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(content), 0o644, 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    """An ar archive, the container format of a .deb."""
    out = b"!<arch>\n"
    for name, content in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(content):<10}`\n"
        out += header.encode() + content + (b"\n" if len(content) % 2 else b"")
    return out


def deb_package(name: str, files: dict[str, bytes]) -> tuple[bytes, str]:
    """(.deb content, its control stanza) of an architecture-independent package."""
    control = (
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: faas tests <t@t>\n"
        f"Description: test package\n"
    )
    deb = _ar(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", _tar_gz({"control": control.encode()})),
            ("data.tar.gz", _tar_gz(files)),
        ]
    )
    return deb, control


def apt_repository(directory: Path) -> None:
    """A flat repository (`deb [trusted=yes] file:/srv/faas-apt ./`) holding PACKAGE."""
    deb, control = deb_package(PACKAGE, {GREETING_FILE.lstrip("/"): GREETING.encode()})
    filename = f"{PACKAGE}_1.0_all.deb"
    (directory / filename).write_bytes(deb)
    stanza = (
        f"{control}Filename: ./{filename}\nSize: {len(deb)}\n"
        f"SHA256: {hashlib.sha256(deb).hexdigest()}\n"
    )
    packages = stanza.encode()
    (directory / "Packages").write_bytes(packages)
    (directory / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    (directory / "Release").write_text(
        "Origin: faas-tests\nLabel: faas-tests\nDate: Sat, 05 Dec 2026 00:00:00 UTC\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n"
    )


LOCAL_SOURCES = """\
FROM {base}
COPY repo/ /srv/faas-apt/
RUN rm -f /etc/apt/sources.list.d/* \\
 && echo 'deb [trusted=yes] file:/srv/faas-apt ./' > /etc/apt/sources.list
"""
UNREACHABLE_SOURCES = """\
FROM {base}
RUN rm -f /etc/apt/sources.list.d/* \\
 && echo 'deb [trusted=yes] http://127.0.0.1:9/debian ./' > /etc/apt/sources.list
"""

# -- a requirement published as a source distribution only ---------------------------

BACKEND = """\
import base64, hashlib, os, sys, sysconfig, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    name = f"tinypkg-1.0-{abi}-{abi}-{plat}.whl"
    facts = {"python": sys.version.split()[0], "uid": os.getuid(),
             "interfaces": sorted(os.listdir("/sys/class/net")), "tag": f"{abi}-{plat}"}
    files = {
        "tinypkg.py": f"BUILT = {facts!r}\\n".encode(),
        "tinypkg-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\\nName: tinypkg\\nVersion: 1.0\\n"
        ),
        "tinypkg-1.0.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: false\\n"
            f"Tag: {abi}-{abi}-{plat}\\n"
        ).encode(),
    }
    def digest(content):
        return base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    record = "".join(f"{n},sha256={digest(c)},{len(c)}\\n" for n, c in files.items())
    files["tinypkg-1.0.dist-info/RECORD"] = (record + "tinypkg-1.0.dist-info/RECORD,,\\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for n, c in files.items():
            wheel.writestr(n, c)
    return name
"""
PYPROJECT = b"""\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""


def tinypkg_sdist() -> bytes:
    """tinypkg 1.0 as a source distribution, with an in-tree build backend (PEP 517) whose
    module records where it was built."""
    return _tar_gz_dir(
        "tinypkg-1.0",
        {
            "pyproject.toml": PYPROJECT,
            "backend.py": BACKEND.encode(),
            "PKG-INFO": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        },
    )


def _tar_gz_dir(top: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(content), 0o644, 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# -- the project -------------------------------------------------------------------------

HANDLER = f"""\
import os


def handle(event, context):
    path = {GREETING_FILE!r}
    return {{"greeting": open(path).read() if os.path.exists(path) else None}}
"""
BUILT_HANDLER = """\
import tinypkg


def handle(event, context):
    return tinypkg.BUILT
"""
SPEC = """\
version: 1
project: builds
gateway:
  warm_pool: 2
defaults:
  auth: none
  base_image: {local}
  scale: {{min: 0, max: 1, idle_timeout: 2s}}
functions:
  greet:
    handler: functions/greet.py
    system_packages: [{package}]
  plain:
    handler: functions/greet.py
  no-such-package:
    handler: functions/greet.py
    system_packages: [{package}, faas-no-such-package]
  no-source:
    handler: functions/greet.py
    base_image: {unreachable}
    system_packages: [{package}]
  built:
    handler: functions/built.py
    requirements: functions/requirements.txt
"""


def build_image(
    client: docker.DockerClient, tag: str, dockerfile: str, files: dict[str, bytes]
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in {"Dockerfile": dockerfile.encode(), **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True)


@pytest.fixture(scope="module")
def builds(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("builds")
    repo = work / "repo"
    repo.mkdir()
    apt_repository(repo)
    suffix = uuid.uuid4().hex[:8]
    local, unreachable = f"faas-test-apt:{suffix}", f"faas-test-noapt:{suffix}"
    base = docker_client.images.get(DEFAULT_BASE_IMAGE).id
    repo_files = {f"repo/{p.name}": p.read_bytes() for p in repo.iterdir()}
    build_image(docker_client, local, LOCAL_SOURCES.format(base=base), repo_files)
    build_image(docker_client, unreachable, UNREACHABLE_SOURCES.format(base=base), {})
    root = work / "project"
    functions = root / "functions"
    (functions / "dist").mkdir(parents=True)
    (functions / "greet.py").write_text(HANDLER)
    (functions / "built.py").write_text(BUILT_HANDLER)
    (functions / "dist" / "tinypkg-1.0.tar.gz").write_bytes(tinypkg_sdist())
    # no wheel anywhere: the one index is a directory with the source distribution only
    (functions / "requirements.txt").write_text("--no-index\n--find-links dist\ntinypkg==1.0\n")
    spec = root / "functions.yaml"
    spec.write_text(SPEC.format(local=local, unreachable=unreachable, package=PACKAGE))
    logs = tmp_path_factory.mktemp("logs")
    # a cache of its own: the source distribution is built here, not found built before
    cache = {"FAAS_CACHE_DIR": str(work / "cache")}
    try:
        with running_gateway(
            docker_client, spec, "builds", logs, "--no-reload", env=cache
        ) as gateway:
            yield gateway
    finally:
        for tag in (local, unreachable):
            # function images made from it keep its layers; the tag goes
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(tag)


def call(gateway: Gateway, function: str) -> httpx.Response:
    with httpx.Client(base_url=gateway.url, timeout=60, trust_env=False) as client:
        return client.get(f"/function/{function}")


def rows(gateway: Gateway) -> dict[str, dict[str, Any]]:
    functions = json.loads(gateway.cli("ls", "--json").stdout)["functions"]
    return {row["name"]: row for row in functions}


def test_system_packages_come_from_the_base_images_apt_sources(builds: Gateway) -> None:
    answer = call(builds, "greet")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"greeting": GREETING}
    # the same code on the same base, without the package: its image lacks the file
    plain = call(builds, "plain")
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"greeting": None}


def test_functions_with_other_system_packages_start_from_other_warm_pools(
    builds: Gateway, docker_client: docker.DockerClient
) -> None:
    def takers() -> dict[str, str]:
        pools = builds.admin_get("/system/functions").json()["warm"]["pools"]
        return {name: pool["pool"] for pool in pools for name in pool["functions"]}

    found = wait_for(lambda: (t := takers()) and {"greet", "plain"} <= t.keys() and t, 60,
                     "warm pools for greet and plain")  # fmt: skip
    assert found["greet"] != found["plain"]
    # a warm start of greet: a watchdog of its kind becomes its replica, and has the package
    # (one of plain's kind, on the same base image, would not)
    project = builds.project
    wait_for(lambda: not running_replicas(docker_client, project, "greet"), 30, "greet at zero")
    wait_for(lambda: _pool(builds, "greet")["ready"] >= 1, 60, "a warm watchdog for greet")
    waiting = {c["Id"] for c in unassigned(docker_client, project)}
    answer = call(builds, "greet")
    assert answer.status_code == 200 and answer.json() == {"greeting": GREETING}
    (replica,) = running_replicas(docker_client, project, "greet")
    assert replica["Id"] in waiting


def _pool(gateway: Gateway, function: str) -> dict[str, Any]:
    pools = gateway.admin_get("/system/functions").json()["warm"]["pools"]
    (pool,) = [p for p in pools if function in p["functions"]]
    return dict(pool)


def test_a_missing_package_or_apt_source_fails_that_function_naming_it(builds: Gateway) -> None:
    found = rows(builds)
    missing = found["no-such-package"]
    assert missing["state"] == "failed"
    assert "no-such-package" in missing["error"]  # the function
    assert "faas-no-such-package" in missing["error"]  # the package
    assert "no such package in the base image's apt sources" in missing["error"]
    assert f" {PACKAGE}" not in missing["error"].split("sources:")[1].split("\n")[0]
    unreachable = found["no-source"]
    assert unreachable["state"] == "failed"
    assert "no apt source of the base image answered" in unreachable["error"]
    response = call(builds, "no-such-package")
    assert response.status_code == 503
    assert found["greet"]["state"] != "failed"


def test_a_requirement_without_a_wheel_is_built_in_the_base_image(
    builds: Gateway, docker_client: docker.DockerClient
) -> None:
    answer = call(builds, "built")
    assert answer.status_code == 200, answer.text
    built = answer.json()
    # built by the base image's python3, as an unprivileged user, with no network
    assert built["uid"] == 10001
    assert built["interfaces"] == ["lo"]
    python = docker_client.containers.run(
        DEFAULT_BASE_IMAGE, ["python3", "-c", "import sys; print(sys.version.split()[0])"],
        remove=True, network_disabled=True,
    ).decode().strip()  # fmt: skip
    assert built["python"] == python
    assert built["tag"].startswith(f"cp{python.split('.')[0]}{python.split('.')[1]}-linux_")
