"""Debug mode of a function (`debug: true`, `faas up --debug NAME`): what it changes (pure).

A debugged function runs exactly one replica, started at once so that a debugger can
attach before the first call, with debugpy listening in it; the gateway relays a port
on the host's 127.0.0.1 to it (runtime/debug_relay.py). A call paused at a breakpoint
must not be killed, so its `timeout` is lifted to DEBUG_TIMEOUT for the gateway and
the watchdog alike. Only `faas up` in development serves it: debugpy runs whatever
code whoever connects sends it, so nothing deployed may have it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from runtime.errors import Problem
from runtime.spec._handlers import line_of
from runtime.spec._model import FunctionSpec, Project
from runtime.spec._yaml import dotted

DEBUG_TIMEOUT = 7 * 24 * 3600.0
"""Seconds a call of a debugged function may take: a week, i.e. no timeout in practice
(a finite number, since deadlines are sent to the watchdog as epoch seconds)."""


def debugged(function: FunctionSpec) -> FunctionSpec:
    """`function` as debug mode runs it: one replica, kept at all times, no call timeout."""
    scale = dataclasses.replace(function.scale, min=1, max=1)
    return dataclasses.replace(function, debug=True, scale=scale, timeout=DEBUG_TIMEOUT)


def unknown_functions(project: Project, names: Iterable[str]) -> list[str]:
    """Of `names` (from `faas up --debug`), those the project has no function for."""
    return sorted({name for name in names if name not in project.functions})


def with_debug(project: Project, names: Iterable[str]) -> Project:
    """`project` with the functions `names` debugged as well as those whose file says so."""
    wanted = set(names)
    if not wanted:
        return project
    functions = {
        name: debugged(function) if name in wanted and not function.debug else function
        for name, function in project.functions.items()
    }
    return dataclasses.replace(project, functions=functions)


def debug_problems(project: Project, why_not: str, filename: str | None = None) -> list[Problem]:
    """A problem for each debugged function, where debugging cannot be (`why_not` says
    why: a deploy, a production `faas up`, another backend)."""
    label = str(project.file) if filename is None else filename
    problems = []
    for name, function in project.functions.items():
        if not function.debug:
            continue
        loc = ("functions", name, "debug")
        written = loc in project.lines
        problems.append(
            Problem(
                label,
                line_of(project.lines, loc) if written else None,
                dotted(loc) if written else "",
                f"{'' if written else f'--debug {name}: '}debugging is for development only "
                f"(`faas up` with reload, on the docker backend); {why_not}",
            )
        )
    return problems
