"""Requirements with no wheel for the target: what to fetch, from where, and how it is
built (pure: runtime/sdists.py, runtime/sdist_index.py)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from runtime import sdist_index, sdists
from runtime.sdist_index import Candidate

PIP_NO_WHEEL = """\
ERROR: Could not find a version that satisfies the requirement tinypkg==1.0 (from versions: none)
ERROR: No matching distribution found for tinypkg==1.0
"""


@pytest.mark.parametrize(
    ("output", "requirement"),
    [
        (PIP_NO_WHEEL, "tinypkg==1.0"),
        ("ERROR: Could not find a version that satisfies the requirement psycopg2<3,>=2.9 "
         "(from versions: none)", "psycopg2<3,>=2.9"),
        ("ERROR: Could not find a version that satisfies the requirement foo[bar]>=1 "
         "(from app==2.0) (from versions: 0.1, 0.2)", "foo[bar]>=1"),
        ("ERROR: Cannot install a and b because these package versions have conflicting "
         "dependencies.", None),
        ("", None),
    ],
)  # fmt: skip
def test_missing_requirement(output: str, requirement: str | None) -> None:
    assert sdists.missing_requirement(output) == requirement


def test_index_options_of_a_requirements_file(tmp_path: Path) -> None:
    text = """\
# comment
--index-url https://mirror.example/simple
--extra-index-url=https://extra.example/simple  # trailing comment
-f ./dist
--find-links https://links.example/
--no-index
--pre
--trusted-host mirror.example
-r other.txt
-c constraints.txt
--require-hashes
numpy==2.0
"""
    assert sdists.index_options(text, tmp_path) == [
        "--index-url", "https://mirror.example/simple",
        "--extra-index-url", "https://extra.example/simple",
        "-f", str(tmp_path / "dist"),
        "--find-links", "https://links.example/",
        "--no-index", "--pre",
        "--trusted-host", "mirror.example",
    ]  # fmt: skip


def test_indexes_and_find_links_in_pips_order() -> None:
    options = ["--extra-index-url", "https://b/", "-i", "https://a/", "-f", "/dist"]
    assert sdists.indexes(options, "https://pypi.org/simple/") == ["https://a/", "https://b/"]
    assert sdists.indexes(["-f", "/dist"], "https://pypi.org/simple/") == [
        "https://pypi.org/simple/"
    ]
    assert sdists.indexes(["--no-index", "-f", "/dist"], "https://pypi") == []
    assert sdists.find_links(options) == ["/dist"]


def test_pips_configuration_counts_when_the_file_names_no_index() -> None:
    listed = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
:env:.no-index='true'
"""
    assert sdists.configured_index_options(listed) == [
        "--extra-index-url", "file:///opt/pypi/simple",
        "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/opt/wheels",
        "--no-index",
    ]  # fmt: skip


def sdist(files: dict[str, bytes], *, top: str = "pkg-1.0", kind: str = "tar") -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in files.items():
                archive.writestr(f"{top}/{name}", content)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, content in files.items():
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_build_requires() -> None:
    pyproject = b'[build-system]\nrequires = ["setuptools>=61", "cython"]\n'
    content = sdist({"pyproject.toml": pyproject, "sub/pyproject.toml": b"nonsense ["})
    assert sdists.build_requires("pkg-1.0.tar.gz", content) == ("setuptools>=61", "cython")
    zipped = sdist({"pyproject.toml": pyproject}, kind="zip")
    assert sdists.build_requires("pkg-1.0.zip", zipped) == ("setuptools>=61", "cython")
    # PEP 518's default when none is said, and an in-tree backend with nothing to install
    assert sdists.build_requires("p.tar.gz", sdist({"setup.py": b""})) == ("setuptools>=40.8.0",)
    no_table = sdist({"pyproject.toml": b"[tool.black]\n"})
    assert sdists.build_requires("p.tar.gz", no_table) == ("setuptools>=40.8.0",)
    in_tree = sdist({"pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "b"\n'})
    assert sdists.build_requires("p.tar.gz", in_tree) == ()


def test_unreadable_build_requires() -> None:
    with pytest.raises(ValueError, match=r"unreadable pyproject\.toml"):
        sdists.build_requires("p.tar.gz", sdist({"pyproject.toml": b"[build-system"}))
    bad = sdist({"pyproject.toml": b"[build-system]\nrequires = 'setuptools'\n"})
    with pytest.raises(ValueError, match="not a list of strings"):
        sdists.build_requires("p.tar.gz", bad)


def test_the_builder_gets_no_index_and_one_source() -> None:
    command = sdists.wheel_command("pkg-1.0.tar.gz")
    assert command[:4] == ["python3", "-m", "pip", "wheel"]
    assert "--no-index" in command and "--no-deps" in command
    assert command[-1] == "/in/pkg-1.0.tar.gz"


def test_a_failed_build_says_when_the_image_has_no_compiler() -> None:
    output = "...\nerror: command 'gcc' failed: No such file or directory\n"
    message = sdists.build_failure("psycopg2-2.9.tar.gz", output, has_compiler=False)
    assert "no C compiler" in message and "psycopg2-2.9.tar.gz" in message
    assert "gcc' failed" in message  # the tail of pip's output follows
    assert "no C compiler" not in sdists.build_failure("p", output, has_compiler=True)
    assert "no C compiler" not in sdists.build_failure("p", "SyntaxError", has_compiler=False)


# ---------------------------------------------------------------- finding the source

PAGE = """<!DOCTYPE html><html><body>
<a href="../../packages/tinypkg-0.9.tar.gz#sha256=%s">tinypkg-0.9.tar.gz</a>
<a href="https://files.example/tinypkg-1.0-py3-none-any.whl">wheel</a>
<a href="https://files.example/tinypkg-1.0.zip">zip</a>
<a href="https://files.example/tinypkg-1.0.tar.gz" data-requires-python="&gt;=3.8">1.0</a>
<a href="https://files.example/tinypkg-1.1.tar.gz" data-yanked="">yanked</a>
<a href="https://files.example/tinypkg-2.0.tar.gz" data-requires-python="&gt;=3.12">2.0</a>
<a href="https://files.example/tinypkg-3.0rc1.tar.gz">pre</a>
<a href="https://files.example/tinypkg_extra-9.0.tar.gz">another project</a>
</body></html>
""" % ("a" * 64)


def candidates() -> list[Candidate]:
    return sdist_index.page_candidates(PAGE, "https://pypi.example/simple/tinypkg/")


def test_page_candidates() -> None:
    found = {c.filename: c for c in candidates()}
    old = found["tinypkg-0.9.tar.gz"]
    assert old.url == "https://pypi.example/packages/tinypkg-0.9.tar.gz"
    assert old.sha256 == "a" * 64
    assert found["tinypkg-1.1.tar.gz"].yanked
    assert found["tinypkg-2.0.tar.gz"].requires_python == ">=3.12"


@pytest.mark.parametrize(
    ("requirement", "python", "chosen"),
    [
        ("tinypkg", "3.13", "tinypkg-2.0.tar.gz"),
        ("tinypkg", "3.11", "tinypkg-1.0.tar.gz"),  # 2.0 requires 3.12; 1.1 is yanked
        ("TinyPkg<1", "3.11", "tinypkg-0.9.tar.gz"),
        ("tinypkg==1.0", "3.11", "tinypkg-1.0.tar.gz"),  # .tar.gz before .zip
        ("tinypkg>=3.0rc1", "3.11", "tinypkg-3.0rc1.tar.gz"),  # asked for a pre-release
        ("tinypkg>5", "3.13", None),
        ("tinypkg-extra", "3.13", "tinypkg_extra-9.0.tar.gz"),
        ("other", "3.13", None),
    ],
)
def test_choose(requirement: str, python: str, chosen: str | None) -> None:
    found = sdist_index.choose(candidates(), requirement, python)
    assert (found.filename if found else None) == chosen


def test_an_unreadable_requirement() -> None:
    with pytest.raises(ValueError, match="cannot read requirement"):
        sdist_index.choose([], "not a requirement !", "3.11")
