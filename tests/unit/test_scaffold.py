from __future__ import annotations

from pathlib import Path

import pytest

from faas.scaffold import create_function
from runtime.errors import FaasError
from runtime.spec import load_project

SPEC = """\
# my project
version: 1
functions:
  hello:
    handler: functions/hello.py   # keep this comment

gateway:
  port: 9000
"""


def test_new_function_is_added_inside_the_functions_block(tmp_path: Path) -> None:
    spec = tmp_path / "functions.yaml"
    spec.write_text(SPEC)
    handler = create_function(spec, "thumb-nail", "async", "/thumbnail")
    assert handler == tmp_path / "functions" / "thumb_nail.py"
    assert "async def handle" in handler.read_text()
    text = spec.read_text()
    assert "# keep this comment" in text
    project = load_project(spec)
    assert list(project.functions) == ["hello", "thumb-nail"]
    assert project.functions["thumb-nail"].routes[0].path == "/thumbnail"
    assert project.gateway.port == 9000


def test_new_function_in_a_new_file(tmp_path: Path) -> None:
    spec = tmp_path / "functions.yaml"
    create_function(spec, "hello", "sync", None)
    assert list(load_project(spec).functions) == ["hello"]


@pytest.mark.parametrize("name", ["Hello", "1abc", "a_b", ""])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(FaasError, match="invalid function name"):
        create_function(tmp_path / "functions.yaml", name, "sync", None)


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    spec = tmp_path / "functions.yaml"
    spec.write_text(SPEC)
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "other.py").write_text("mine")
    with pytest.raises(FaasError, match="already exists"):
        create_function(spec, "other", "sync", None)
    assert (tmp_path / "functions" / "other.py").read_text() == "mine"
    assert spec.read_text() == SPEC


def test_init_creates_a_project_that_loads(tmp_path: Path) -> None:
    from faas.scaffold import create_project

    root = create_project(tmp_path / "My Project", None)
    project = load_project(root / "functions.yaml")
    assert project.name == "my-project"
    assert list(project.functions) == ["hello"]
    assert (root / "functions" / "hello.py").exists()
    assert ".faas/" in (root / ".gitignore").read_text()
    with pytest.raises(FaasError, match="not empty"):
        create_project(root, None)


def test_event_template(tmp_path: Path) -> None:
    spec = tmp_path / "functions.yaml"
    handler = create_function(spec, "consumer", "event", None)
    assert "event.topic" in handler.read_text()


def test_every_template_comes_with_a_test_that_passes(tmp_path: Path) -> None:
    """`faas init` and `faas new` write tests/test_<name>.py; `faas test` runs them, green."""
    import subprocess
    import sys

    from faas.scaffold import TEMPLATES, create_project, test_file

    root = create_project(tmp_path / "proj", None)
    for template in sorted(TEMPLATES):
        create_function(root / "functions.yaml", f"my-{template}", template, None)
        assert test_file(root, f"my-{template}").name == f"test_my_{template}.py"
    run = subprocess.run(
        [sys.executable, "-m", "faas", "test", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout


def test_faas_test_reports_a_failing_test_and_a_missing_tests_dir(tmp_path: Path) -> None:
    import subprocess
    import sys

    from faas.scaffold import create_project

    root = create_project(tmp_path / "proj", None)
    hello = root / "functions" / "hello.py"
    hello.write_text(hello.read_text().replace("hello {name}", "bye {name}"))
    command = [sys.executable, "-m", "faas", "test", "-q", "-p", "no:cacheprovider"]
    failed = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "1 failed" in failed.stdout
    (root / "tests" / "test_hello.py").unlink()
    (root / "tests").rmdir()
    missing = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "faas new NAME" in missing.stderr
