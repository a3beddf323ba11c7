"""Checking, before anything starts, that each function's handler can be found.

Only what the source says is checked: the file exists inside the project, it
parses as Python, and it binds the handler's name at module level. Nothing is
imported on the host: the code is the user's and runs only in its container.
So a module that raises when imported is still found at run time, by the
watchdog, and so is a name bound in ways the source does not show; those
(`from x import *`, `globals()[...] = ...`, a module `__getattr__`) count as
binding it, so the check never refuses a handler that would load.

The parse uses this machine's Python: with a base image newer than it, syntax
that only the newer Python knows is refused here.
"""

from __future__ import annotations

import ast
import difflib
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

from runtime.errors import Problem
from runtime.spec._model import Project
from runtime.spec._yaml import Loc, dotted

WEBSOCKET_HANDLER = "handle_websocket"
"""What a function with `websocket: true` defines beside its handler, in the same module."""
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
_NAMESPACE_FUNCTIONS = frozenset({"globals", "exec", "eval"})
_NAMESPACE_WITHOUT_ARGUMENTS = frozenset({"vars", "locals"})  # vars(obj) is just obj's
_NAMESPACE_ATTRIBUTES = frozenset({"modules", "__dict__"})  # sys.modules[__name__], mod.__dict__
_PYTHON = f"Python {sys.version_info.major}.{sys.version_info.minor}"


def handler_problems(project: Project, filename: str | None = None) -> list[Problem]:
    """One problem per function whose handler file or function cannot be found.

    Each is placed on the `handler` line of functions.yaml; `filename` labels
    them (default: the project's file).
    """
    label = str(project.file) if filename is None else filename
    problems = []
    checked: dict[tuple[str, str], str | None] = {}  # several functions may share a file
    for name, function in project.functions.items():
        handler = (function.handler_file, function.handler_name)
        if handler not in checked:
            checked[handler] = check_handler(project.root, *handler)
        if (message := checked[handler]) is not None:
            loc: Loc = ("functions", name, "handler")
            problems.append(Problem(label, line_of(project.lines, loc), dotted(loc), message))
        elif function.websocket:
            socket = (function.handler_file, WEBSOCKET_HANDLER)
            if socket not in checked:
                checked[socket] = check_handler(project.root, *socket)
            if (message := checked[socket]) is not None:
                loc = ("functions", name, "websocket")
                problems.append(Problem(label, line_of(project.lines, loc), dotted(loc), message))
    return problems


def line_of(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line where `loc` (or, when absent, its nearest written parent) is written."""
    for end in range(len(loc), -1, -1):
        if (line := lines.get(loc[:end])) is not None:
            return line
    return None


def check_handler(root: Path, file: str, name: str) -> str | None:
    """What is wrong with handler `file`:`name` under `root`, or None if it looks loadable."""
    path = root / file
    if not path.exists():
        return f"handler file {file} does not exist in {root}{_similar_file(root, file)}"
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return (
            f"handler file {file} leads outside the project directory (to {path.resolve()}); "
            "containers see only the project's files"
        )
    if not path.is_file():
        return f"handler {file} is not a file"
    try:
        source = path.read_bytes()
    except OSError as error:
        return f"cannot read handler file {file}: {error.strerror}"
    try:
        with warnings.catch_warnings():  # invalid escapes and the like are the user's business
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=file)
    except SyntaxError as error:
        where = f"{file}:{error.lineno}" if error.lineno else file
        return f"{where}: {error.msg} (the handler file is not valid {_PYTHON})"
    except ValueError as error:  # a NUL byte, before 3.12
        return f"{file}: {error} (the handler file is not valid {_PYTHON})"
    except (RecursionError, MemoryError):
        return None  # too deep to check here; the watchdog will say
    if _binds(tree, name):
        return None
    return f"{file} has no top-level function {name!r}{_hint(tree, file, name)}"


def _binds(tree: ast.Module, name: str) -> bool:
    """Whether the module may bind `name`: surely, or in a way the source does not show."""
    bound = set(_module_names(tree.body))
    return name in bound or "*" in bound or "__getattr__" in bound or _dynamic(tree, name)


def _module_names(body: list[ast.stmt]) -> Iterator[str]:
    """Names bound at module level, also inside if/try/with/for blocks, not inside scopes."""
    pending: list[ast.AST] = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
            pending.extend(node.decorator_list)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                yield alias.asname or alias.name.partition(".")[0]
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            yield node.name
        elif isinstance(node, ast.MatchMapping) and node.rest:
            yield node.rest
        pending.extend(ast.iter_child_nodes(node))


def _dynamic(tree: ast.Module, name: str) -> bool:
    """`global name` anywhere, or the module's namespace reached by a way round."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Global) and name in node.names:
            return True
        if isinstance(node, ast.Name) and node.id in _NAMESPACE_FUNCTIONS:
            return True
        if isinstance(node, ast.Attribute) and node.attr in _NAMESPACE_ATTRIBUTES:
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _NAMESPACE_WITHOUT_ARGUMENTS
            and not node.args
        ):
            return True
    return False


def _hint(tree: ast.Module, file: str, name: str) -> str:
    functions = [
        node.name for node in tree.body if isinstance(node, _DEFS) and not node.name.startswith("_")
    ]
    if close := difflib.get_close_matches(name, functions, n=1):
        return f"; did you mean {file}:{close[0]}?"
    define = f"; define `def {name}(event, context):` there"
    if functions:
        return f"{define}, or name one of its functions ({', '.join(functions)}) as {file}:NAME"
    return define


def _similar_file(root: Path, file: str) -> str:
    """`; did you mean functions/hello.py?` when a file of a close name sits in that directory."""
    wanted = Path(file)
    try:
        stems = [p.stem for p in (root / file).parent.iterdir() if p.suffix == ".py"]
    except OSError:
        return ""
    if close := difflib.get_close_matches(wanted.stem, stems, n=1, cutoff=0.75):
        return f"; did you mean {wanted.with_stem(close[0]).as_posix()}?"
    return ""
