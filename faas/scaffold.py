"""`faas new`: a handler file from a template, its test, and its entry in functions.yaml.

The entry is inserted as text at the end of the `functions:` block, so the
user's comments and layout are kept; the result is validated before it is
written, and nothing is written when it would not load.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from runtime.errors import FaasError, SpecError
from runtime.spec import load_project_text

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

PROJECT_SPEC = """\
# A faas project: `faas up` serves these functions on http://127.0.0.1:8080.
version: 1
project: {name}

defaults:
  auth: none          # public while you try things out; see the README for key and jwt
  timeout: 10s
  memory: 128MiB

functions:
  hello:
    handler: functions/hello.py
    http:
      - path: /hello
        methods: [GET]
"""

TEMPLATES = {
    "sync": '''\
"""{name}: answers HTTP calls."""

from faas.handler import Context, Event


def handle(event: Event, context: Context) -> dict[str, str]:
    name = event.query.get("name", "world")
    return {{"message": f"hello {{name}}", "function": context.function_name}}
''',
    "event": '''\
"""{name}: consumes published events (subscribe with `events: [topic]` in functions.yaml)."""

from faas.handler import Context, Event


def handle(event: Event, context: Context) -> dict[str, str | None]:
    context.logger.info(f"{{event.topic}} #{{event.event_id}} attempt {{event.attempt}}")
    # Raise (or return a 5xx) to have the event retried with backoff, then dead-lettered.
    return {{"handled": event.event_id}}
''',
    "async": '''\
"""{name}: an async handler; awaiting I/O here does not block other calls."""

import asyncio

from faas.handler import Context, Event


async def handle(event: Event, context: Context) -> dict[str, int | str]:
    await asyncio.sleep(0)
    return {{"received_bytes": len(event.body), "call_id": context.call_id}}
''',
}

_TEST_HEAD = '''\
"""{name}, called in-process as its replica would call it: `faas test` runs this."""

from pathlib import Path

from faas.testing import call

HANDLER = Path(__file__).resolve().parents[1] / "{handler}"

'''

TEST_TEMPLATES = {
    "sync": _TEST_HEAD
    + """
def test_{module}_greets_by_name() -> None:
    response = call(HANDLER, query={{"name": "ada"}}, function_name="{name}")
    assert response.status == 200
    assert response.json() == {{"message": "hello ada", "function": "{name}"}}
""",
    "event": _TEST_HEAD
    + """
def test_{module}_handles_an_event() -> None:
    response = call(HANDLER, topic="orders.created", event_id="e-1", json={{"id": 7}})
    assert response.status == 200
    assert response.json() == {{"handled": "e-1"}}
""",
    "async": _TEST_HEAD
    + """
def test_{module}_counts_the_body() -> None:
    response = call(HANDLER, body=b"12345")
    assert response.status == 200
    assert response.json() == {{"received_bytes": 5, "call_id": response.call_id}}
""",
}
"""What `faas new` writes to tests/test_<module>.py for each template."""


def create_project(directory: Path, name: str | None) -> Path:
    """A new project: functions.yaml, a hello function and a .gitignore for the state dir."""
    project = name or re.sub(r"[^a-z0-9-]", "-", directory.resolve().name.lower()).strip("-")
    if not NAME_PATTERN.match(project):
        raise FaasError(f"invalid project name {project!r}: pass --name")
    if directory.exists() and any(directory.iterdir()):
        raise FaasError(f"{directory} exists and is not empty")
    (directory / "functions").mkdir(parents=True, exist_ok=True)
    (directory / "functions.yaml").write_text(PROJECT_SPEC.format(name=project))
    (directory / "functions" / "hello.py").write_text(TEMPLATES["sync"].format(name="hello"))
    _write_test(directory, "hello", "functions/hello.py", "sync")
    (directory / ".gitignore").write_text(".faas/\n__pycache__/\n.pytest_cache/\n")
    load_project_text(
        (directory / "functions.yaml").read_text(),
        filename=str(directory / "functions.yaml"),
        root=directory,
    )
    return directory


def create_function(spec_file: Path, name: str, template: str, route: str | None) -> Path:
    """Write functions/<module>.py and its test (unless one exists), and add the entry."""
    if not NAME_PATTERN.match(name):
        raise FaasError(
            f"invalid function name {name!r}: use lowercase letters, digits and '-', "
            "starting with a letter (at most 40 characters)"
        )
    text = spec_file.read_text() if spec_file.exists() else "version: 1\nfunctions:\n"
    module = name.replace("-", "_")
    handler = spec_file.parent / "functions" / f"{module}.py"
    if handler.exists():
        raise FaasError(f"{handler} already exists")
    updated = _insert_entry(text, name, f"functions/{module}.py", route)
    try:
        project = load_project_text(updated, filename=str(spec_file), root=spec_file.parent)
    except SpecError as exc:
        raise FaasError(f"the new entry would make {spec_file} invalid:\n{exc}") from None
    if name not in project.functions:
        raise FaasError(f"could not add {name!r} to {spec_file}")
    handler.parent.mkdir(parents=True, exist_ok=True)
    handler.write_text(TEMPLATES[template].format(name=name))
    spec_file.write_text(updated)
    _write_test(spec_file.parent, name, f"functions/{module}.py", template)
    return handler


def test_file(root: Path, name: str) -> Path:
    """Where `faas new` writes the test of function `name`."""
    return root / "tests" / f"test_{name.replace('-', '_')}.py"


def _write_test(root: Path, name: str, handler: str, template: str) -> None:
    path = test_file(root, name)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    path.write_text(TEST_TEMPLATES[template].format(name=name, module=module, handler=handler))


def _insert_entry(text: str, name: str, handler: str, route: str | None) -> str:
    entry = [f"  {name}:", f"    handler: {handler}"]
    if route:
        entry += ["    http:", f"      - path: {route}", "        methods: [GET, POST]"]
    lines = text.splitlines()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    functions = None
    if isinstance(root, yaml.MappingNode):
        functions = next((v for k, v in root.value if k.value == "functions"), None)
    if functions is None:
        return "\n".join([*lines, "functions:", *entry]) + "\n"
    if isinstance(functions, yaml.MappingNode) and functions.value:
        if functions.flow_style:
            raise FaasError("`functions:` is written in flow style ({...}); add the entry by hand")
        end = functions.end_mark.line
        if functions.end_mark.column > 0:
            end += 1
        while end > 0 and not lines[end - 1].strip():
            end -= 1
        return "\n".join([*lines[:end], *entry, *lines[end:]]) + "\n"
    assert isinstance(root, yaml.MappingNode)
    key_line = next(k.start_mark.line for k, v in root.value if k.value == "functions")
    lines[key_line] = "functions:"
    return "\n".join([*lines[: key_line + 1], *entry, *lines[key_line + 1 :]]) + "\n"
