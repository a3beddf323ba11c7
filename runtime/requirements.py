"""Resolving a function's requirements on the host, so image builds need no network.

pip installs wheels for the image's platform (`--platform`, `--only-binary`)
into a directory that the image build copies to /opt/faas/deps. Results are
cached per requirements content under ~/.cache/faas/deps, so a second project
or a test run with the same requirements resolves nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.errors import ImageBuildError

PYTHON_VERSION = "3.11"
"""The Python minor version of the base image; wheels are chosen for it."""


def cache_root() -> Path:
    configured = os.environ.get("FAAS_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "faas"
    return base / "deps"


def _platform_tags() -> list[str]:
    """Every manylinux tag a glibc 2.36 image (Debian bookworm) can load.

    pip does not widen `--platform manylinux_2_36` to older tags by itself, so a wheel
    tagged only `manylinux2014` (= 2_17) would never be found; list them all.
    """
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower())
    machine = machine or platform.machine().lower()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def resolve(requirements_file: Path) -> Path:
    """A directory holding the installed requirements (possibly empty), built once per content."""
    content = requirements_file.read_bytes()
    platforms = _platform_tags()
    key = hashlib.sha256(
        b"\0".join([content, PYTHON_VERSION.encode(), *(p.encode() for p in platforms)])
    ).hexdigest()[:24]
    target = cache_root() / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-warn-script-location", "--no-compile", "--only-binary=:all:",
        "--implementation", "cp", "--python-version", PYTHON_VERSION,
        *(arg for p in platforms for arg in ("--platform", p)),
        "--target", str(staging), "-r", requirements_file.name,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=requirements_file.parent, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ImageBuildError(
            f"resolving {requirements_file} failed (pip exit {result.returncode}):\n"
            + "\n".join(detail)
        )
    try:
        staging.rename(target)
    except OSError:  # another process resolved the same content first
        shutil.rmtree(staging, ignore_errors=True)
    return target
