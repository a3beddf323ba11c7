"""What a set of changed files means for a running project: pure, so it is tested as a table.

- functions.yaml or the .env beside it changed: reconcile the whole configuration
  (.env holds the variables its `${NAME}` placeholders read).
- a function's requirements file changed: rebuild its image and roll its replicas.
- a Python file under a function's code directory changed: reload that function's code.
Everything else (the state directory, caches, editor files) is ignored by the filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from watchfiles import Change, DefaultFilter

from runtime.images import code_root
from runtime.spec import DOTENV_FILENAME, Project


class ProjectFilter(DefaultFilter):
    """watchfiles' defaults (VCS, caches, swap and backup files) plus our state directory."""

    ignore_dirs = (*DefaultFilter.ignore_dirs, ".faas", ".ruff_cache")
    ignore_entity_patterns = (*DefaultFilter.ignore_entity_patterns, r"^4913$", r"\.tmp$")


@dataclass
class Plan:
    spec_changed: bool = False
    rebuild: set[str] = field(default_factory=set)
    reload: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.spec_changed or bool(self.rebuild or self.reload)


def classify(changes: Iterable[tuple[Change, str]], project: Project) -> Plan:
    plan = Plan()
    root = project.root.resolve()
    for _, raw in changes:
        try:
            relative = PurePosixPath(Path(raw).resolve().relative_to(root).as_posix())
        except ValueError:
            continue
        plan.files.append(str(relative))
        if relative in (PurePosixPath(project.file.name), PurePosixPath(DOTENV_FILENAME)):
            plan.spec_changed = True
            continue
        for function in project.functions.values():
            if function.requirements and relative == PurePosixPath(function.requirements):
                plan.rebuild.add(function.name)
            elif relative.suffix == ".py" and _within(relative, code_root(function)):
                plan.reload.add(function.name)
    plan.reload -= plan.rebuild  # a rolled replica imports the new code anyway
    return plan


def _within(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents
