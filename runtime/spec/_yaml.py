"""Reading functions.yaml into plain data while remembering the line of every key and value.

The file is untrusted input, read before anything starts, so reading it is
bounded: at most MAX_SPEC_SIZE characters, MAX_DEPTH levels of nesting, and no
anchors or aliases. An alias names a node that is already built, so a few
lines of them can stand for 10^9 values (a "billion laughs"); they are refused
while the file is composed, at the first `&` or `*`, so nothing is ever
expanded. What anchors are mostly used for, sharing settings between
functions, is what `defaults:` is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from runtime.errors import Problem, SpecError

Loc = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_KINDS = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "null"}

MAX_SPEC_SIZE = 1024 * 1024
"""Bytes (or characters); a functions.yaml for a thousand functions is a few hundred KiB."""
TOO_LARGE = "the file is larger than 1MiB, the most a functions.yaml may be; is it the right file?"
MAX_DEPTH = 64
"""Nested mappings and lists; functions.yaml needs 6 (functions.f.http[0].methods[0])."""
ANCHORS_REFUSED = (
    "YAML anchors and aliases are not supported; write the value out "
    "(settings shared by several functions go under 'defaults:')"
)


def dotted(loc: Loc) -> str:
    """('functions', 'hello', 'http', 0, 'path') -> 'functions.hello.http[0].path'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass
class LineMap:
    """1-based lines of what the file says at each location.

    `keys` holds where each entry starts (its key, or a list item's first line);
    `values` where each value starts. A location that is absent, such as a
    missing key, is placed on the line of its nearest written parent.
    """

    keys: dict[Loc, int] = field(default_factory=dict)
    values: dict[Loc, int] = field(default_factory=dict)

    def key_line(self, loc: Loc) -> int | None:
        for end in range(len(loc), -1, -1):
            if (line := self.keys.get(loc[:end])) is not None:
                return line
        return None

    def value_line(self, loc: Loc) -> int | None:
        return self.values.get(loc) or self.key_line(loc)

    def forget(self, loc: Loc) -> None:
        for lines in (self.keys, self.values):
            for stale in [key for key in lines if key[: len(loc)] == loc]:
                del lines[stale]


@dataclass(frozen=True)
class Tree:
    data: object
    lines: LineMap
    problems: tuple[Problem, ...]
    plain: frozenset[Loc] = frozenset()
    """Where an unquoted string holding a `$` was written: what a substitution there gives
    is read again as YAML reads unquoted text (see read_plain)."""


_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float"))
_RESOLVER = yaml.resolver.Resolver()


def read_plain(text: str) -> object:
    """What YAML makes of `text` written unquoted as one scalar: null, a boolean, a number,
    or else the string itself. Never a mapping or a list, whatever `text` holds. Empty text
    stays '' (an empty variable is an empty string, not a missing value)."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if not text or tag not in _PLAIN_TAGS:
        return text
    try:
        return yaml.constructor.SafeConstructor().construct_object(yaml.ScalarNode(tag, text))
    except ValueError:  # an int of more than 4300 digits: the field's check says what it wants
        return text


def read_yaml(text: str, filename: str) -> Tree:
    """Parse `text`, raising SpecError if it is not YAML at all.

    Problems that leave the rest readable (a key that is not a string, a key
    set twice) are returned with the tree instead, so they are reported
    alongside everything else.
    """
    if len(text) > MAX_SPEC_SIZE:
        raise SpecError([Problem(filename, None, "", TOO_LARGE)])
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        walker = _Walker(loader, filename)
        node = loader.get_single_node()
        data = None if node is None else walker.walk(node, ())
    except _Refused as error:
        raise SpecError([Problem(filename, error.line, "", error.message)]) from None
    except yaml.YAMLError as error:
        line, message = _describe_error(error, text)
        raise SpecError([Problem(filename, line, "", f"invalid YAML: {message}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    plain = frozenset(loc for loc in walker.plain if loc in walker.lines.values)
    return Tree(data, walker.lines, tuple(walker.problems), plain)


class _Refused(yaml.YAMLError):
    """Valid YAML that functions.yaml does not accept, found while composing."""

    def __init__(self, event: yaml.Event, message: str) -> None:
        super().__init__(message)
        self.line = int(event.start_mark.line) + 1 if event.start_mark else None
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses anchors, aliases and deep nesting.

    The check runs on each event before its node is composed, so an alias is
    refused before it is ever resolved, let alone expanded.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event, f"found alias '*{event.anchor}': {ANCHORS_REFUSED}")
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise _Refused(event, f"found anchor '&{event.anchor}': {ANCHORS_REFUSED}")
        if self._depth >= MAX_DEPTH:
            raise _Refused(event, f"nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _describe_error(error: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        return line, f"unacceptable character #x{error.character:04x}: {error.reason}"
    if not isinstance(error, yaml.MarkedYAMLError):
        return None, str(error)
    mark = error.problem_mark or error.context_mark
    message = ", ".join(part for part in (error.context, error.problem) if part)
    if "'\\t'" in message:
        message += " (indent with spaces: YAML does not allow tabs)"
    return (mark.line + 1 if mark else None), message


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Walker:
    def __init__(self, loader: _BoundedLoader, filename: str) -> None:
        self.lines = LineMap()
        self.problems: list[Problem] = []
        self.plain: set[Loc] = set()
        self._loader = loader
        self._filename = filename

    def walk(self, node: yaml.Node, loc: Loc) -> object:
        if not loc:
            self.lines.keys[loc] = _line(node)
        self.lines.values[loc] = _line(node)
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.tag == _STR_TAG and "$" in node.value:
                self.plain.add(loc)
            else:
                self.plain.discard(loc)
            try:
                return self._loader.construct_object(node)
            except ValueError as error:  # 2001-13-45, or an int of more than 4300 digits
                reason = str(error).partition("; use sys.")[0]  # the int digits limit's advice
                raise yaml.MarkedYAMLError(
                    problem=f"cannot read {node.value[:40]!r}: {reason}",
                    problem_mark=node.start_mark,
                ) from None
        if node.tag not in _COLLECTION_TAGS:
            raise yaml.MarkedYAMLError(
                problem=f"unsupported tag {node.tag!r}", problem_mark=node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        return [self._item(item, (*loc, index)) for index, item in enumerate(node.value)]

    def _item(self, node: yaml.Node, loc: Loc) -> object:
        self.lines.keys[loc] = _line(node)
        return self.walk(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, object]:
        """Build the dict, letting keys written here override those merged in with `<<`."""
        own_count = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        self._loader.flatten_mapping(node)
        first_own = len(node.value) - own_count
        result: dict[str, object] = {}
        own: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self._key(key_node, loc)
            if key is None:
                continue
            child = (*loc, key)
            if index >= first_own:
                if key in own:
                    first = self.lines.keys[child]
                    message = f"duplicate key '{key}'; it is already set on line {first}"
                    self._report(child, _line(key_node), message)
                    continue
                own.add(key)
            self.lines.forget(child)
            self.lines.keys[child] = _line(key_node)
            result[key] = self.walk(value_node, child)
        return result

    def _key(self, node: yaml.Node, loc: Loc) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return str(node.value)
        if isinstance(node, yaml.ScalarNode):
            kind = str(node.tag).rpartition(":")[2]
            self._report(
                (*loc, str(node.value)),
                _line(node),
                f"keys must be strings, but YAML reads {node.value!r} as "
                f"{_KINDS.get(kind, kind)}; put it in quotes",
            )
        else:
            self._report(loc, _line(node), "keys must be strings, got a mapping or a list")
        return None

    def _report(self, loc: Loc, line: int, message: str) -> None:
        self.problems.append(Problem(self._filename, line, dotted(loc), message))
