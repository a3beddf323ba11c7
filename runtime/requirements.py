"""Resolving a function's requirements on the host, so image builds need no network.

pip installs wheels for the base image's interpreter (runtime/interpreter.py:
its Python version, ABI and platform tags, probed from the image itself) into a
directory that the image build copies to /opt/faas/deps. A requirement with no
wheel for that interpreter is built from its source distribution in a container
of the base image with no network (`Target.build_wheel`): the source
distribution and its build requirements' wheels are fetched here, on the host,
without running any of them (runtime/sdist_index.py), and the built wheel is
kept per source distribution and interpreter. Results are cached per
requirements content and interpreter under ~/.cache/faas/deps, so a second
project or a test run with the same requirements resolves nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from runtime import sdist_index, sdists
from runtime.errors import ImageBuildError
from runtime.interpreter import MACHINES, Interpreter, pip_target_args

WheelBuilder = Callable[[str, Mapping[str, bytes]], dict[str, bytes]]
"""(source distribution's file name, the files the builder gets: it and its build
requirements' wheels) -> the wheels built from it, file name -> content."""

PYPI = "https://pypi.org/simple/"
FETCH_TIMEOUT = 60.0


@dataclass(frozen=True)
class Target:
    """What requirements are resolved for: a base image's interpreter, and how to build
    wheels in a container of that image (None: wheels only)."""

    interpreter: Interpreter
    build_wheel: WheelBuilder | None = field(default=None, compare=False)


def default_interpreter() -> Interpreter:
    """The default base image's (python:3.11-slim-bookworm) on this machine: for the
    images planned with no engine to probe (the gateway's own)."""
    machine = MACHINES.get(platform.machine().lower(), platform.machine().lower())
    return Interpreter(
        implementation="cpython",
        version=(3, 11),
        soabi=f"cpython-311-{machine}-linux-gnu",
        machine=machine,
        libc="glibc",
        libc_version=(2, 36),
    )


def cache_base() -> Path:
    configured = os.environ.get("FAAS_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "faas"


def cache_root() -> Path:
    return cache_base() / "deps"


def resolve(requirements_file: Path, target: Target | None = None) -> Path:
    """A directory holding the installed requirements (possibly empty), built once per
    content and interpreter."""
    target = target or Target(default_interpreter())
    content = requirements_file.read_bytes()
    key = hashlib.sha256(content + b"\0" + target.interpreter.key.encode()).hexdigest()[:24]
    final = cache_root() / key
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="faas-wheels-") as built:
            _install(requirements_file, target, staging, Path(built))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(final)
    except OSError:  # another process resolved the same content first
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _install(requirements_file: Path, target: Target, staging: Path, built: Path) -> None:
    """pip install wheels only; each time it stops at a requirement with none for the
    target, build that one from source and try again with the built wheel offered."""
    tried: set[str] = set()
    while True:
        result = _pip(
            "install", "--quiet", "--no-warn-script-location", "--no-compile",
            "--only-binary=:all:", *pip_target_args(target.interpreter),
            "--find-links", str(built), "--target", str(staging), "-r", requirements_file.name,
            cwd=requirements_file.parent,
        )  # fmt: skip
        if result.returncode == 0:
            return
        output = result.stderr or result.stdout
        missing = sdists.missing_requirement(output)
        described = target.interpreter.describe()
        if missing is None or missing in tried or len(tried) >= sdists.MAX_BUILDS:
            detail = "\n".join(output.strip().splitlines()[-5:])
            raise ImageBuildError(
                f"resolving {requirements_file} for {described} failed "
                f"(pip exit {result.returncode}):\n{detail}"
            )
        if target.build_wheel is None:
            raise ImageBuildError(
                f"resolving {requirements_file}: {missing} publishes no wheel for {described}, "
                "and this engine cannot build it from source"
            )
        tried.add(missing)
        _build_from_source(missing, requirements_file, target, built)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()


def _build_from_source(
    requirement: str, requirements_file: Path, target: Target, built: Path
) -> None:
    assert target.build_wheel is not None
    interpreter = target.interpreter
    options = _index_options(requirements_file)
    sdist_name, sdist = _fetch_sdist(requirement, options, interpreter)
    cached = cache_base() / "wheels" / interpreter.key / hashlib.sha256(sdist).hexdigest()[:32]
    if not cached.is_dir():
        try:
            requires = sdists.build_requires(sdist_name, sdist)
        except ValueError as exc:
            raise ImageBuildError(str(exc)) from None
        inputs = {sdist_name: sdist, **_build_requirements(requires, options, interpreter)}
        wheels = target.build_wheel(sdist_name, inputs)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=_parent(cached)))
        for name, content in wheels.items():
            (staging / name).write_bytes(content)
        try:
            staging.rename(cached)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    for wheel in cached.iterdir():
        shutil.copy2(wheel, built / wheel.name)


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _index_options(requirements_file: Path) -> list[str]:
    """Where packages come from: the requirements file's options, else pip's configuration."""
    text = requirements_file.read_text(errors="replace")
    options = sdists.index_options(text, requirements_file.parent)
    if "--no-index" in options or {"-i", "--index-url"} & set(options):
        return options
    configured = _pip("config", "list", cwd=requirements_file.parent).stdout
    return sdists.configured_index_options(configured) + options


def _fetch_sdist(
    requirement: str, options: list[str], interpreter: Interpreter
) -> tuple[str, bytes]:
    """The source distribution pip would choose for `requirement`: (file name, content)."""
    try:
        name, _ = sdist_index.requirement_name(requirement)
    except ValueError as exc:
        raise ImageBuildError(str(exc)) from None
    candidates: list[sdist_index.Candidate] = []
    unreachable: list[str] = []
    pages = [f"{index.rstrip('/')}/{name}/" for index in sdists.indexes(options, PYPI)]
    for location in [*sdists.find_links(options), *pages]:
        found = _candidates(location)
        if found is None:
            unreachable.append(location)
        candidates += found or []
    chosen = sdist_index.choose(candidates, requirement, interpreter.python_version)
    if chosen is None:
        why = f" ({', '.join(unreachable)} did not answer)" if unreachable else ""
        raise ImageBuildError(
            f"{requirement} has neither a wheel for {interpreter.describe()} nor a source "
            f"distribution in the indexes the requirements name{why}"
        )
    content = _read(chosen.url)
    if chosen.sha256 and hashlib.sha256(content).hexdigest() != chosen.sha256:
        raise ImageBuildError(f"{chosen.url}: its sha256 is not the one the index gives")
    return chosen.filename, content


def _candidates(location: str) -> list[sdist_index.Candidate] | None:
    """The files at a find-links directory, or linked from an index or find-links page;
    None when a page did not answer (a 404 is an index without the project: [])."""
    path = (
        Path(urllib.request.url2pathname(urlsplit(location).path))
        if (location.startswith("file:"))
        else Path(location)
    )
    if "://" not in location or location.startswith("file:"):
        if path.is_dir():
            return [sdist_index.Candidate(p.name, p.as_uri()) for p in sorted(path.iterdir())]
        if path.is_file() and path.suffix in (".html", ".htm"):
            return sdist_index.page_candidates(path.read_text(errors="replace"), path.as_uri())
        index_page = path / "index.html"
        if index_page.is_file():
            return sdist_index.page_candidates(index_page.read_text(), index_page.as_uri())
        return []
    try:
        response = httpx.get(location, follow_redirects=True, timeout=FETCH_TIMEOUT)
    except httpx.HTTPError:
        return None
    if response.status_code == 404:
        return []
    if response.status_code != 200:
        return None
    return sdist_index.page_candidates(response.text, str(response.url))


def _read(url: str) -> bytes:
    if url.startswith("file:"):
        return Path(urllib.request.url2pathname(urlsplit(url).path)).read_bytes()
    try:
        response = httpx.get(url, follow_redirects=True, timeout=FETCH_TIMEOUT)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ImageBuildError(f"downloading {url} failed: {exc}") from None
    return response.content


def _build_requirements(
    requires: tuple[str, ...], options: list[str], interpreter: Interpreter
) -> dict[str, bytes]:
    """Wheels of a source distribution's build requirements, for the target interpreter."""
    if not requires:
        return {}
    with tempfile.TemporaryDirectory(prefix="faas-build-requires-") as directory:
        result = _pip(
            "download", "--quiet", "--only-binary=:all:", *pip_target_args(interpreter),
            *options, "--dest", directory, *requires,
            cwd=Path(directory),
        )  # fmt: skip
        if result.returncode != 0:
            detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise ImageBuildError(
                f"downloading the build requirements {', '.join(requires)} as wheels for "
                f"{interpreter.describe()} failed:\n{detail}"
            )
        return {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
