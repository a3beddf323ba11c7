"""Which warm pool a function starts from: its kind, from its base, isolation, limits and deps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.backends.base import Limits
from runtime.warm_kinds import (
    FIXED_LIMITS,
    NOT_PRELOADED,
    WarmKind,
    importable_modules,
    kind_of,
    requirements_digest,
    requirements_files,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = "python:3.11-slim"
LIMITS = Limits(memory=256 * 1024 * 1024, cpus=1.0, pids=256)
BIGGER = Limits(memory=1024 * 1024 * 1024, cpus=1.0, pids=256)

SO = "cpython-311-x86_64-linux-gnu.so"

# What a resolved `pandas` requirement (and some company) installs, as an image's file names.
PANDAS_TREE = [
    "deps/pandas/__init__.py",
    "deps/pandas/core/frame.py",
    "deps/numpy/__init__.py",
    "deps/numpy/core/_multiarray_umath." + SO,
    "deps/numpy.libs/libopenblas.so",
    "deps/numpy-2.1.3.dist-info/RECORD",
    "deps/numpy-2.1.3.dist-info/METADATA",
    "deps/six.py",
    "deps/_cffi_backend." + SO,
    "deps/yaml/__init__.py",
    "deps/yaml/_yaml." + SO,
    "deps/google/protobuf/__init__.py",  # google is a namespace package: no __init__.py
    "deps/bin/f2py",
    "deps/setuptools/__init__.py",
    "deps/pkg_resources/__init__.py",
    "deps/_distutils_hack/__init__.py",
    "deps/distutils-precedence.pth",
    "deps/tests/__init__.py",
    "deps/__pycache__/six.cpython-311.pyc",
    "deps/ujson." + SO,
]


def deps_of(*names: str) -> dict[str, bytes]:
    return {name: f"content of {name}".encode() for name in names}


# ---------------------------------------------------------------- importable_modules


def test_importable_modules_of_a_pandas_tree() -> None:
    assert importable_modules(PANDAS_TREE) == ("numpy", "pandas", "six", "ujson", "yaml")


def test_importable_modules_does_not_depend_on_order() -> None:
    assert importable_modules(reversed(PANDAS_TREE)) == importable_modules(PANDAS_TREE)
    assert importable_modules(iter(PANDAS_TREE)) == importable_modules(PANDAS_TREE)


@pytest.mark.parametrize(
    ("names", "modules"),
    [
        ([], ()),
        (["deps/six.py"], ("six",)),
        (["deps/ujson." + SO], ("ujson",)),
        (["deps/fast.abi3.so"], ("fast",)),
        (["deps/attr/__init__.py", "deps/attrs/__init__.py"], ("attr", "attrs")),
        # a nested extension alone does not make its directory a package
        (["deps/yaml/_yaml." + SO], ()),
        (["deps/google/protobuf/__init__.py"], ()),
        (["deps/numpy.libs/libopenblas.so"], ()),
        (["deps/numpy-2.1.3.dist-info/RECORD"], ()),
        (["deps/bin/f2py"], ()),
        (["deps/__pycache__/six.cpython-311.pyc"], ()),
        (["deps/_private.py", "deps/_cffi_backend." + SO, "deps/_priv/__init__.py"], ()),
        (["deps/__init__.py"], ()),
        (["deps/distutils-precedence.pth", "deps/README.md", "deps/six.pyc"], ()),
        (["deps/not-a-name.py", "deps/2fast/__init__.py"], ()),
        ([f"deps/{tool}/__init__.py" for tool in sorted(NOT_PRELOADED)], ()),
        ([f"deps/{tool}.py" for tool in sorted(NOT_PRELOADED)], ()),
        # only requirements count: the code and the settings are not preloaded
        (["app/handler.py", "app/pkg/__init__.py", "init.json", "deps", "six.py"], ()),
        # the same module by two routes is listed once
        (["deps/six.py", "deps/six/__init__.py"], ("six",)),
    ],
)
def test_importable_modules(names: list[str], modules: tuple[str, ...]) -> None:
    assert importable_modules(names) == modules


# ---------------------------------------------------------------- requirements_files / digest


def test_requirements_files_keeps_only_installed_requirements() -> None:
    code = {
        "app/handler.py": b"def handle(event, context): ...",
        "app/.keep": b"",
        "deps/.keep": b"",
        "deps/six.py": b"six",
        "deps/__pycache__/six.cpython-311.pyc": b"\x00bytecode",
        "deps/numpy/__init__.py": b"numpy",
        "deps/numpy/__pycache__/__init__.cpython-311.pyc": b"\x00bytecode",
        "deps/numpy/core/.keep": b"",
        "deps/numpy-2.1.3.dist-info/RECORD": b"record",
        "requirements.txt": b"numpy\nsix\n",
        "dependencies/x.py": b"not deps/",
    }
    assert requirements_files(code) == {
        "deps/six.py": b"six",
        "deps/numpy/__init__.py": b"numpy",
        "deps/numpy-2.1.3.dist-info/RECORD": b"record",
    }
    assert requirements_files({"app/handler.py": b"x"}) == {}


def test_requirements_digest_of_nothing_is_empty() -> None:
    assert requirements_digest({}) == ""


def test_requirements_digest_follows_content_not_order() -> None:
    one = {"deps/a.py": b"a", "deps/b/__init__.py": b"b", "deps/c.py": b""}
    other = dict(reversed(list(one.items())))
    assert list(one) != list(other)
    digest = requirements_digest(one)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert requirements_digest(other) == digest
    assert requirements_digest(dict(one)) == digest


@pytest.mark.parametrize(
    "change",
    [
        {"deps/a.py": b"b"},  # one byte of content
        {"deps/a.py": b"a "},  # one byte more
        {"deps/d.py": b""},  # one more (empty) file
    ],
)
def test_requirements_digest_changes_with_a_byte(change: dict[str, bytes]) -> None:
    base = {"deps/a.py": b"a", "deps/b/__init__.py": b"b", "deps/c.py": b""}
    assert requirements_digest(base | change) != requirements_digest(base)


def test_requirements_digest_tells_names_apart() -> None:
    assert requirements_digest({"deps/a.py": b"x"}) != requirements_digest({"deps/b.py": b"x"})
    # name and content are not simply concatenated
    assert requirements_digest({"deps/ab": b"c"}) != requirements_digest({"deps/a": b"bc"})
    assert requirements_digest({"deps/a": b"", "deps/b": b"x"}) != requirements_digest(
        {"deps/a": b"x", "deps/b": b""}
    )


# ---------------------------------------------------------------- kind_of


def test_same_deps_and_settings_are_one_kind() -> None:
    deps = deps_of("deps/numpy/__init__.py", "deps/six.py")
    one = kind_of(BASE, "container", LIMITS, deps, None)
    other = kind_of(BASE, "container", LIMITS, dict(reversed(list(deps.items()))), None)
    assert one == other
    assert hash(one) == hash(other)
    pools = {one: "pool"}
    assert pools[other] == "pool"
    assert len({one, other}) == 1
    assert one.label == other.label


def test_kind_of_records_what_it_was_given() -> None:
    deps = deps_of("deps/numpy/__init__.py", "deps/six.py")
    kind = kind_of(BASE, "container", LIMITS, deps, None)
    assert kind == WarmKind(
        base=BASE,
        isolation="container",
        limits=None,
        requirements=requirements_digest(deps),
        preload=("numpy", "six"),
    )


def test_no_requirements_is_the_plain_kind_of_the_base() -> None:
    plain = kind_of(BASE, "container", LIMITS, {}, None)
    assert (plain.requirements, plain.preload, plain.limits) == ("", (), None)
    assert kind_of(BASE, "container", BIGGER, {}, ()) == plain
    assert kind_of("python:3.12-slim", "container", LIMITS, {}, None) != plain


@pytest.mark.parametrize(
    ("preload", "expected"),
    [
        (None, ("numpy", "pandas", "six", "ujson", "yaml")),
        ((), ()),
        (("pandas.io",), ("pandas.io",)),
        (("zlib", "numpy"), ("zlib", "numpy")),  # kept as given, order included
    ],
)
def test_preload(preload: tuple[str, ...] | None, expected: tuple[str, ...]) -> None:
    deps = deps_of(*PANDAS_TREE)
    kind = kind_of(BASE, "container", LIMITS, deps, preload)
    assert kind.preload == expected
    assert isinstance(kind.preload, tuple)
    assert kind.requirements == requirements_digest(deps)


def test_preload_given_as_a_list_is_made_a_tuple() -> None:
    kind = kind_of(BASE, "container", LIMITS, {}, ["json"])  # type: ignore[arg-type]
    assert kind.preload == ("json",)
    hash(kind)


def test_preload_tells_kinds_apart() -> None:
    deps = deps_of(*PANDAS_TREE)
    kinds = {kind_of(BASE, "container", LIMITS, deps, p) for p in (None, (), ("numpy",))}
    assert len(kinds) == 3
    assert len({kind.label for kind in kinds}) == 3


def test_isolation_tells_kinds_apart() -> None:
    deps = deps_of("deps/six.py")
    container = kind_of(BASE, "container", LIMITS, deps, None)
    gvisor = kind_of(BASE, "gvisor", LIMITS, deps, None)
    assert container != gvisor
    assert container.label != gvisor.label


def test_limits_only_matter_where_they_cannot_change() -> None:
    assert "gvisor" in FIXED_LIMITS and "container" not in FIXED_LIMITS
    deps = deps_of("deps/six.py")
    small = kind_of(BASE, "container", LIMITS, deps, None)
    big = kind_of(BASE, "container", BIGGER, deps, None)
    assert small == big
    assert small.limits is None

    small_gvisor = kind_of(BASE, "gvisor", LIMITS, deps, None)
    big_gvisor = kind_of(BASE, "gvisor", BIGGER, deps, None)
    assert small_gvisor != big_gvisor
    assert (small_gvisor.limits, big_gvisor.limits) == (LIMITS, BIGGER)
    assert small_gvisor.label != big_gvisor.label
    assert kind_of(BASE, "gvisor", LIMITS, deps, None) == small_gvisor


def test_requirements_tell_kinds_apart_even_with_the_same_preload() -> None:
    one = kind_of(BASE, "container", LIMITS, {"deps/six.py": b"1.16"}, None)
    other = kind_of(BASE, "container", LIMITS, {"deps/six.py": b"1.17"}, None)
    assert one.preload == other.preload == ("six",)
    assert one != other
    assert one.label != other.label


# ---------------------------------------------------------------- label

LABEL_DIGEST = r"-[0-9a-f]{6}"


@pytest.mark.parametrize(
    ("deps", "preload", "pattern"),
    [
        ({}, None, "plain"),
        ({}, (), "plain"),
        (deps_of("deps/six.py"), (), "deps"),
        (deps_of("deps/numpy/__init__.py"), None, "numpy"),
        (deps_of("deps/numpy/__init__.py", "deps/pandas/__init__.py"), None, r"numpy\+pandas"),
        (deps_of(*PANDAS_TREE), None, r"numpy\+pandas\+six\+2"),
        ({}, ("c", "b", "a"), r"a\+b\+c"),
        ({}, ("e", "d", "c", "b", "a"), r"a\+b\+c\+2"),
        ({}, ("pandas.io",), r"pandas\.io"),
    ],
)
def test_label_is_readable(
    deps: dict[str, bytes], preload: tuple[str, ...] | None, pattern: str
) -> None:
    label = kind_of(BASE, "container", LIMITS, deps, preload).label
    assert re.fullmatch(pattern + LABEL_DIGEST, label), label


def test_label_is_stable_across_processes() -> None:
    """The same kind has the same label in another process (not a per-process hash())."""
    make = (
        "from runtime.warm_kinds import WarmKind;"
        f"print(WarmKind(base={BASE!r}, requirements='0123456789abcdef', preload=('numpy',)).label)"
    )
    here = WarmKind(base=BASE, requirements="0123456789abcdef", preload=("numpy",)).label
    for seed in ("1", "2"):
        there = subprocess.run(
            [sys.executable, "-c", make],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert there == here


def test_other_system_packages_are_another_kind() -> None:
    """A warm watchdog's image holds its kind's packages: a function that needs libpq5
    never starts on one whose image lacks it, nor one that needs none on a bigger image."""
    deps = deps_of("deps/numpy/__init__.py")
    plain = kind_of(BASE, "container", LIMITS, deps, None)
    libpq = kind_of(BASE, "container", LIMITS, deps, None, ("libpq5",))
    assert libpq != plain and libpq.label != plain.label
    assert libpq.system_packages == ("libpq5",)
    both = kind_of(BASE, "container", LIMITS, deps, None, ("libpq5", "curl"))
    assert both != libpq
    # the order they are listed in does not matter
    assert kind_of(BASE, "container", LIMITS, deps, None, ("curl", "libpq5", "curl")) == both
