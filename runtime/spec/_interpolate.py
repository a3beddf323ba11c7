"""`${NAME}` and `${NAME:-default}` in the values of functions.yaml.

Substitution runs on the parsed tree, into string values only (never keys), so
a variable's text cannot add structure: a value holding `: ` or a newline stays
one string. An unquoted value is then read again as YAML reads unquoted text
(`port: ${PORT:-8080}` gives the number 8080, `admin_remote: ${REMOTE}` a
boolean), while a quoted one stays a string, exactly as if the text had been
written there. The fields are validated afterwards, as usual.

- `${NAME}`: the variable's value; an error (file, line, field) when it is unset.
- `${NAME:-default}`: the default when NAME is unset or empty. The default is
  taken literally up to the first `}` and may not hold another `${`.
- `$$` is one literal `$`; a `$` followed by anything else is kept as written.
- A substituted value is not scanned again (no recursion).

Variables come from the process environment, then from `.env` next to
functions.yaml (see _dotenv.py): the environment wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runtime.errors import Problem
from runtime.spec._yaml import Loc, Tree, dotted, read_plain

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FORMS = "${NAME} or ${NAME:-default}"


class PlaceholderError(ValueError):
    """Malformed `${...}`, or a variable that is unset and has no default."""


def substitute(text: str, lookup: Callable[[str], str | None]) -> str:
    """`text` with every placeholder replaced, or PlaceholderError naming every unset variable."""
    out: list[str] = []
    unset: list[str] = []
    at = 0
    while (start := text.find("$", at)) != -1:
        out.append(text[at:start])
        following = text[start + 1 : start + 2]
        if following == "$":
            out.append("$")
            at = start + 2
            continue
        if following != "{":
            out.append("$")
            at = start + 1
            continue
        end = text.find("}", start + 2)
        if end == -1:
            raise PlaceholderError(
                f"'${{' at character {start + 1} is not closed by '}}'; "
                f"expected {FORMS} (write $$ for a literal $)"
            )
        name, default = _placeholder(text[start + 2 : end])
        value = lookup(name)
        if default is not None and not value:
            value = default
        if value is None:
            unset.append(name)
        else:
            out.append(value)
        at = end + 1
    if unset:
        names = ", ".join(dict.fromkeys(unset))
        several = len(set(unset)) > 1
        raise PlaceholderError(
            f"environment variable{'s' if several else ''} {names} "
            f"{'are' if several else 'is'} not set (in the environment or .env); "
            "set it, or give a default with ${NAME:-default}"
        )
    out.append(text[at:])
    return "".join(out)


def _placeholder(body: str) -> tuple[str, str | None]:
    name = _NAME.match(body)
    if name is None:
        raise PlaceholderError(
            f"'${{{body}}}' does not start with a variable name (letters, digits and '_', "
            f"not starting with a digit); expected {FORMS}"
        )
    rest = body[name.end() :]
    if not rest:
        return name.group(), None
    if rest.startswith(":-"):
        default = rest[2:]
        if "${" in default:
            raise PlaceholderError(f"'${{{body}}}': a default cannot hold another '${{'")
        return name.group(), default
    raise PlaceholderError(f"'${{{body}}}' is not a placeholder this file reads; expected {FORMS}")


@dataclass(frozen=True)
class Substituted:
    tree: Tree
    """The tree with every placeholder replaced, and the problems found doing it."""
    written: Mapping[Loc, tuple[str, object]] = field(default_factory=dict)
    """What the file wrote, and the value it became, where a substitution changed a value:
    errors about those values name the placeholder, not the value (see `shown`)."""

    failed: frozenset[Loc] = frozenset()
    """Where a placeholder was malformed or unset: what the field would say is not news."""

    def shown(self, loc: Loc, message: str, describe: Callable[[object], str]) -> str:
        """`message` about the value at `loc`, with the value replaced by what was written."""
        if loc not in self.written:
            return message
        text, value = self.written[loc]
        shown = f"the value of {text!r}"
        before, found, after = message.rpartition(describe(value))
        if found:  # "..., got 'value'": the checks name the value last
            return f"{before}{shown}{after}"
        if isinstance(value, str) and len(value) >= 3 and value in message:
            return message.replace(value, shown)
        return f"{message} ({shown})"


def referenced(tree: Tree) -> list[str]:
    """The variable names the placeholders of `tree` read, in order, each once."""
    names: dict[str, None] = {}

    def record(name: str) -> str | None:
        names.setdefault(name)
        return ""

    for _, text in _strings(tree.data, ()):
        if "${" in text:
            try:
                substitute(text, record)
            except PlaceholderError:
                continue  # reported when the file is loaded
    return list(names)


def needs_variables(tree: Tree) -> bool:
    """Whether any value holds `${`, so that variables (and .env) must be read."""
    return any("${" in text for _, text in _strings(tree.data, ()))


def interpolate(tree: Tree, lookup: Callable[[str], str | None], filename: str) -> Substituted:
    problems: list[Problem] = []
    written: dict[Loc, tuple[str, object]] = {}
    replaced: dict[Loc, object] = {}
    failed: set[Loc] = set()
    for loc, text in _strings(tree.data, ()):
        if "$" not in text:
            continue
        try:
            value = substitute(text, lookup)
        except PlaceholderError as error:
            problems.append(Problem(filename, tree.lines.value_line(loc), dotted(loc), str(error)))
            failed.add(loc)
            continue
        replaced[loc] = read_plain(value) if loc in tree.plain else value
        if value != text:
            written[loc] = (text, replaced[loc])
    data = _replace(tree.data, (), replaced)
    problems_so_far = (*tree.problems, *problems)
    tree = Tree(data, tree.lines, problems_so_far, tree.plain)
    return Substituted(tree, written, frozenset(failed))


def _strings(data: object, loc: Loc) -> list[tuple[Loc, str]]:
    if isinstance(data, str):
        return [(loc, data)]
    if isinstance(data, dict):
        return [found for key, value in data.items() for found in _strings(value, (*loc, key))]
    if isinstance(data, list):
        return [found for i, value in enumerate(data) for found in _strings(value, (*loc, i))]
    return []


def _replace(data: object, loc: Loc, replaced: Mapping[Loc, object]) -> object:
    if loc in replaced:
        return replaced[loc]
    if isinstance(data, dict):
        return {key: _replace(value, (*loc, key), replaced) for key, value in data.items()}
    if isinstance(data, list):
        return [_replace(value, (*loc, i), replaced) for i, value in enumerate(data)]
    return data
