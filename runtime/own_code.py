"""Which of a project's files are one function's own: what its image and warm archive hold.

Functions often share a directory (`functions/hello.py`, `functions/echo.py`),
and a replica must not hold another function's source. A function's own code is:

- the directory its handler is in, whole, when no other function's handler is in
  it or below it (`functions/resize/handler.py` with its templates and modules);
- otherwise its handler file and the project modules it imports, followed through
  their own imports (`import util`, `from lib.text import slug`, relative imports);
- in both cases, whatever it lists under `include` (files or directories), for
  data files and modules imported by name at run time.

Imports are read from the source (the ast), never executed; a module found
neither next to the handler nor under the project root (the two places the
watchdog puts on sys.path) is the standard library's or a requirement's.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

SKIPPED_NAMES = frozenset({"__pycache__", "node_modules"})


def walk_files(directory: Path, prefix: PurePosixPath) -> Iterator[tuple[str, Path]]:
    """(name in a context, file) for every file a context takes from `directory` (or the
    file `directory` itself), in name order: no bytecode, editor backups, hidden files,
    `__pycache__` or `node_modules`."""
    if directory.is_file():
        yield str(prefix), directory
        return
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part in SKIPPED_NAMES or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in {".pyc", ".pyo"} and not path.name.endswith("~"):
            yield str(prefix / relative.as_posix()), path


def own_files(
    root: Path, handler_file: str, other_handlers: Iterable[str], include: Iterable[str] = ()
) -> list[PurePosixPath]:
    """Project-relative paths of the files that are the function's own (sorted)."""
    handler = PurePosixPath(handler_file)
    directory = handler.parent
    # Functions may share one handler file (different handler names): not "another's".
    others = [PurePosixPath(other) for other in other_handlers if other != handler_file]
    if directory != PurePosixPath(".") and not any(
        other.is_relative_to(directory) for other in others
    ):
        found = {PurePosixPath(name) for name, _ in walk_files(root / directory, directory)}
        # and what its modules import from elsewhere in the project
        modules = [path for path in found if path.suffix == ".py"]
        found |= _import_closure(root, handler, modules)
    else:
        found = _import_closure(root, handler, [handler])
    for entry in include:
        path = PurePosixPath(entry)
        found.update(PurePosixPath(name) for name, _ in walk_files(root / path, path))
    return sorted(path for path in found if (root / path).is_file())


def _import_closure(
    root: Path, handler: PurePosixPath, start: list[PurePosixPath]
) -> set[PurePosixPath]:
    """`start` and every project module reachable through their imports, resolved as the
    watchdog's sys.path does: next to the handler, then from the project root."""
    search = [handler.parent, PurePosixPath(".")]
    found: set[PurePosixPath] = set()
    pending = list(start)
    while pending:
        module = pending.pop()
        if module in found:
            continue
        found.add(module)
        for name, level in imported_names(_read(root / module)):
            bases = [_parent(module.parent, level - 1)] if level else search
            for base in bases:
                if base is None:
                    continue
                files = _module_files(root, base, name)
                if files:
                    pending.extend(files)
                    break
    return found


_PARSING = threading.Lock()
"""Images are planned in threads, and CPython 3.11 before 3.11.8 keeps the parser's
recursion depth per interpreter, not per thread: two parses at once can fail with
"SystemError: AST constructor recursion depth mismatch" (CPython gh-106905)."""


def imported_names(source: str | None) -> Iterator[tuple[str, int]]:
    """(dotted module name, relative level) of every import in `source`; for `from m
    import x` both `m` and `m.x` (x may be a submodule). Unparsable source has none:
    the watchdog reports its syntax error with the line when it loads."""
    if source is None:
        return
    try:
        with _PARSING:
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if base:
                yield base, node.level
            for alias in node.names:
                if alias.name != "*":
                    yield (f"{base}.{alias.name}" if base else alias.name), node.level


def _module_files(root: Path, base: PurePosixPath, name: str) -> list[PurePosixPath]:
    """The files importing `name` from `base` loads: each package's __init__.py on the way
    and the module itself; empty when it is not there (not the project's)."""
    parts = name.split(".")
    files: list[PurePosixPath] = []
    for depth in range(1, len(parts)):
        init = base.joinpath(*parts[:depth], "__init__.py")
        if (root / init).is_file():
            files.append(init)
    module = base.joinpath(*parts)
    for candidate in (module.with_name(module.name + ".py"), module / "__init__.py"):
        if (root / candidate).is_file():
            return [*files, candidate]
    return []


def _parent(directory: PurePosixPath, levels: int) -> PurePosixPath | None:
    for _ in range(levels):
        if directory == PurePosixPath("."):
            return None  # above the project root
        directory = directory.parent
    return directory


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
