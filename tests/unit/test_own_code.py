"""A function's own code: its directory when it has one, else what its handler imports."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from runtime.images import plan_image
from runtime.own_code import imported_names, own_files
from runtime.spec import load_project_text


def make(root: Path, files: Mapping[str, str]) -> None:
    """Write a project: relative path -> text."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def own(
    root: Path, handler: str, others: Iterable[str] = (), include: Iterable[str] = ()
) -> list[str]:
    return [str(path) for path in own_files(root, handler, others, include)]


# -- a handler in a shared directory: itself and what it imports ------------------------


def test_a_handler_in_a_shared_directory_gets_only_itself(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "def handle(event, context):\n    return 'hi'\n",
            "functions/echo.py": "def handle(event, context):\n    return event.body\n",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == ["functions/hello.py"]


def test_a_sibling_module_is_followed_through_its_own_imports(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "import util\n",
            "functions/util.py": "import helpers\n",
            "functions/helpers.py": "",
            "functions/unrelated.py": "",
            "functions/echo.py": "",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == [
        "functions/hello.py",
        "functions/helpers.py",
        "functions/util.py",
    ]


def test_a_package_at_the_project_root_brings_its_init_and_the_module(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "from lib.text import slug\n",
            "functions/echo.py": "",
            "lib/__init__.py": "",
            "lib/text.py": "def slug(s):\n    return s\n",
            "lib/other.py": "",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == [
        "functions/hello.py",
        "lib/__init__.py",
        "lib/text.py",
    ]


def test_a_module_is_found_by_its_dotted_name_from_the_project_root(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "import functions.shared\n",
            "functions/shared.py": "",
            "functions/echo.py": "",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == [
        "functions/hello.py",
        "functions/shared.py",
    ]


def test_relative_imports_are_resolved_from_the_importing_module(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "from pkg import run\n",
            "functions/echo.py": "",
            "functions/pkg/__init__.py": "from .sub import x\n",
            "functions/pkg/sub.py": "from . import helpers\nfrom .. import util\nx = 1\n",
            "functions/pkg/helpers.py": "",
            "functions/pkg/unused.py": "",
            "functions/util.py": "",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == [
        "functions/hello.py",
        "functions/pkg/__init__.py",
        "functions/pkg/helpers.py",
        "functions/pkg/sub.py",
        "functions/util.py",
    ]


def test_a_relative_import_above_the_project_root_adds_nothing(tmp_path: Path) -> None:
    make(tmp_path, {"functions/hello.py": "from ... import x\n", "functions/echo.py": ""})
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == ["functions/hello.py"]


def test_a_handler_at_the_project_root_gets_its_imports_not_the_whole_project(
    tmp_path: Path,
) -> None:
    make(tmp_path, {"main.py": "import util\n", "util.py": "", "notes.txt": ""})
    assert own(tmp_path, "main.py") == ["main.py", "util.py"]


# -- a handler in a directory of its own: the directory -------------------------------


def test_a_handler_in_a_directory_of_its_own_gets_the_directory_without_clutter(
    tmp_path: Path,
) -> None:
    make(
        tmp_path,
        {
            "functions/resize/handler.py": "",
            "functions/resize/template.html": "<p>{size}</p>",
            "functions/resize/mod.py": "",
            "functions/resize/static/logo.svg": "<svg/>",
            "functions/resize/__pycache__/mod.cpython-311.pyc": "junk",
            "functions/resize/stale.pyc": "junk",
            "functions/resize/.env": "SECRET=1",
            "functions/resize/.git/config": "",
            "functions/resize/x.py~": "",
            "functions/hello.py": "",
        },
    )
    assert own(tmp_path, "functions/resize/handler.py", ["functions/hello.py"]) == [
        "functions/resize/handler.py",
        "functions/resize/mod.py",
        "functions/resize/static/logo.svg",
        "functions/resize/template.html",
    ]


def test_a_directory_holding_another_handler_below_it_is_not_taken_whole(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/a/handler.py": "",
            "functions/a/data.txt": "",
            "functions/a/b/handler.py": "",
            "functions/a/b/page.html": "",
        },
    )
    assert own(tmp_path, "functions/a/handler.py", ["functions/a/b/handler.py"]) == [
        "functions/a/handler.py"
    ]
    # the inner function's directory holds no other handler: it is its own
    assert own(tmp_path, "functions/a/b/handler.py", ["functions/a/handler.py"]) == [
        "functions/a/b/handler.py",
        "functions/a/b/page.html",
    ]


# -- include, and what is not the project's -------------------------------------------


def test_include_adds_a_file_and_a_directory(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "",
            "functions/echo.py": "",
            "data/words.txt": "a\nb\n",
            "plugins/one.py": "",
            "plugins/sub/two.py": "",
            "plugins/__pycache__/one.cpython-311.pyc": "junk",
        },
    )
    assert own(
        tmp_path, "functions/hello.py", ["functions/echo.py"], ["data/words.txt", "plugins"]
    ) == [
        "data/words.txt",
        "functions/hello.py",
        "plugins/one.py",
        "plugins/sub/two.py",
    ]


def test_a_handler_with_a_syntax_error_still_gets_itself(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "import util\ndef handle(:\n",
            "functions/util.py": "",
            "functions/echo.py": "",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == ["functions/hello.py"]


def test_imports_of_the_standard_library_and_requirements_add_nothing(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "import json\nimport requests\nfrom os import path\n",
            "functions/echo.py": "",
        },
    )
    assert own(tmp_path, "functions/hello.py", ["functions/echo.py"]) == ["functions/hello.py"]


def test_a_cyclic_import_terminates(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/a.py": "import b\n",
            "functions/b.py": "import a\n",
            "functions/echo.py": "",
        },
    )
    assert own(tmp_path, "functions/a.py", ["functions/echo.py"]) == [
        "functions/a.py",
        "functions/b.py",
    ]


# -- imported_names --------------------------------------------------------------------


def test_imported_names_reads_every_form_of_import() -> None:
    source = (
        "import os, pkg.mod as m\n"
        "from . import sibling\n"
        "from ..parent import thing\n"
        "from x import *\n"
        "from y import z\n"
        "def late():\n"
        "    import inside\n"
    )
    assert set(imported_names(source)) == {
        ("os", 0),
        ("pkg.mod", 0),
        ("sibling", 1),
        ("parent", 2),
        ("parent.thing", 2),
        ("x", 0),
        ("y", 0),
        ("y.z", 0),
        ("inside", 0),
    }


def test_imported_names_of_no_source_or_unparsable_source_is_empty() -> None:
    assert list(imported_names(None)) == []
    assert list(imported_names("import (\n")) == []


# -- through the image plan -----------------------------------------------------------

TWO_FUNCTIONS = """\
version: 1
project: demo
functions:
  hello:
    handler: functions/hello.py
  echo:
    handler: functions/echo.py
"""


def tar_names(context: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(context)) as archive:
        return archive.getnames()


def test_a_function_image_holds_none_of_another_functions_source(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "functions/hello.py": "def handle(event, context):\n    return 'hi'\n",
            "functions/echo.py": "def handle(event, context):\n    return event.body\n",
        },
    )
    project = load_project_text(TWO_FUNCTIONS, filename="functions.yaml", root=tmp_path)
    hello = plan_image(project, project.functions["hello"], "sha256:base", lambda p: p)
    echo = plan_image(project, project.functions["echo"], "sha256:base", lambda p: p)

    assert "app/functions/hello.py" in hello.code
    assert "app/functions/echo.py" not in hello.code
    assert "app/functions/hello.py" in tar_names(hello.context)
    assert not [name for name in tar_names(hello.context) if name.endswith("echo.py")]
    assert hello.tag != echo.tag

    mounted = plan_image(
        project, project.functions["hello"], "sha256:base", lambda p: p, bake_code=False
    )
    assert [name for name in mounted.code if name.startswith("app/")] == ["app/.keep"]
    assert not [
        name
        for name in tar_names(mounted.context)
        if PurePosixPath(name).suffix == ".py" and name.startswith("app/")
    ]


# -- a directory of its own ---------------------------------------------------------


def test_a_handler_in_a_directory_of_its_own_also_gets_what_it_imports_from_outside(
    tmp_path: Path,
) -> None:
    make(
        tmp_path,
        {
            "functions/resize/handler.py": "import functions.shared\nfrom lib.text import slug\n",
            "functions/resize/template.html": "",
            "functions/shared.py": "",
            "functions/hello.py": "",
            "lib/__init__.py": "",
            "lib/text.py": "",
        },
    )
    assert own(tmp_path, "functions/resize/handler.py", ["functions/hello.py"]) == [
        "functions/resize/handler.py",
        "functions/resize/template.html",
        "functions/shared.py",
        "lib/__init__.py",
        "lib/text.py",
    ]


def test_functions_sharing_a_handler_file_in_a_directory_of_its_own_get_the_directory(
    tmp_path: Path,
) -> None:
    make(
        tmp_path,
        {"functions/resize/handler.py": "", "functions/resize/template.html": ""},
    )
    shared = "functions/resize/handler.py"
    assert own(tmp_path, shared, [shared]) == [
        "functions/resize/handler.py",
        "functions/resize/template.html",
    ]
