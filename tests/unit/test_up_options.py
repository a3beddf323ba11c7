"""`faas up`'s options apply to every functions.yaml it loads, the reloaded ones too."""

from __future__ import annotations

from pathlib import Path

import pytest

from faas.cli import command_line_changes
from runtime.errors import SpecError
from runtime.spec import Project, load_project_text

SPEC = """\
version: 1
functions:
  a:
    handler: functions/a.py
  b:
    handler: functions/a.py
    debug: {debug}
"""


def load(tmp_path: Path, debug: str = "false") -> Project:
    (tmp_path / "functions").mkdir(exist_ok=True)
    (tmp_path / "functions" / "a.py").write_text("def handle(event, context):\n    return 1\n")
    text = SPEC.format(debug=debug)
    return load_project_text(text, filename="functions.yaml", root=tmp_path)


def test_engine_access_and_isolation_survive_a_reload(tmp_path: Path) -> None:
    adjust = command_line_changes("podman", "published", "gvisor", [], "", Path("f.yaml"))
    for _ in range(2):  # at start-up, then the project a saved edit loads afresh
        project = adjust(load(tmp_path))
        assert project.cluster.engine == "podman"
        assert project.cluster.replica_access == "published"
        assert {f.isolation for f in project.functions.values()} == {"gvisor"}


def test_without_options_a_project_is_as_its_file_says(tmp_path: Path) -> None:
    project = load(tmp_path)
    adjust = command_line_changes(None, None, None, [], "", Path("f.yaml"))
    assert adjust(project) == project


def test_debugging_where_it_cannot_be_is_refused_at_each_load(tmp_path: Path) -> None:
    adjust = command_line_changes(None, None, None, [], "--no-reload serves...", Path("f.yaml"))
    assert not adjust(load(tmp_path)).functions["b"].debug
    with pytest.raises(SpecError):
        adjust(load(tmp_path, debug="true"))
    debugging = command_line_changes(None, None, None, ["a"], "", Path("f.yaml"))
    assert debugging(load(tmp_path)).functions["a"].debug
