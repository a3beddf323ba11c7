"""faas as a new user gets it: built into a wheel, installed into a fresh virtual
environment, and run in a directory that has nothing to do with this checkout.

The wheel is built from a copy of the package sources (no build isolation: the
setuptools of this venv, no network), and installed with `--no-index` from the
wheels of its dependencies that scripts/test put in the cache's wheelhouse. Then
`faas init`, `faas up` and `faas new` run from that venv, with no PYTHONPATH, so
that anything read from a checkout-relative path fails here.

The project's base image is named after a registry that does not answer
(127.0.0.1:9), so `faas up` takes the path of hosts with no registry: it runs the
base-image script shipped in the installed package and imports its result. The
script is given a root filesystem to start from (FAAS_BASE_ROOTFS: the platform's
base image, exported) rather than running debootstrap again, which needs a Debian
mirror and a minute; scripts/test's `faas build` runs the debootstrap path of the
same script where no registry answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

import docker
import docker.errors
import httpx
import pytest
from packaging.requirements import Requirement

from runtime import distribution, requirements
from runtime.own_code import walk_files
from runtime.spec import DEFAULT_BASE_IMAGE
from tests.conftest import REPO, free_port, left_behind, unique_project, wait_for

pytestmark = pytest.mark.docker

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "faas", "gateway", "runtime")
"""What the wheel is built from (pyproject.toml's packages, readme and license files)."""
UNREACHABLE_REGISTRY = "127.0.0.1:9"


def wheelhouse() -> Path:
    return requirements.cache_base() / "wheelhouse"


def run(
    command: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def build_wheel(work: Path) -> Path:
    source = work / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    dist = work / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--isolated", "--no-index", "--no-deps",
         "--no-build-isolation", "--quiet", "--wheel-dir", str(dist), str(source)],
        cwd=work,
    )  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    return wheel


def user_environment(venv: Path, cache: Path) -> dict[str, str]:
    """A shell in which the venv's `faas` is on PATH, and nothing points at this checkout."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "FAAS_CACHE_DIR": str(cache), "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the fresh venv it is installed in)."""
    if not any(wheelhouse().glob("*.whl")):
        pytest.fail(f"no wheels in {wheelhouse()}: scripts/test puts faas's dependencies there")
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--isolated", "--no-index",
         "--quiet", "--find-links", str(wheelhouse()), str(wheel)],
        cwd=work,
    )  # fmt: skip
    return wheel, venv


def test_the_wheel_holds_every_file_of_the_packages(installed: tuple[Path, Path]) -> None:
    """Modules and package data alike (the base-image script, the dashboard's files): a
    file added to a package but left out of pyproject.toml's package-data fails here."""
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    files = {
        name
        for package in distribution.PACKAGES
        for name, _ in walk_files(REPO / package, PurePosixPath(package))
    }
    assert "runtime/backends/docker/build-base-image.sh" in files
    assert files <= names, sorted(files - names)
    assert not [name for name in names if name.startswith(("tests/", "scripts/", "functions/"))]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert wheel.name.startswith(f"{project['name']}-{project['version']}-")


def test_the_packages_and_their_metadata_come_from_the_venv(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    env = user_environment(venv, tmp_path / "cache")
    found = run(
        ["python", "-c",
         "import faas, gateway, runtime\n"
         "from runtime.backends.docker import images\n"
         "with images.base_image_script() as script: print(script)\n"
         "for module in (faas, gateway, runtime): print(module.__file__)"],
        cwd=tmp_path, env=env,
    ).stdout.split()  # fmt: skip
    site = (venv / "lib").resolve()
    assert len(found) == 4, found
    assert all(Path(path).resolve().is_relative_to(site) for path in found), found
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert run([str(venv / "bin" / "faas"), "--version"], cwd=tmp_path, env=env).stdout == (
        f"faas, version {project['version']}\n"
    )
    # what `faas deploy` pins the gateway image's dependencies from
    metadata = run(
        ["python", "-c",
         "from runtime import distribution\n"
         "print(distribution.name()); print(*distribution.requirements(), sep='\\n')"],
        cwd=tmp_path, env=env,
    ).stdout.splitlines()  # fmt: skip
    assert metadata[0] == project["name"]
    assert {Requirement(r) for r in metadata[1:]} == {
        Requirement(r) for r in project["dependencies"]
    }


@contextlib.contextmanager
def base_rootfs(client: docker.DockerClient, path: Path) -> Iterator[Path]:
    """The root filesystem of the platform's base image, as a tar archive at `path`."""
    container = client.containers.create(DEFAULT_BASE_IMAGE)
    try:
        with path.open("wb") as out:
            for chunk in container.export():
                out.write(chunk)
    finally:
        container.remove()
    try:
        yield path
    finally:
        path.unlink()


def remove_images_on(client: docker.DockerClient, base: str) -> None:
    """The base image and the function and warm images built on it (they hold its layer)."""
    try:
        layer = client.api.inspect_image(base)["RootFS"]["Layers"][0]
    except docker.errors.ImageNotFound:
        return
    for image in client.api.images():
        if not any(
            tag.startswith(("faas-function:", "faas-warm:")) for tag in image["RepoTags"] or []
        ):
            continue
        with contextlib.suppress(docker.errors.ImageNotFound):
            if client.api.inspect_image(image["Id"])["RootFS"]["Layers"][:1] == [layer]:
                client.api.remove_image(image["Id"], force=True)
    client.api.remove_image(base)


def remove_left_behind(client: docker.DockerClient, project: str) -> tuple[list[str], list[str]]:
    """What the stopped project left in the engine (`left_behind`), removed again."""
    containers, networks = left_behind(client, project)
    for name in containers:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    for name in networks:
        with contextlib.suppress(docker.errors.NotFound):
            client.networks.get(name).remove()
    return containers, networks


def served(url: str) -> httpx.Response | None:
    """The answer to GET `url` when it is a 200, else None (not up, or no route yet)."""
    with contextlib.suppress(httpx.HTTPError):
        answer = httpx.get(url, timeout=5, trust_env=False)
        return answer if answer.status_code == 200 else None
    return None


def test_a_new_project_runs_from_the_installed_wheel(
    installed: tuple[Path, Path],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    _, venv = installed
    faas = str(venv / "bin" / "faas")
    project = unique_project("wheel")
    base = f"{UNREACHABLE_REGISTRY}/faas-test-base:{uuid.uuid4().hex[:12]}"
    env = user_environment(venv, tmp_path / "cache")
    home = tmp_path / "home"
    home.mkdir()
    run([faas, "init", "userproj", "--name", project], cwd=home, env=env)
    root = home / "userproj"
    spec = root / "functions.yaml"
    spec.write_text(spec.read_text().replace("defaults:\n", f"defaults:\n  base_image: {base}\n"))
    port, admin_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "up.log"
    try:
        with base_rootfs(docker_client, tmp_path / "rootfs.tar") as rootfs:
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    [faas, "up", "--port", str(port), "--admin-port", str(admin_port)],
                    cwd=root, env={**env, "FAAS_BASE_ROOTFS": str(rootfs)},
                    stdout=log, stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
            try:
                wait_for(
                    lambda: process.poll() is not None or served(f"{url}/healthz"),
                    240,
                    "faas up to serve",
                )
                assert process.poll() is None, f"faas up exited:\n{log_path.read_text()}"
                output = log_path.read_text()
                assert f"no registry answers: building {base} from Debian packages" in output, (
                    output
                )
                labels = docker_client.api.inspect_image(base)["Config"]["Labels"] or {}
                assert labels.get("faas.base") == "debootstrap"

                hello = httpx.get(f"{url}/hello?name=ada", timeout=60, trust_env=False)
                assert hello.status_code == 200, hello.text
                assert hello.json() == {"message": "hello ada", "function": "hello"}

                # dev mode (the default): a new entry in functions.yaml is served with no restart
                run([faas, "new", "greet", "--route", "/greet"], cwd=root, env=env)
                greet = wait_for(
                    lambda: served(f"{url}/greet"), 60, "the new function to be served"
                )
                assert greet.json() == {"message": "hello world", "function": "greet"}
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                try:
                    code = process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
                    raise
            assert code == 0, f"faas up exited with {code}:\n{log_path.read_text()}"
            assert remove_left_behind(docker_client, project) == ([], []), log_path.read_text()
    finally:
        remove_left_behind(docker_client, project)
        remove_images_on(docker_client, base)
