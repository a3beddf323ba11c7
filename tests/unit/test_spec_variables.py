"""`${NAME}` placeholders in functions.yaml values, and the .env file they also read."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from runtime.errors import Problem, SpecError
from runtime.spec import Project, load_project, load_project_text
from runtime.spec._dotenv import parse_dotenv
from runtime.spec._interpolate import PlaceholderError, substitute

VARIABLES = {"NAME": "world", "EMPTY": "", "PLACEHOLDER": "${NAME}", "DOLLAR": "$"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("hello ${NAME}!", "hello world!"),
        ("${NAME}${NAME}", "worldworld"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),  # :- also covers set but empty
        ("[${EMPTY}]", "[]"),
        ("${NAME:-fallback}", "world"),
        ("${MISSING:-}", ""),
        ("${MISSING:-a b: {c}}", "a b: {c}"),  # the default runs to the first '}'
        ("$${NAME}", "${NAME}"),  # $$ is a literal $
        ("cost: $5, $$$$", "cost: $5, $$"),  # a $ before anything else stays
        ("ends with $", "ends with $"),
        ("${PLACEHOLDER}", "${NAME}"),  # a value is not scanned again
        ("${DOLLAR}{NAME}", "${NAME}"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, VARIABLES.get) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${NAME", "'${' at character 1 is not closed by '}'"),
        ("a ${", "'${' at character 3 is not closed"),
        ("${}", "'${}' does not start with a variable name"),
        ("${1ABC}", "'${1ABC}' does not start with a variable name"),
        ("${NAME-default}", "'${NAME-default}' is not a placeholder this file reads"),
        ("${NAME:?required}", "expected ${NAME} or ${NAME:-default}"),
        ("${A:-${B}}", "a default cannot hold another '${'"),
        ("${MISSING}", "environment variable MISSING is not set"),
        ("${A} ${B} ${A}", "environment variables A, B are not set"),
    ],
)
def test_substitute_refuses(text: str, fragment: str) -> None:
    with pytest.raises(PlaceholderError) as caught:
        substitute(text, VARIABLES.get)
    assert fragment in str(caught.value)


SPEC = """\
version: 1
gateway:
  port: ${PORT:-8080}
  host: "${HOST:-127.0.0.1}"
  admin_remote: ${REMOTE:-false}
  max_body_size: ${BODY:-1MiB}
defaults:
  base_image: ${REGISTRY:-docker.io}/python:3.12-slim
functions:
  hello:
    handler: functions/hello.py
    environment:
      GREETING: ${GREETING}
      QUOTED: '${COUNT:-7}'
      PLAIN: ${COUNT:-7}
      ${KEY}: never substituted
"""


def load(text: str, environ: Mapping[str, str], root: Path = Path("/srv/examples")) -> Project:
    return load_project_text(
        textwrap.dedent(text), filename="functions.yaml", root=root, environ=environ
    )


def problems_of(
    text: str, environ: Mapping[str, str], root: Path = Path("/srv/x")
) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load(text, environ, root)
    return caught.value.problems


WITHOUT_KEY = SPEC.replace("      ${KEY}: never substituted\n", "")


def test_values_become_the_types_their_fields_expect() -> None:
    environ = {"PORT": "9000", "REMOTE": "true", "GREETING": "hi", "REGISTRY": "r.example"}
    project = load(WITHOUT_KEY, environ)
    gateway = project.gateway
    assert (gateway.port, gateway.host, gateway.admin_remote) == (9000, "127.0.0.1", True)
    assert gateway.max_body_size == 1024 * 1024
    hello = project.functions["hello"]
    assert hello.base_image == "r.example/python:3.12-slim"
    assert dict(hello.environment) == {"GREETING": "hi", "QUOTED": "7", "PLAIN": "7"}


def test_defaults_apply_when_nothing_is_set() -> None:
    project = load(WITHOUT_KEY, {"GREETING": "hi"})
    assert project.gateway.port == 8080
    assert project.gateway.admin_remote is False
    assert project.functions["hello"].base_image == "docker.io/python:3.12-slim"


@pytest.mark.parametrize(
    "value",
    ["a: b", "{x: 1}", "[1, 2]", "line\nGREETING2: injected", "&a x", "*a", "!!python/object x"],
)
def test_a_value_cannot_add_structure(value: str) -> None:
    hello = load(WITHOUT_KEY, {"GREETING": value}).functions["hello"]
    assert dict(hello.environment)["GREETING"] == value
    assert set(hello.environment) == {"GREETING", "QUOTED", "PLAIN"}


def test_keys_are_never_substituted() -> None:
    problems = problems_of(SPEC, {"GREETING": "hi", "KEY": "SHOULD_NOT_BE_READ"})
    assert [(p.line, p.field) for p in problems] == [(16, "functions.hello.environment.${KEY}")]
    assert "expected an environment variable name" in problems[0].message


def test_an_unset_variable_names_file_line_and_field() -> None:
    problems = problems_of(WITHOUT_KEY, {})
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("functions.yaml", 13, "functions.hello.environment.GREETING")
    ]
    assert "environment variable GREETING is not set" in problems[0].message


def test_malformed_placeholders_are_reported_with_the_rest() -> None:
    text = WITHOUT_KEY.replace("${PORT:-8080}", "${PORT").replace("${GREETING}", "${}")
    problems = problems_of(text, {})
    assert [(p.line, p.field) for p in problems] == [
        (3, "gateway.port"),
        (13, "functions.hello.environment.GREETING"),
    ]
    assert "not closed" in problems[0].message


def test_an_error_shows_the_placeholder_not_the_value() -> None:
    secret = "s3cr3t-value"
    problems = problems_of(WITHOUT_KEY, {"GREETING": "hi", "PORT": secret})
    assert [(p.line, p.field) for p in problems] == [(3, "gateway.port")]
    message = problems[0].message
    assert secret not in message
    assert message.endswith("got the value of '${PORT:-8080}'")
    problems = problems_of(WITHOUT_KEY, {"GREETING": "hi", "PORT": "70000"})
    assert "70000" not in problems[0].message
    assert "between 1 and 65535" in problems[0].message
    text = WITHOUT_KEY.replace('host: "${HOST:-127.0.0.1}"', "admin_host: ${ADMIN}")
    problems = problems_of(text, {"GREETING": "hi", "ADMIN": "10.1.2.3"})
    assert [(p.line, p.field) for p in problems] == [(4, "gateway.admin_host")]
    assert problems[0].message.startswith("admin_host the value of '${ADMIN}' is not a loopback")


def test_an_empty_value_is_an_empty_string() -> None:
    problems = problems_of(WITHOUT_KEY.replace(":-8080", ""), {"GREETING": "hi", "PORT": ""})
    assert [(p.line, p.field) for p in problems] == [(3, "gateway.port")]
    project = load(WITHOUT_KEY, {"GREETING": "", "COUNT": ""})
    assert dict(project.functions["hello"].environment) == {
        "GREETING": "",  # not null, which environment refuses
        "QUOTED": "7",
        "PLAIN": "7",
    }


# --- .env -------------------------------------------------------------------------------------


def project_dir(tmp_path: Path, spec: str, dotenv: str | None) -> Path:
    (tmp_path / "functions.yaml").write_text(spec)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return tmp_path


def test_dotenv_supplies_variables_and_the_environment_wins(tmp_path: Path) -> None:
    root = project_dir(tmp_path, WITHOUT_KEY, "GREETING=from-file\nPORT=7000\n")
    project = load_project(root, environ={"PORT": "9000"})
    assert project.gateway.port == 9000
    assert project.functions["hello"].environment["GREETING"] == "from-file"


def test_dotenv_is_read_only_when_a_value_has_a_placeholder(tmp_path: Path) -> None:
    spec = "version: 1\nfunctions:\n  hello: {handler: functions/hello.py}\n"
    root = project_dir(tmp_path, spec, "a line another tool reads\n")
    assert load_project(root, environ={}).functions["hello"].name == "hello"


def test_dotenv_problems_name_the_file_and_line(tmp_path: Path) -> None:
    root = project_dir(tmp_path, WITHOUT_KEY, "# ok\nGREETING=x\nnot an assignment\nGREETING=y\n")
    with pytest.raises(SpecError) as caught:
        load_project(root, environ={})
    dotenv = str(root / ".env")
    assert [(p.file, p.line, p.field) for p in caught.value.problems] == [
        (dotenv, 3, ""),
        (dotenv, 4, "GREETING"),
    ]
    assert "already set on line 2" in caught.value.problems[1].message


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("A=b", "A", "b"),
        ("  export   A = b  ", "A", "b"),
        ("A=b # comment", "A", "b"),
        ("A=b#not-a-comment", "A", "b#not-a-comment"),
        ("A=", "A", ""),
        ("A=a b  c", "A", "a b  c"),
        ("A='single # $B \\n'", "A", "single # $B \\n"),
        ('A="double \\"q\\" \\n\\t\\\\ \\$ # kept" # comment', "A", 'double "q" \n\t\\ $ # kept'),
        ('A="x=y"', "A", "x=y"),
        ("A=${B}", "A", "${B}"),  # .env values are never expanded
        ("export=1", "export", "1"),
    ],
)
def test_dotenv_syntax(line: str, key: str, value: str) -> None:
    assert parse_dotenv(f"# header\n\n{line}\n", ".env") == ({key: value}, [])


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("just words", "expected KEY=VALUE"),
        ("1A=b", "'1A' is not a variable name"),
        ("A='open", "the single quote is not closed"),
        ('A="open', "the double quote is not closed"),
        ('A="x" y', "unexpected 'y' after the closing quote"),
    ],
)
def test_dotenv_refuses(line: str, fragment: str) -> None:
    variables, problems = parse_dotenv(f"OK=1\n{line}\n", ".env")
    assert variables == {"OK": "1"}
    assert [(p.file, p.line) for p in problems] == [(".env", 2)]
    assert fragment in problems[0].message
