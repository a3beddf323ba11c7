"""Which saved files lead to what: reconcile, rebuild or reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchfiles import Change

from faas.watch import ProjectFilter, classify
from runtime.spec import Project, load_project_text

SPEC = """\
version: 1
functions:
  a: {handler: functions/a.py, requirements: functions/a-req.txt}
  b: {handler: functions/b.py}
  c: {handler: other/c.py}
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project_text(SPEC, filename="functions.yaml", root=tmp_path)


@pytest.mark.parametrize(
    ("files", "spec_changed", "rebuild", "reload"),
    [
        (["functions.yaml"], True, set(), set()),
        ([".env"], True, set(), set()),  # the variables functions.yaml's placeholders read
        (["functions/.env"], False, set(), set()),  # only the .env beside functions.yaml
        (["functions/a.py"], False, set(), {"a", "b"}),  # siblings share a code directory
        (["functions/helpers/util.py"], False, set(), {"a", "b"}),
        (["other/c.py"], False, set(), {"c"}),
        (["functions/a-req.txt"], False, {"a"}, set()),
        (["functions/a-req.txt", "functions/b.py"], False, {"a"}, {"b"}),
        (["README.md", "functions/notes.txt"], False, set(), set()),
    ],
)
def test_classify(
    project: Project,
    files: list[str],
    spec_changed: bool,
    rebuild: set[str],
    reload: set[str],
) -> None:
    plan = classify([(Change.modified, str(project.root / f)) for f in files], project)
    assert (plan.spec_changed, plan.rebuild, plan.reload) == (spec_changed, rebuild, reload)


def test_files_outside_the_project_are_ignored(project: Project) -> None:
    assert not classify([(Change.modified, "/elsewhere/functions/a.py")], project)


@pytest.mark.parametrize(
    ("path", "watched"),
    [
        ("functions/a.py", True),
        (".env", True),
        (".faas/keys.json", False),
        ("functions/__pycache__/a.cpython-311.pyc", False),
        ("functions/.a.py.swp", False),
        ("functions/a.py~", False),
        ("functions/4913", False),
        (".git/index", False),
    ],
)
def test_filter(tmp_path: Path, path: str, watched: bool) -> None:
    assert ProjectFilter()(Change.modified, str(tmp_path / path)) is watched
