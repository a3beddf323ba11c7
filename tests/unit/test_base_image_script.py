"""The base-image script: package data of the docker backend, run from a checkout too.

FAAS_BASE_ROOTFS (a root filesystem archive made before) is checked and passed on
without debootstrap; FAAS_BASE_ARCHIVE keeps the result off any engine, so these runs
need neither root nor an engine. The debootstrap path runs in scripts/test (`faas build`).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from runtime.backends.docker import images
from tests.conftest import REPO

WRAPPER = REPO / "scripts" / "build-base-image.sh"


def rootfs(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"#!"))
    return path


def build(script: Path, rootfs: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAAS_BASE_ROOTFS": str(rootfs), "FAAS_BASE_ARCHIVE": str(out)}
    return subprocess.run(
        ["bash", str(script), "faas-test-base:unit"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_script_is_package_data_of_the_docker_backend() -> None:
    with images.base_image_script() as script:
        assert script is not None
        assert script.parent == Path(images.__file__).parent
        assert script.read_text().startswith("#!/usr/bin/env bash\n")


def test_scripts_build_base_image_runs_the_packaged_script(tmp_path: Path) -> None:
    """One copy of the logic: the checkout's script only hands over to the package's."""
    given = rootfs(tmp_path / "root.tar", ["usr/bin/python3", "etc/os-release"])
    for script in (WRAPPER, REPO / "runtime" / "backends" / "docker" / images.BASE_IMAGE_SCRIPT):
        out = tmp_path / f"{script.parent.name}.tar"
        done = build(script, given, out)
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == given.read_bytes()
    assert "debootstrap --variant" not in WRAPPER.read_text()


def test_a_root_filesystem_without_python_is_refused(tmp_path: Path) -> None:
    done = build(images_script(), rootfs(tmp_path / "r.tar", ["bin/sh"]), tmp_path / "o.tar")
    assert done.returncode == 1
    assert "holds no bin/python3" in done.stderr
    assert not (tmp_path / "o.tar").exists()


def test_an_unreadable_root_filesystem_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.tar").write_text("not a tar archive")
    done = build(images_script(), tmp_path / "r.tar", tmp_path / "o.tar")
    assert done.returncode == 1
    assert "is not a readable tar archive" in done.stderr
    missing = build(images_script(), tmp_path / "missing.tar", tmp_path / "o.tar")
    assert missing.returncode == 1
    assert "is not a readable tar archive" in missing.stderr


def images_script() -> Path:
    with images.base_image_script() as script:
        assert script is not None
        return script
