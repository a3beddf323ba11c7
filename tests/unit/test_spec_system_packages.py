"""functions.yaml's `system_packages`: Debian package names, per function and in defaults."""

from __future__ import annotations

import pytest

from tests.unit.test_spec_events import (
    MINIMAL,
    assert_one_problem,
    load,
    problems_of,
    with_function,
)


@pytest.mark.parametrize(
    ("lines", "packages"),
    [
        ((), ()),
        (("system_packages:",), ()),
        (("system_packages: []",), ()),
        (("system_packages: [libpq5]",), ("libpq5",)),
        (("system_packages: [libpq5, libgomp1, libpq5]",), ("libpq5", "libgomp1")),
        (("system_packages:", "  - g++", "  - libstdc++6", "  - python3.11-dev"),
         ("g++", "libstdc++6", "python3.11-dev")),
    ],
)  # fmt: skip
def test_system_packages(lines: tuple[str, ...], packages: tuple[str, ...]) -> None:
    hello = load(with_function(*lines)).functions["hello"]
    assert hello.system_packages == packages
    hash(hello.system_packages)  # part of a warm pool's kind: a tuple, not a list


def test_defaults_come_first_and_a_function_adds_its_own() -> None:
    text = "defaults:\n  system_packages: [ca-certificates, libpq5]\n" + MINIMAL
    text += "    system_packages: [libpq5, curl]\n  other:\n    handler: functions/other.py\n"
    project = load(text)
    assert project.functions["hello"].system_packages == ("ca-certificates", "libpq5", "curl")
    assert project.functions["other"].system_packages == ("ca-certificates", "libpq5")


EXPECTED = "expected a Debian package name"


@pytest.mark.parametrize(
    ("line", "got"),
    [
        ('system_packages: ["libpq5; rm -rf /"]', "got 'libpq5; rm -rf /'"),
        ('system_packages: ["$(curl evil)"]', "got '$(curl evil)'"),
        ('system_packages: ["libpq5 curl"]', "got 'libpq5 curl'"),
        ('system_packages: ["-oDebug=1"]', "got '-oDebug=1'"),
        ('system_packages: ["LibPQ5"]', "got 'LibPQ5'"),
        ('system_packages: ["a"]', "got 'a'"),
        ('system_packages: ["libpq5=15.4"]', "got 'libpq5=15.4'"),
        ('system_packages: ["libpq5:amd64"]', "got 'libpq5:amd64'"),
        ('system_packages: ["libpq5\\n"]', "got 'libpq5\\n'"),
        ("system_packages: [1]", "got 1"),
        ("system_packages: [[libpq5]]", "got a list"),
    ],
)
def test_bad_package_names_are_named_with_their_line(line: str, got: str) -> None:
    problems = problems_of(with_function(line))
    assert_one_problem(problems, 5, "functions.hello.system_packages[0]", EXPECTED)
    assert got in problems[0].message


def test_a_bad_name_in_defaults_names_the_defaults_field() -> None:
    problems = problems_of("defaults:\n  system_packages: [ok-name, 'bad name']\n" + MINIMAL)
    assert_one_problem(problems, 2, "defaults.system_packages[1]", EXPECTED)


def test_not_a_list() -> None:
    problems = problems_of(with_function("system_packages: libpq5"))
    assert_one_problem(problems, 5, "functions.hello.system_packages", "list")
