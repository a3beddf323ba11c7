"""Which wheels fit a base image's Python: facts from the probe -> pip's options (pure)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime.interpreter import (
    PROBE,
    Interpreter,
    parse_probe,
    pip_target_args,
    platform_tags,
    to_dict,
)

BOOKWORM = Interpreter(
    "cpython", (3, 11), "cpython-311-x86_64-linux-gnu", "x86_64", "glibc", (2, 36)
)
TRIXIE = Interpreter("cpython", (3, 13), "cpython-313-x86_64-linux-gnu", "x86_64", "glibc", (2, 41))
TRIXIE_ARM = Interpreter(
    "cpython", (3, 13), "cpython-313-aarch64-linux-gnu", "aarch64", "glibc", (2, 41)
)
THREADED = Interpreter(
    "cpython", (3, 13), "cpython-313t-x86_64-linux-gnu", "x86_64", "glibc", (2, 41)
)
ALPINE = Interpreter("cpython", (3, 12), "cpython-312-x86_64-linux-musl", "x86_64", "musl", (1, 2))
PYPY = Interpreter("pypy", (3, 10), "pypy310-pp73-x86_64-linux-gnu", "x86_64", "glibc", (2, 36))


def probe_line(**changes: object) -> str:
    raw: dict[str, object] = {
        "implementation": "cpython", "version": [3, 13], "soabi": "cpython-313-x86_64-linux-gnu",
        "machine": "x86_64", "libc": "glibc", "libc_version": "2.41", "has_pip": False,
        "has_compiler": True, "has_apt": True,
    }  # fmt: skip
    raw.update(changes)
    return json.dumps(raw)


def test_the_probe_runs_on_this_python_and_reads_back() -> None:
    """PROBE is the code images run; here it runs on the host's Python, as it would there."""
    output = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    found = parse_probe(output)
    assert found.version == sys.version_info[:2]
    assert found.implementation == sys.implementation.name
    assert found.cache_tag == sys.implementation.cache_tag


def test_a_trixie_probe() -> None:
    found = parse_probe("some noise first\n" + probe_line())
    assert found == Interpreter(
        "cpython", (3, 13), "cpython-313-x86_64-linux-gnu", "x86_64", "glibc", (2, 41),
        has_pip=False, has_compiler=True, has_apt=True,
    )  # fmt: skip
    assert found.python_version == "3.13"
    assert found.abi == "cp313"
    assert found.cache_tag == "cpython-313"
    assert found.describe() == "cpython 3.13 (cp313, x86_64, glibc 2.41)"
    assert parse_probe(json.dumps(to_dict(found))) == found


def test_machine_names_are_the_wheel_tags_ones() -> None:
    assert parse_probe(probe_line(machine="arm64")).machine == "aarch64"
    assert parse_probe(probe_line(machine="AMD64")).machine == "x86_64"


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ("", "printed nothing"),
        ("Traceback (most recent call last):", "unexpected answer"),
        (probe_line(version=[3]), "unexpected answer"),
        (probe_line(libc_version="x.y"), "unexpected answer"),
        ('{"implementation": "cpython"}', "unexpected answer"),
        (probe_line(implementation="graalpy"), "graalpy is not supported"),
        (probe_line(machine="x86_64 --index-url=http://evil"), "unexpected machine"),
    ],
)
def test_bad_probe_answers(output: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_probe(output)


def test_bookworm_takes_every_manylinux_up_to_its_glibc_and_the_legacy_names() -> None:
    tags = platform_tags(BOOKWORM)
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_37_x86_64" not in tags
    for tag in ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64",
                "manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"):  # fmt: skip
        assert tag in tags
    assert tags[-1] == "linux_x86_64"  # wheels built from source in the image: last


def test_trixie_takes_newer_glibc_tags_and_aarch64_starts_at_2_17() -> None:
    assert platform_tags(TRIXIE)[0] == "manylinux_2_41_x86_64"
    arm = platform_tags(TRIXIE_ARM)
    assert arm[0] == "manylinux_2_41_aarch64"
    assert "manylinux2014_aarch64" in arm
    assert "manylinux_2_16_aarch64" not in arm
    assert "manylinux1_aarch64" not in arm


def test_musl_takes_musllinux_tags_only() -> None:
    assert platform_tags(ALPINE) == (
        "musllinux_1_2_x86_64", "musllinux_1_1_x86_64", "linux_x86_64",
    )  # fmt: skip


def test_pip_is_told_the_images_python_not_the_hosts() -> None:
    args = pip_target_args(TRIXIE)
    assert args[:6] == ["--implementation", "cp", "--python-version", "3.13", "--abi", "cp313"]
    platforms = [args[i + 1] for i, arg in enumerate(args) if arg == "--platform"]
    assert platforms == list(platform_tags(TRIXIE))
    assert pip_target_args(BOOKWORM)[3] == "3.11"


def test_free_threaded_and_pypy_abis() -> None:
    assert THREADED.abi == "cp313t"
    assert pip_target_args(PYPY)[:6] == [
        "--implementation", "pp", "--python-version", "3.10", "--abi", "pypy310_pp73",
    ]  # fmt: skip


def test_the_key_tells_apart_what_changes_the_wheels_only() -> None:
    assert TRIXIE.key != BOOKWORM.key
    assert THREADED.key != TRIXIE.key
    assert TRIXIE_ARM.key != TRIXIE.key
    # tools found in the image change no wheel, so not the key either
    with_tools = Interpreter(*[getattr(TRIXIE, f) for f in ("implementation", "version", "soabi",
                             "machine", "libc", "libc_version")], has_compiler=True)  # fmt: skip
    assert with_tools.key == TRIXIE.key
