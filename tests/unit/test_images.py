"""Image plans: the tag follows the inputs, and only the inputs."""

from __future__ import annotations

import dataclasses
import io
import sys
import tarfile
from pathlib import Path

import pytest

from runtime.backends.docker.images import _build_failure
from runtime.errors import FunctionUnavailable
from runtime.images import plan_image, plan_warm_image
from runtime.interpreter import Interpreter
from runtime.spec import Project, load_project_text

SPEC = """\
version: 1
project: demo
functions:
  hello:
    handler: functions/hello.py
  sizes:
    handler: functions/sizes.py:main
    requirements: functions/req.txt
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "hello.py").write_text("def handle(e, c):\n    return 'hi'\n")
    (tmp_path / "functions" / "sizes.py").write_text("def main(e, c):\n    return 1\n")
    (tmp_path / "functions" / "req.txt").write_text("humanize\n")
    (tmp_path / "functions" / "__pycache__").mkdir()
    (tmp_path / "functions" / "__pycache__" / "hello.cpython-311.pyc").write_bytes(b"junk")
    return load_project_text(SPEC, filename="functions.yaml", root=tmp_path)


def fake_deps(requirements: Path) -> Path:
    deps = requirements.parent.parent / "deps-cache" / "abc123"
    (deps / "humanize").mkdir(parents=True, exist_ok=True)
    (deps / "humanize" / "__init__.py").write_text("")
    return deps


def names(context: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(context)) as archive:
        return sorted(archive.getnames())


def dockerfile(context: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(context)) as archive:
        member = archive.extractfile("Dockerfile")
        assert member is not None
        return member.read().decode()


def test_context_holds_code_watchdog_and_no_bytecode(project: Project, tmp_path: Path) -> None:
    request = plan_image(project, project.functions["hello"], "sha256:base", fake_deps)
    files = names(request.context)
    assert "app/functions/hello.py" in files
    assert "faas_watchdog/__main__.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in files if f.startswith("deps/")]
    text = dockerfile(request.context)
    assert text.startswith("FROM sha256:base\n")
    assert "FAAS_HANDLER" not in text  # given per replica, so functions can share the image
    assert "USER 10001:10001" in text
    assert request.tag.startswith("faas-function:")


def test_requirements_are_copied_in(project: Project, tmp_path: Path) -> None:
    request = plan_image(project, project.functions["sizes"], "sha256:base", fake_deps)
    assert "deps/humanize/__init__.py" in names(request.context)
    assert "COPY deps/" in dockerfile(request.context)


def test_warm_code_holds_code_requirements_and_their_bytecode(project: Project) -> None:
    request = plan_image(project, project.functions["sizes"], "sha256:base", fake_deps)
    assert "app/functions/sizes.py" in request.code
    assert "deps/humanize/__init__.py" in request.code
    assert "Dockerfile" not in request.code and "faas_watchdog/__main__.py" not in request.code
    if sys.implementation.cache_tag == "cpython-311":  # the image's Python
        pyc = request.code[f"deps/humanize/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"]
        # PEP 552 flags: hash-based (bit 0), not checked against the source (bit 1 clear)
        assert int.from_bytes(pyc[4:8], "little") == 0b01
    # the bytecode is for warm watchdogs only: the image's tag and context are unchanged
    again = plan_image(project, project.functions["sizes"], "sha256:base", fake_deps)
    assert again.tag == request.tag
    assert not [f for f in names(request.context) if f.endswith(".pyc")]


def test_functions_sharing_code_and_requirements_share_an_image(project: Project) -> None:
    hello = plan_image(project, project.functions["hello"], "sha256:base", fake_deps)
    sizes = plan_image(project, project.functions["sizes"], "sha256:base", fake_deps)
    assert hello.tag != sizes.tag  # sizes has requirements
    twin = dataclasses.replace(project.functions["hello"], name="twin")
    assert plan_image(project, twin, "sha256:base", fake_deps).tag == hello.tag


def test_tag_is_stable_and_follows_inputs(project: Project, tmp_path: Path) -> None:
    hello = project.functions["hello"]
    first = plan_image(project, hello, "sha256:base", fake_deps).tag
    assert plan_image(project, hello, "sha256:base", fake_deps).tag == first
    assert plan_image(project, hello, "sha256:other", fake_deps).tag != first
    (tmp_path / "functions" / "hello.py").write_text("def handle(e, c):\n    return 'bye'\n")
    assert plan_image(project, hello, "sha256:base", fake_deps).tag != first


def test_missing_handler_is_reported_per_function(project: Project, tmp_path: Path) -> None:
    (tmp_path / "functions" / "hello.py").unlink()
    with pytest.raises(FunctionUnavailable, match=r"handler file functions/hello.py not found"):
        plan_image(project, project.functions["hello"], "sha256:base", fake_deps)


TRIXIE = Interpreter("cpython", (3, 13), "cpython-313-x86_64-linux-gnu", "x86_64", "glibc", (2, 41))


def test_system_packages_are_installed_as_root_before_the_user_changes(project: Project) -> None:
    hello = dataclasses.replace(project.functions["hello"], system_packages=("libpq5", "curl"))
    request = plan_image(project, hello, "sha256:base", fake_deps)
    text = dockerfile(request.context)
    install = text.index('packages="libpq5 curl"')
    assert text.index("USER 0") < install < text.index("USER 10001:10001")
    assert "apt-get install -y --no-install-recommends $packages" in text
    assert "rm -rf /var/lib/apt/lists/*" in text  # no package lists left in the image
    plain = plan_image(project, project.functions["hello"], "sha256:base", fake_deps)
    assert "apt-get" not in dockerfile(plain.context)
    assert plain.tag != request.tag
    other = dataclasses.replace(hello, system_packages=("libpq5",))
    assert plan_image(project, other, "sha256:base", fake_deps).tag != request.tag


def test_the_tag_follows_the_base_images_interpreter(project: Project) -> None:
    """The same requirements directory resolved for another Python is another image."""
    sizes = project.functions["sizes"]
    default = plan_image(project, sizes, "sha256:base", fake_deps)
    trixie = plan_image(project, sizes, "sha256:base", fake_deps, interpreter=TRIXIE)
    assert trixie.tag != default.tag
    # the host compiles no bytecode for a Python it is not
    assert not [name for name in trixie.code if name.endswith(".pyc")]


def test_a_warm_image_holds_its_kinds_system_packages() -> None:
    plain = plan_warm_image("sha256:base")
    with_packages = plan_warm_image("sha256:base", None, ("libpq5",))
    assert 'packages="libpq5"' in dockerfile(with_packages.context)
    assert "apt-get" not in dockerfile(plain.context)
    assert plain.tag != with_packages.tag


def test_a_failed_build_is_reported_by_the_steps_own_words() -> None:
    said = "faas: system_packages: no such package in the base image's apt sources: nope\n"
    output = ["Step 3/12 : RUN set -e; " + "x" * 400 + "\n", "Ign:1 file:/srv ./\n", said]
    error = "The command '/bin/sh -c set -e; ...' returned a non-zero code: 100"
    message = _build_failure("pg", error, output)
    first = message.splitlines()[0]
    assert first == (
        "building the image of pg failed: system_packages: no such package in the base "
        "image's apt sources: nope"
    )
    assert "Ign:1 file:/srv ./" in message
    assert "x" * 250 not in message  # a long step line is cut
    # with no word of its own, the engine's error, without the whole command
    plain = _build_failure("pg", error, ["Ign:1\n"]).splitlines()[0]
    assert plain == "building the image of pg failed: a build step exited with 100"
