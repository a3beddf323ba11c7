"""Import the user's handler once, or describe precisely why it could not be imported."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

_OWN_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """Why the handler is unusable, located in the user's code where possible."""

    error: str  # one line, for humans
    file: str  # relative to the code dir when inside it
    line: int | None
    traceback: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": "failed", "error": self.error, "file": self.file, "line": self.line}


class HandlerLoadError(Exception):
    def __init__(self, failure: LoadFailure) -> None:
        super().__init__(failure.error)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Handler:
    """The imported callable, adapted to always take (event, context)."""

    call: Callable[[Any, Any], Any]
    is_async: bool
    module: str


def load_handler(code_dir: str, handler_file: str, handler_name: str = "handle") -> Handler:
    """Import `handler_file` (relative to `code_dir`, or absolute) and fetch `handler_name`.

    Raises HandlerLoadError for a missing file, an import-time exception (including
    SyntaxError) or a missing, non-callable or wrongly shaped handler.
    """
    root = os.path.realpath(code_dir)
    path = os.path.realpath(os.path.join(root, handler_file))
    shown = _display(path, root)
    if not os.path.isfile(path):
        raise HandlerLoadError(LoadFailure(f"handler file not found: {shown}", shown, None))

    for entry in (os.path.dirname(path), root):
        if entry not in sys.path:
            sys.path.insert(0, entry)

    name = _module_name(path, root)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HandlerLoadError(LoadFailure(f"cannot import {shown} as Python", shown, None))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise HandlerLoadError(_describe(exc, path, root)) from exc

    func = getattr(module, handler_name, None)
    if func is None:
        error = f"no function named {handler_name!r} in {shown}"
        raise HandlerLoadError(LoadFailure(error, shown, None))
    if not callable(func):
        error = f"{handler_name!r} in {shown} is a {type(func).__name__}, not a function"
        raise HandlerLoadError(LoadFailure(error, shown, _line_of(func)))

    return as_handler(func, handler_name, shown, name)


def as_handler(func: Callable[..., Any], name: str, shown: str, module: str) -> Handler:
    """Adapt a callable found in the user's code (`name` in the file `shown`).

    Raises HandlerLoadError when it can take neither (event, context) nor (event).
    """
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )
    return Handler(_adapt(func, name, shown), is_async, module)


def reload_handler(code_dir: str, handler_file: str, handler_name: str = "handle") -> Handler:
    """Import the handler again from source, with every module of the project's code.

    Used in development, where the code is mounted and edited in place. The project's
    modules are taken out of `sys.modules` first so that sibling imports see the new
    code too; if the new code fails to load they are put back, and the caller keeps
    serving the handler it had. Calls already running keep the old objects.
    """
    root = os.path.realpath(code_dir) + os.sep
    previous = {
        name: module
        for name, module in list(sys.modules.items())
        if os.path.realpath(getattr(module, "__file__", None) or "").startswith(root)
        or name.partition(".")[0] in _project_packages(root)
    }
    for name in previous:
        del sys.modules[name]
    importlib.invalidate_caches()
    try:
        return load_handler(code_dir, handler_file, handler_name)
    except HandlerLoadError:
        sys.modules.update(previous)
        raise


def _project_packages(root: str) -> set[str]:
    """Top-level names the code dir provides (namespace packages have no __file__)."""
    try:
        return {entry.partition(".")[0] for entry in os.listdir(root)}
    except OSError:
        return set()


def _adapt(func: Callable[..., Any], name: str, shown: str) -> Callable[[Any, Any], Any]:
    """Accept `handle(event)` too; reject signatures that can take neither form."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables: trust them
        return func
    try:
        signature.bind(None, None)
        return func
    except TypeError:
        pass
    try:
        signature.bind(None)
    except TypeError:
        error = f"{name}{signature} in {shown} must accept (event, context)"
        raise HandlerLoadError(LoadFailure(error, shown, _line_of(func))) from None

    def call_with_event(event: Any, context: Any) -> Any:
        return func(event)

    return call_with_event


def _module_name(path: str, root: str) -> str:
    """`functions/hello.py` under the code dir -> `functions.hello`, so siblings import normally.

    Falls back to the file's stem, then to a private name, when the dotted name is not
    a valid identifier path or would collide with an already imported or stdlib module.
    """
    relative = os.path.relpath(path, root)
    candidates = []
    if not relative.startswith(os.pardir) and relative.endswith(".py"):
        candidates.append(relative[:-3].replace(os.sep, "."))
    candidates.append(os.path.basename(path).rpartition(".")[0])
    for name in candidates:
        parts = name.split(".")
        top = parts[0]
        if (
            all(part.isidentifier() for part in parts)
            and parts[-1] != "__init__"
            and top not in sys.modules
            and top not in sys.stdlib_module_names
        ):
            return name
    return "faas_user_handler"


def _describe(exc: BaseException, path: str, root: str) -> LoadFailure:
    """One line, the file and line inside the user's code, and a traceback trimmed to it."""
    prefixes = (root.rstrip(os.sep) + os.sep, os.path.dirname(path).rstrip(os.sep) + os.sep)

    def is_user(filename: str) -> bool:
        real = os.path.realpath(filename)
        return real.startswith(prefixes) and not real.startswith(_OWN_DIR)

    tb: TracebackType | None = exc.__traceback__
    first_user: TracebackType | None = None
    file, line = _display(path, root), None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if is_user(filename):
            first_user = first_user or tb
            file, line = _display(os.path.realpath(filename), root), tb.tb_lineno
        tb = tb.tb_next

    if isinstance(exc, SyntaxError):
        if exc.filename:
            file, line = _display(os.path.realpath(exc.filename), root), exc.lineno
        message = exc.msg
    else:
        message = str(exc)
    error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    trace = "".join(traceback.format_exception(type(exc), exc, first_user or exc.__traceback__))
    return LoadFailure(" ".join(error.split()), file, line, trace)


def _display(path: str, root: str) -> str:
    relative = os.path.relpath(path, root)
    return path if relative.startswith(os.pardir) else relative


def _line_of(obj: Any) -> int | None:
    code = getattr(obj, "__code__", None)
    return getattr(code, "co_firstlineno", None)
