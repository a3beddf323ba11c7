"""Reading functions.yaml into plain data while remembering the line of every key and value."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from runtime.errors import Problem, SpecError

Loc = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_KINDS = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "null"}


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


def read_yaml(text: str, filename: str) -> Tree:
    """Parse `text`, raising SpecError if it is not YAML at all.

    Problems that leave the rest readable (a key that is not a string, a key
    set twice) are returned with the tree instead, so they are reported
    alongside everything else.
    """
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        walker = _Walker(loader, filename)
        node = loader.get_single_node()
        data = None if node is None else walker.walk(node, ())
    except yaml.YAMLError as error:
        line, message = _describe_error(error, text)
        raise SpecError([Problem(filename, line, "", f"invalid YAML: {message}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Tree(data, walker.lines, tuple(walker.problems))


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
    def __init__(self, loader: yaml.SafeLoader, filename: str) -> None:
        self.lines = LineMap()
        self.problems: list[Problem] = []
        self._loader = loader
        self._filename = filename
        self._open: set[int] = set()

    def walk(self, node: yaml.Node, loc: Loc) -> object:
        if not loc:
            self.lines.keys[loc] = _line(node)
        self.lines.values[loc] = _line(node)
        if id(node) in self._open:
            raise yaml.MarkedYAMLError(
                problem="an alias refers to a value that contains it", problem_mark=node.start_mark
            )
        if isinstance(node, yaml.ScalarNode):
            return self._loader.construct_object(node)
        if node.tag not in _COLLECTION_TAGS:
            raise yaml.MarkedYAMLError(
                problem=f"unsupported tag {node.tag!r}", problem_mark=node.start_mark
            )
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return [self._item(item, (*loc, index)) for index, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))

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
