"""functions.yaml as untrusted input, and what it points at: handler files and secret values."""

from __future__ import annotations

import os
import textwrap
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from runtime.errors import Problem, SpecError
from runtime.spec import (
    Project,
    handler_problems,
    load_project,
    load_project_text,
    missing_secrets,
    secret_references,
)
from runtime.spec._yaml import MAX_DEPTH, MAX_SPEC_SIZE

# --- YAML: anchors, aliases and sizes -----------------------------------------------------------

LAUGHS = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
LAUGHS += [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in pairwise("abcdefghi")]
BILLION_LAUGHS = "\n".join([*LAUGHS, "functions:", "  x: {handler: x.py}", ""])
"""12 lines that stand for 9**9 (387 million) strings once their aliases are expanded."""


def spec_problems(text: str) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load_project_text(text, filename="functions.yaml", root=Path("/srv/shop"))
    return caught.value.problems


def test_billion_laughs_is_refused_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def constructed(*_: object) -> object:
        raise AssertionError("a value was built from a file with aliases")

    # expanding the file would build values; refusing it at its first anchor builds none
    monkeypatch.setattr(yaml.SafeLoader, "construct_object", constructed)
    (problem,) = spec_problems(BILLION_LAUGHS)
    assert (problem.file, problem.line, problem.field) == ("functions.yaml", 2, "")
    assert problem.message.startswith("found anchor '&a': YAML anchors and aliases are not")
    assert "write the value out" in problem.message
    assert "invalid YAML" not in problem.message


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("version: 1\nfunctions:\n  a: &x {handler: a.py}\n", 3, "found anchor '&x'"),
        ("version: 1\nfunctions:\n  a:\n    handler: &h a.py\n", 4, "found anchor '&h'"),
        ("version: 1\nfunctions:\n  a: {handler: a.py}\n  b: *x\n", 4, "found alias '*x'"),
        ("version: 1\nfunctions:\n  a: {<<: *base, handler: a.py}\n", 3, "found alias '*base'"),
        ("version: 1\nx: &loop [*loop]\n", 2, "found anchor '&loop'"),
        ("version: 1\nx:\n  - y\n  - &z [1]\n", 4, "found anchor '&z'"),
    ],
)
def test_anchors_and_aliases_are_refused_on_their_line(text: str, line: int, fragment: str) -> None:
    (problem,) = spec_problems(text)
    assert problem.line == line
    assert problem.message.startswith(fragment)
    assert "settings shared by several functions go under 'defaults:'" in problem.message


def test_an_inline_merge_key_still_works() -> None:
    project = load_project_text(
        "version: 1\nfunctions:\n  a: {<<: {handler: a.py, timeout: 5}, timeout: 7}\n",
        filename="functions.yaml",
        root=Path("/srv/shop"),
    )
    assert (project.functions["a"].handler_file, project.functions["a"].timeout) == ("a.py", 7)


def test_deep_nesting_is_refused_before_recursion_runs_out() -> None:
    (problem,) = spec_problems("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    assert (problem.line, problem.message) == (2, f"nested more than {MAX_DEPTH} levels deep")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2001-13-45", "cannot read '2001-13-45': month must be in 1..12"),
        ("9" * 5000, "Exceeds the limit (4300 digits) for integer string conversion"),
    ],
)
def test_values_python_cannot_build_are_problems_not_crashes(value: str, fragment: str) -> None:
    (problem,) = spec_problems(f"version: 1\nfunctions:\n  a: {{handler: a.py}}\nx: {value}\n")
    assert problem.line == 4
    assert problem.message.startswith("invalid YAML: ")
    assert fragment in problem.message
    assert "set_int_max_str_digits" not in problem.message


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    spec = tmp_path / "functions.yaml"
    spec.write_text("version: 1\n" + "#" * MAX_SPEC_SIZE + "\n")
    with pytest.raises(SpecError) as caught:
        load_project(spec)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(spec), None)
    assert "larger than 1MiB" in problem.message
    assert "larger than 1MiB" in spec_problems("#" * (MAX_SPEC_SIZE + 1))[0].message


# --- handler files --------------------------------------------------------------------------------


def project_with(tmp_path: Path, handlers: dict[str, str], *entries: str) -> Path:
    """A project whose functions.yaml lists `entries` (one `name: handler` each, from line 3)."""
    for name, source in handlers.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    spec = tmp_path / "functions.yaml"
    lines = ["version: 1", "functions:"] + [f"  {entry}" for entry in entries]
    spec.write_text("\n".join(lines) + "\n")
    return spec


def handler_errors(spec: Path) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load_project(spec, check_handlers=True)
    return caught.value.problems


def test_a_missing_handler_file_names_the_handler_line(tmp_path: Path) -> None:
    spec = project_with(
        tmp_path,
        {"functions/hello.py": "def handle(event, context):\n    return 'hi'\n"},
        "ok: {handler: functions/hello.py}",
        "typo:",
        "    handler: functions/helo.py",
        "gone: {handler: functions/gone.py}",
    )
    typo, gone = handler_errors(spec)
    assert (typo.file, typo.line, typo.field) == (str(spec), 5, "functions.typo.handler")
    assert typo.message == (
        f"handler file functions/helo.py does not exist in {tmp_path}; "
        "did you mean functions/hello.py?"
    )
    assert (gone.line, gone.field) == (6, "functions.gone.handler")
    assert gone.message == f"handler file functions/gone.py does not exist in {tmp_path}"


def test_a_syntax_error_names_both_files_and_lines(tmp_path: Path) -> None:
    spec = project_with(
        tmp_path,
        {"functions/broken.py": "import os\n\ndef handle(event, context:\n    return 1\n"},
        "broken: {handler: functions/broken.py}",
    )
    (problem,) = handler_errors(spec)
    assert str(problem).startswith(f"{spec}:3: functions.broken.handler: functions/broken.py:3: ")
    assert "(the handler file is not valid Python 3." in problem.message


def test_a_nul_byte_is_a_syntax_problem(tmp_path: Path) -> None:
    spec = project_with(tmp_path, {}, "nul: {handler: nul.py}")
    (tmp_path / "nul.py").write_bytes(b"def handle(e, c):\n    return 1\x00\n")
    (problem,) = handler_errors(spec)
    assert problem.line == 3
    assert "null bytes" in problem.message


@pytest.mark.parametrize(
    ("handler", "source", "fragment"),
    [
        (
            "h.py:nosuchfunc",
            "def handle(event, context):\n    pass\ndef other(e, c):\n    pass\n",
            "h.py has no top-level function 'nosuchfunc'; define `def nosuchfunc(event, "
            "context):` there, or name one of its functions (handle, other) as h.py:NAME",
        ),
        ("h.py", "def handel(event, context):\n    pass\n", "did you mean h.py:handel?"),
        ("h.py", "x = 1\n", "h.py has no top-level function 'handle'; define `def handle("),
        ("h.py", "def outer():\n    def handle(e, c):\n        pass\n", "no top-level function"),
        ("h.py", "class Api:\n    def handle(self, e, c):\n        pass\n", "no top-level"),
        ("h.py", "def f():\n    handle = 1\n    return handle\n", "no top-level function"),
        ("h.py", "f = lambda handle: handle\n", "no top-level function"),
        ("h.py", "setattr(config, 'handle', 1)\nprint(vars(config))\n", "no top-level"),
    ],
)
def test_a_missing_handler_function_is_named(
    tmp_path: Path, handler: str, source: str, fragment: str
) -> None:
    spec = project_with(tmp_path, {"h.py": source}, "fn:", f"    handler: {handler}")
    (problem,) = handler_errors(spec)
    assert (problem.line, problem.field) == (4, "functions.fn.handler")
    assert fragment in problem.message


LENIENT = {
    "def": "def handle(event, context):\n    pass\n",
    "async def": "async def handle(event, context):\n    pass\n",
    "decorated": "@traced\ndef handle(event, context):\n    pass\n",
    "imported": "from app.handlers import handle\n",
    "imported as": "from app import entry as handle\n",
    "module imported as": "import app.entry as handle\n",
    "star import": "from app.handlers import *\n",
    "assigned": "handle = make_handler()\n",
    "annotated": "handle: Handler = make_handler()\n",
    "unpacked": "handle, other = make_pair()\n",
    "class": "class handle:\n    def __init__(self, event, context):\n        pass\n",
    "in try": "try:\n    from fast import handle\nexcept ImportError:\n    handle = None\n",
    "in if": "import sys\nif sys.platform == 'linux':\n    def handle(e, c):\n        pass\n",
    "with": "with opened() as handle:\n    pass\n",
    "for": "for handle in [print]:\n    pass\n",
    "walrus": "if (handle := make()) is None:\n    raise SystemExit\n",
    "global": "def setup():\n    global handle\n    handle = make()\nsetup()\n",
    "globals()": "globals()['handle'] = make()\n",
    "setattr": "import sys\nsetattr(sys.modules[__name__], 'handle', make())\n",
    "exec": "exec('def handle(e, c): pass')\n",
    "vars()": "vars()['handle'] = make()\n",
    "module __getattr__": "def __getattr__(name):\n    return make(name)\n",
    "raises on import": "raise RuntimeError('at import')\ndef handle(e, c):\n    pass\n",
    "broken import": "import module_that_is_not_installed\ndef handle(e, c):\n    pass\n",
    "invalid escape": "PATTERN = '\\d+'\ndef handle(e, c):\n    pass\n",
}


@pytest.mark.parametrize("source", LENIENT.values(), ids=LENIENT.keys())
def test_bindings_that_may_define_the_handler_are_accepted(tmp_path: Path, source: str) -> None:
    spec = project_with(tmp_path, {"functions/h.py": source}, "fn: {handler: functions/h.py}")
    project = load_project(spec, check_handlers=True)
    assert project.functions["fn"].handler_name == "handle"


def test_a_named_handler_function(tmp_path: Path) -> None:
    spec = project_with(
        tmp_path, {"h.py": "def main(event, context):\n    pass\n"}, "fn: {handler: 'h.py:main'}"
    )
    assert load_project(spec, check_handlers=True).functions["fn"].handler_name == "main"


def test_a_directory_or_a_link_out_of_the_project_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "dir.py").mkdir(parents=True)
    (tmp_path / "outside.py").write_text("def handle(e, c):\n    pass\n")
    os.symlink(tmp_path / "outside.py", root / "link.py")
    spec = project_with(root, {}, "a: {handler: dir.py}", "b: {handler: link.py}")
    directory, link = handler_errors(spec)
    assert (directory.line, directory.message) == (3, "handler dir.py is not a file")
    assert link.line == 4
    assert "leads outside the project directory" in link.message


def test_handlers_are_checked_only_when_asked(tmp_path: Path) -> None:
    """`faas ls`, `faas down` and the like must keep working while a handler is half edited."""
    spec = project_with(tmp_path, {"h.py": "def handle(:\n"}, "fn: {handler: h.py}")
    project = load_project(spec)
    (problem,) = handler_problems(project)
    assert (problem.file, problem.line) == (str(spec), 3)
    assert problem.message.startswith("h.py:1: ")


def test_the_shipped_projects_pass_the_checks() -> None:
    repo = Path(__file__).resolve().parents[2]
    specs = [repo / "functions.yaml", *sorted((repo / "tests/e2e/projects").glob("*/*.yaml"))]
    for spec in specs:
        assert load_project(spec, check_handlers=True).functions, spec


# --- secret values -------------------------------------------------------------------------------

SECRETS = """\
version: 1
gateway:
  jwt: {algorithms: [HS256], secret: jwt-key}
  callback_secret: callback-key
defaults:
  callback_secret: shared-key
functions:
  shop:
    handler: shop.py
    secrets: [db-password, api-key]
    http:
      - path: /hook
        webhook_secret: hook-secret
  mail:
    handler: mail.py
    secrets: [db-password]
    callback_secret: mail-key
"""


def secrets_project(text: str = SECRETS) -> Project:
    return load_project_text(text, filename="functions.yaml", root=Path("/srv/shop"))


def test_every_secret_reference_with_its_field() -> None:
    fields = [(".".join(map(str, loc)), name) for loc, name in secret_references(secrets_project())]
    assert fields == [
        ("gateway.jwt.secret", "jwt-key"),
        ("gateway.callback_secret", "callback-key"),
        ("defaults.callback_secret", "shared-key"),
        ("functions.shop.secrets.0", "db-password"),
        ("functions.shop.secrets.1", "api-key"),
        ("functions.shop.http.0.webhook_secret", "hook-secret"),
        ("functions.mail.secrets.0", "db-password"),
        ("functions.mail.callback_secret", "mail-key"),
    ]


def test_a_secret_without_a_value_is_named_with_its_line_and_how_to_set_it() -> None:
    available = {"jwt-key", "callback-key", "shared-key", "api-key", "hook-secret", "mail-key"}
    problems = missing_secrets(secrets_project(), available, "shop/functions.yaml")
    assert [str(problem) for problem in problems] == [
        "shop/functions.yaml:10: functions.shop.secrets[0]: secret 'db-password' has no value; "
        "set it with `faas secrets set db-password` or the environment variable "
        "FAAS_SECRET_DB_PASSWORD",
        "shop/functions.yaml:16: functions.mail.secrets[0]: secret 'db-password' has no value; "
        "set it with `faas secrets set db-password` or the environment variable "
        "FAAS_SECRET_DB_PASSWORD",
    ]


def test_every_secret_without_a_value_is_reported_at_once() -> None:
    problems = missing_secrets(secrets_project(), set())
    assert [(p.line, p.field) for p in problems] == [
        (3, "gateway.jwt.secret"),
        (4, "gateway.callback_secret"),
        (6, "defaults.callback_secret"),
        (10, "functions.shop.secrets[0]"),
        (10, "functions.shop.secrets[1]"),
        (13, "functions.shop.http[0].webhook_secret"),
        (16, "functions.mail.secrets[0]"),
        (17, "functions.mail.callback_secret"),
    ]
    assert all(p.file == "/srv/shop/functions.yaml" for p in problems)


def test_an_rs256_gateway_needs_no_jwt_secret_value() -> None:
    text = (
        "version: 1\ngateway:\n  jwt: {algorithms: [RS256], public_key_file: key.pem}\n"
        "functions:\n  a: {handler: a.py}\n"
    )
    assert missing_secrets(secrets_project(text), set()) == []
