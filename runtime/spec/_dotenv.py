"""The `.env` file next to functions.yaml: variables for `${NAME}` placeholders.

One `KEY=VALUE` a line, the syntax most tools agree on:

    # a comment line, and blank lines, are skipped
    export REGISTRY=registry.example.com   # `export ` is allowed and ignored
    PORT=8080                              # unquoted: trimmed, ` #` starts a comment
    GREETING="hello, world\\n"              # double quotes: \\n \\t \\" \\\\ \\$ are escapes
    PATTERN='a #literal $value'            # single quotes: taken as written

A value is one line (no multi-line values) and is never expanded: `$` in .env
is just a `$`. A key set twice is an error, as in functions.yaml. Every
problem names the .env file and its line.
"""

from __future__ import annotations

import re

from runtime.errors import Problem

DOTENV_FILENAME = ".env"
_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str, filename: str) -> tuple[dict[str, str], list[Problem]]:
    variables: dict[str, str] = {}
    first: dict[str, int] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(Problem(filename, number, "", _not_an_assignment(line)))
            continue
        key, raw = match.groups()
        try:
            value = _value(raw)
        except ValueError as error:
            problems.append(Problem(filename, number, key, str(error)))
            continue
        if key in first:
            message = f"{key} is already set on line {first[key]}"
            problems.append(Problem(filename, number, key, message))
            continue
        first[key] = number
        variables[key] = value
    return variables, problems


def _not_an_assignment(line: str) -> str:
    name = line.partition("=")[0].strip().removeprefix("export ").strip()
    if "=" in line and name:
        return (
            f"{name[:40]!r} is not a variable name "
            "(letters, digits and '_', not starting with a digit)"
        )
    return "expected KEY=VALUE (or a '#' comment)"


def _value(raw: str) -> str:
    if raw[:1] == "'":
        end = raw.find("'", 1)
        if end == -1:
            raise ValueError("the single quote is not closed (values are one line)")
        _only_comment_after(raw[end + 1 :])
        return raw[1:end]
    if raw[:1] == '"':
        return _double_quoted(raw)
    comment = re.search(r"\s#", raw)
    value = raw[: comment.start()] if comment else raw
    return value.rstrip()


def _double_quoted(raw: str) -> str:
    out: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == '"':
            _only_comment_after(raw[index + 1 :])
            return "".join(out)
        if char == "\\" and index + 1 < len(raw):
            escaped = raw[index + 1]
            out.append(_ESCAPES.get(escaped, "\\" + escaped))
            index += 2
            continue
        out.append(char)
        index += 1
    raise ValueError("the double quote is not closed (values are one line)")


def _only_comment_after(rest: str) -> None:
    if rest.strip() and not rest.strip().startswith("#"):
        raise ValueError(
            f"unexpected {rest.strip()[:20]!r} after the closing quote; "
            "put the whole value in the quotes"
        )
