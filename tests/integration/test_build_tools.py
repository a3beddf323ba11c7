"""The build tools against a real container of the base image (scripts/test builds it) and
real pip, with no network: the probe, resolution for the probed Python, the builder.

A Debian trixie base image (Python 3.13) would take a minute and a mirror to make,
so the other Python is shown at the step that depends on it: pip, given trixie's
facts, chooses the cp313 wheel of two local ones, and the base image's the cp311.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.api.client import APIClient

from runtime import requirements
from runtime.backends.docker import tools
from runtime.backends.docker.engine import connect
from runtime.errors import ImageBuildError
from runtime.interpreter import Interpreter, parse_probe, platform_tags
from runtime.spec import DEFAULT_BASE_IMAGE

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def api() -> Iterator[APIClient]:
    client, _ = connect()
    yield client
    client.close()


@pytest.fixture(scope="module")
def base_id(api: APIClient) -> str:
    return str(api.inspect_image(DEFAULT_BASE_IMAGE)["Id"])


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAAS_CACHE_DIR", str(tmp_path / "cache"))
    tools._probed.clear()


def in_image(base_id: str, code: str) -> str:
    client = docker.from_env()
    try:
        output = client.containers.run(base_id, ["python3", "-c", code], remove=True,
                                       network_disabled=True)  # fmt: skip
    finally:
        client.close()
    return bytes(output).decode().strip()


def test_the_probe_reads_the_images_python(api: APIClient, base_id: str, tmp_path: Path) -> None:
    found = tools.interpreter(api, base_id)
    version = in_image(base_id, "import sys; print('%d.%d' % sys.version_info[:2])")
    assert found.python_version == version
    assert found.cache_tag == in_image(base_id, "import sys; print(sys.implementation.cache_tag)")
    assert found.libc == "glibc"
    assert not found.has_pip and not found.has_compiler and found.has_apt  # the minbase image
    # kept per image id, on disk: a second gateway does not run the image again
    cached = tmp_path / "cache" / "interpreters" / f"{base_id.replace(':', '-')}.json"
    assert parse_probe(cached.read_text()) == found


def wheel(name: str, tag: str, marker: str) -> tuple[str, bytes]:
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": f"FOR = {marker!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
        f"{info}/RECORD": b"",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return f"{name}-1.0-{tag}.whl", buffer.getvalue()


def test_pip_chooses_the_wheel_of_the_targets_python(
    api: APIClient, base_id: str, tmp_path: Path
) -> None:
    probed = tools.interpreter(api, base_id)
    trixie = Interpreter("cpython", (3, 13), f"cpython-313-{probed.machine}-linux-gnu",
                         probed.machine, "glibc", (2, 41))  # fmt: skip
    dist = tmp_path / "dist"
    dist.mkdir()
    for target in (probed, trixie):
        newest = platform_tags(target)[0]  # e.g. manylinux_2_41: only trixie's glibc loads it
        name, content = wheel("picky", f"{target.abi}-{target.abi}-{newest}", target.abi)
        (dist / name).write_bytes(content)
    listing = tmp_path / "requirements.txt"
    listing.write_text("--no-index\n--find-links dist\npicky==1.0\n")
    for target in (probed, trixie):
        deps = requirements.resolve(listing, requirements.Target(target))
        assert (deps / "picky.py").read_text() == f"FOR = {target.abi!r}\n"
    # nothing for a Python with no wheel, and no builder: said so, naming both
    other = Interpreter("cpython", (3, 12), "cpython-312-x86_64-linux-gnu", "x86_64", "glibc",
                        (2, 36))  # fmt: skip
    with pytest.raises(ImageBuildError, match=r"picky==1\.0 publishes no wheel for cpython 3\.12"):
        requirements.resolve(listing, requirements.Target(other))


FAILING_BACKEND = b"""\
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit("error: command 'gcc' failed: No such file or directory")
"""


def test_a_build_that_needs_a_compiler_says_the_image_has_none(
    api: APIClient, base_id: str
) -> None:
    files = {"pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "backend"\n'
             b'backend-path = ["."]\n', "backend.py": FAILING_BACKEND,
             "PKG-INFO": b"Metadata-Version: 2.1\nName: needscc\nVersion: 1.0\n"}  # fmt: skip
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"needscc-1.0/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    sdist = {"needscc-1.0.tar.gz": buffer.getvalue()}
    with pytest.raises(ImageBuildError) as caught:
        tools.build_wheel(api, base_id, "needscc-1.0.tar.gz", sdist)
    message = str(caught.value)
    assert "building needscc-1.0.tar.gz in a container of the base image failed" in message
    assert "no C compiler" in message
    assert "gcc' failed" in message
    # no container of the build is left
    assert api.containers(all=True, filters={"label": "faas.role=build-tool"}) == []
