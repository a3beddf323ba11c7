"""What goes into a function image, and the tag that names it.

The tag is a hash of every input (base image id, Dockerfile, watchdog, the
function's code directory, its resolved requirements), so an unchanged
function keeps its image and `faas up` skips the build, and functions that
share a code directory and requirements share one image. The build context is
assembled here as a tar archive; the backend only hands it to the engine.

Where the watchdog finds things in an image (code, requirements, its own package,
its port) is part of the host <-> watchdog contract, runtime/watchdog/wire.py: the
context names code `app/...` and requirements `deps/...` as a warm watchdog's init
archive does, so `ImageRequest.code` is what a warm start sends. `walk_files`,
`files_digest` and `tar_files` are the context-building steps other images (the
gateway's, runtime/backends/swarm/gateway_image.py) share.
"""

from __future__ import annotations

import asyncio
import compileall
import hashlib
import io
import py_compile
import sys
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from runtime import distribution
from runtime.backends.base import Backend, ImageRequest
from runtime.errors import FunctionUnavailable
from runtime.interpreter import Interpreter
from runtime.own_code import own_files, walk_files
from runtime.requirements import Target, default_interpreter
from runtime.spec import FunctionSpec, Project
from runtime.watchdog import wire

WATCHDOG_DIR = Path(__file__).resolve().parent / "watchdog"
"""The watchdog's sources: a subpackage of this one, wherever this is installed."""
CODE_DIR = wire.CODE_DIR
DEPS_DIR = wire.DEPS_DIR
WATCHDOG_ROOT = "/opt/faas"
"""Holds the watchdog's package; on PYTHONPATH with the requirements (DEPS_DIR)."""
CODE = PurePosixPath(wire.INIT_CODE)
DEPS = PurePosixPath(wire.INIT_DEPS)

DOCKERFILE = """\
FROM {base}
{system}{deps}COPY {package}/ {root}/{package}/
COPY {handler_package}/ {root}/{handler_package}/
COPY {code}/ {code_dir}/
# Byte-compile now: the root filesystem is read-only at run time. A syntax error
# in the user's code must not fail the build: the watchdog reports it with its line.
RUN python3 -m compileall -q {root} && (python3 -m compileall -q {code_dir} || true)
ENV PYTHONPATH={root}:{deps_dir} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    HOME=/tmp {code_dir_env}={code_dir}
WORKDIR {code_dir}
USER 10001:10001
EXPOSE {port}
CMD ["python3", "-m", "{package}"]
"""
DEPS_LINE = f"COPY {DEPS}/ {DEPS_DIR}/\n"
SYSTEM_PACKAGES = """\
USER 0
RUN set -e; packages="{packages}"; \\
    if ! command -v apt-get >/dev/null 2>&1; then \\
      echo "faas: system_packages: the base image has no apt-get (system_packages needs a \\
Debian-based base image)"; exit 100; fi; \\
    export DEBIAN_FRONTEND=noninteractive; \\
    apt-get update >/tmp/faas-apt.log 2>&1 || true; \\
    if ! ls /var/lib/apt/lists/ | grep -q Packages; then cat /tmp/faas-apt.log; \\
      echo "faas: system_packages: no apt source of the base image answered \\
(apt-get update fetched no package list; see above)"; exit 100; fi; \\
    missing=""; for package in $packages; do \\
      apt-cache show "$package" >/dev/null 2>&1 || missing="$missing $package"; done; \\
    if [ -n "$missing" ]; then \\
      echo "faas: system_packages: no such package in the base image's apt sources:$missing"; \\
      exit 100; fi; \\
    apt-get install -y --no-install-recommends $packages; \\
    apt-get clean; rm -rf /var/lib/apt/lists/* /tmp/faas-apt.log
"""
"""Installs a function's Debian packages (names validated by the spec: nothing else reaches
the shell) from the base image's own apt sources, failing with a `faas: ` line that names
what is wrong (runtime/backends/docker/images.py makes that line the error)."""

RequirementsResolver = Callable[[Path], Path]
COMPILED_MARKER = ".faas-compiled"
"""Left in a requirements directory once its bytecode is made (`deps_bytecode`); not
one of the requirements' files, so never part of an image or a warm kind."""


def image_reference(registry: str | None, tag: str) -> str:
    """Where nodes get a function image from: `<registry>/<tag>` when one is set, else local."""
    return f"{registry}/{tag}" if registry else tag


def code_mount(project: Project, function: FunctionSpec) -> tuple[str, str]:
    """(host path, container path) of the code a development replica mounts read-only."""
    code = code_root(function)
    return str(project.root / code), f"{CODE_DIR}/{code}"


def code_root(function: FunctionSpec) -> PurePosixPath:
    """The project directory baked into the image: the handler's top-level directory."""
    parts = PurePosixPath(function.handler_file).parts
    return PurePosixPath(parts[0]) if len(parts) > 1 else PurePosixPath(function.handler_file)


async def requirements_target(backend: Backend, base_image_id: str) -> Target:
    """What the functions on a base image resolve their requirements for: its own
    interpreter, and wheels built from source in a container of it.

    The requirements are resolved in a thread (`plan_image`); a build goes back to this
    event loop, where the backend's verbs run.
    """
    if not base_image_id:  # an engine that builds nothing here
        return Target(default_interpreter())
    interpreter = await backend.interpreter(base_image_id)
    loop = asyncio.get_running_loop()

    def build_wheel(sdist: str, inputs: Mapping[str, bytes]) -> dict[str, bytes]:
        call = backend.build_wheel(base_image_id, sdist, inputs)
        return asyncio.run_coroutine_threadsafe(call, loop).result()

    return Target(interpreter, build_wheel)


def plan_image(
    project: Project,
    function: FunctionSpec,
    base_image_id: str,
    resolve_requirements: RequirementsResolver,
    *,
    bake_code: bool = True,
    interpreter: Interpreter | None = None,
) -> ImageRequest:
    """The image of one function; without `bake_code` (development) the code is mounted
    at run time instead, so the tag, and the image, survive every edit of the code.

    `resolve_requirements` resolves for `interpreter`, the base image's (by default the
    default base image's), whose facts are part of the tag too."""
    interpreter = interpreter or default_interpreter()
    handler = project.root / function.handler_file
    if not handler.is_file():
        raise FunctionUnavailable(f"handler file {function.handler_file} not found")
    files: dict[str, bytes] = {f"{CODE}/.keep": b""}
    if bake_code:
        others = [f.handler_file for f in project.functions.values() if f.name != function.name]
        for own in own_files(project.root, function.handler_file, others, function.include):
            files[str(CODE / own)] = (project.root / own).read_bytes()
    files.update(watchdog_files())
    deps_key = ""
    bytecode: dict[str, bytes] = {}
    if function.requirements:
        requirements = project.root / function.requirements
        if not requirements.is_file():
            raise FunctionUnavailable(f"requirements file {function.requirements} not found")
        deps_dir = resolve_requirements(requirements)
        deps_key = deps_dir.name
        for relative, path in walk_files(deps_dir, DEPS):
            if path.name != COMPILED_MARKER:  # ours, made after the first build
                files[relative] = path.read_bytes()
        files.setdefault(f"{DEPS}/.keep", b"")
        bytecode = deps_bytecode(deps_dir, interpreter)
    files["Dockerfile"] = _dockerfile(
        base_image_id,
        with_deps=bool(function.requirements),
        system_packages=function.system_packages,
    )
    digest = files_digest(files, extra=f"{deps_key}:{interpreter.key}")
    # Content-addressed, and free of the function's name and handler (those are given to
    # each replica at creation): functions with the same code and requirements share one
    # image; in development (code mounted) every function with the same requirements does.
    tag = f"faas-function:{digest[:16]}"
    code_files = {
        name: content
        for name, content in files.items()
        if name.startswith((wire.INIT_CODE, wire.INIT_DEPS))
    }
    code_files.update(bytecode)
    return ImageRequest(function=function.name, tag=tag, context=tar_files(files), code=code_files)


def deps_bytecode(deps_dir: Path, interpreter: Interpreter) -> dict[str, bytes]:
    """Compiled requirements (`deps/.../__pycache__/*.pyc` -> bytes) for a warm watchdog.

    An image compiles its requirements when it is built; a warm watchdog receives
    them as files, and would compile every module at each cold start. These are
    unchecked-hash .pyc files (PEP 552), valid whatever the files' times, made once
    per requirements directory, and only when this Python makes the image's bytecode.
    """
    if sys.implementation.cache_tag != interpreter.cache_tag:
        return {}
    marker = deps_dir / COMPILED_MARKER
    if not marker.exists():
        compileall.compile_dir(
            deps_dir,
            ddir=f"{DEPS_DIR}/",
            quiet=2,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        marker.touch()
    return {
        f"{DEPS}/{path.relative_to(deps_dir).as_posix()}": path.read_bytes()
        for path in sorted(deps_dir.rglob("__pycache__/*.pyc"))
    }


def plan_warm_image(
    base_image_id: str,
    deps: Mapping[str, bytes] | None = None,
    system_packages: tuple[str, ...] = (),
) -> ImageRequest:
    """The image of a warm watchdog: the watchdog on the base image, with no function,
    and the requirements and system packages of one kind of function (`deps/<path>` ->
    content), if any (runtime/warm_kinds.py).

    Its /app is empty; at run time a tmpfs mounted there receives a function's code.
    """
    files: dict[str, bytes] = {f"{CODE}/.keep": b"", f"{DEPS}/.keep": b""}
    files.update(deps or {})
    files.update(watchdog_files())
    files["Dockerfile"] = _dockerfile(
        base_image_id, with_deps=True, system_packages=system_packages
    )
    digest = files_digest(files, extra="warm")
    return ImageRequest(function="", tag=f"faas-warm:{digest[:16]}", context=tar_files(files))


def watchdog_files() -> dict[str, bytes]:
    """The watchdog's sources, under the package name images run it as, and `faas.handler`."""
    files = {
        relative: path.read_bytes()
        for relative, path in walk_files(WATCHDOG_DIR, PurePosixPath(wire.PACKAGE))
    }
    handler_dir = distribution.package_directory(wire.HANDLER_PACKAGE)
    for name in wire.HANDLER_MODULES:
        files[f"{wire.HANDLER_PACKAGE}/{name}"] = (handler_dir / name).read_bytes()
    return files


def _dockerfile(
    base_image_id: str, *, with_deps: bool, system_packages: tuple[str, ...] = ()
) -> bytes:
    system = SYSTEM_PACKAGES.format(packages=" ".join(system_packages)) if system_packages else ""
    return DOCKERFILE.format(
        base=base_image_id,
        system=system,
        deps=DEPS_LINE if with_deps else "",
        package=wire.PACKAGE,
        handler_package=wire.HANDLER_PACKAGE,
        root=WATCHDOG_ROOT,
        code=CODE,
        code_dir=CODE_DIR,
        code_dir_env=wire.CODE_DIR_ENV,
        deps_dir=DEPS_DIR,
        port=wire.PORT,
    ).encode()


def files_digest(files: Mapping[str, bytes], extra: str) -> str:
    """A hash of names and contents (and `extra`): what an image's tag is made of."""
    digest = hashlib.sha256(extra.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def tar_files(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of `files` (name -> content), in name order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()
