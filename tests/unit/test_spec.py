from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from runtime.errors import Problem, SpecError
from runtime.spec import (
    DEFAULT_BASE_IMAGE,
    DEFAULT_CPUS,
    DEFAULT_GATEWAY,
    DEFAULT_MEMORY,
    DEFAULT_SCALE,
    DEFAULT_TIMEOUT,
    FunctionSpec,
    MiB,
    Project,
    Route,
    ScalePolicy,
    load_project,
    load_project_text,
    parse_duration,
    parse_size,
)

ROOT = Path("/srv/examples")

MINIMAL = """\
version: 1
functions:
  hello:
    handler: functions/hello.py
"""


def load(text: str, *, root: Path = ROOT, project_name: str | None = None) -> Project:
    return load_project_text(
        textwrap.dedent(text), filename="functions.yaml", root=root, project_name=project_name
    )


def problems_of(text: str, *, root: Path = ROOT, project_name: str | None = None) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load(text, root=root, project_name=project_name)
    return caught.value.problems


def with_function(*lines: str) -> str:
    """MINIMAL with `lines` added to function 'hello', the first of them on line 5."""
    return MINIMAL + "".join(f"    {line}\n" for line in lines)


def with_handler(handler: str) -> str:
    """MINIMAL with the handler (on line 4) replaced."""
    return MINIMAL.replace("functions/hello.py", handler)


def assert_one_problem(
    problems: list[Problem], line: int | None, field: str, fragment: str
) -> None:
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.file, problem.line, problem.field) == ("functions.yaml", line, field)
    assert fragment in problem.message


# --- valid files ------------------------------------------------------------------------------

FULL = """\
version: 1
project: examples
gateway:
  host: 0.0.0.0
  port: 9000
  max_body_size: 1MiB
defaults:
  base_image: python:3.12-slim
  timeout: 10s
  memory: 512m
  environment:
    LOG_LEVEL: info
    RETRIES: 3
  scale:
    max: 8
    idle_timeout: 2m
functions:
  hello:
    handler: ./functions//hello.py
    http:
      - path: /hello
        methods: [get, Post]
      - path: /users/{id:int}
    environment:
      LOG_LEVEL: debug
      FEATURE: true
      RATIO: 0.5
    timeout: 500ms
    cpus: 0.5
    requirements: functions/requirements.txt
    scale: {min: 1, target_concurrency: 4, concurrency: 8}
  resize:
    handler: images/resize.py:main
    memory: 1GiB
    cpus: 2
"""


def test_full_file_resolves_with_defaults_merged() -> None:
    project = load(FULL)

    assert project.name == "examples"
    assert project.root == ROOT
    assert project.file == ROOT / "functions.yaml"
    assert project.gateway == dataclasses.replace(
        DEFAULT_GATEWAY, host="0.0.0.0", port=9000, max_body_size=MiB
    )
    assert list(project.functions) == ["hello", "resize"]

    hello = project.functions["hello"]
    assert hello == FunctionSpec(
        name="hello",
        handler_file="functions/hello.py",
        handler_name="handle",
        routes=(Route("/hello", ("GET", "POST")), Route("/users/{id:int}", ("GET",))),
        environment={"LOG_LEVEL": "debug", "RETRIES": "3", "FEATURE": "true", "RATIO": "0.5"},
        timeout=0.5,
        memory=512 * MiB,
        cpus=0.5,
        requirements="functions/requirements.txt",
        base_image="python:3.12-slim",
        scale=ScalePolicy(
            min=1,
            max=8,
            target_concurrency=4,
            concurrency=8,
            idle_timeout=120.0,
            max_queue=100,
        ),
    )

    resize = project.functions["resize"]
    assert (resize.handler_file, resize.handler_name) == ("images/resize.py", "main")
    assert resize.routes == ()
    assert dict(resize.environment) == {"LOG_LEVEL": "info", "RETRIES": "3"}
    assert (resize.timeout, resize.memory, resize.cpus) == (10.0, 1024 * MiB, 2.0)
    assert resize.scale == dataclasses.replace(DEFAULT_SCALE, max=8, idle_timeout=120.0)


def test_minimal_file_gets_every_default() -> None:
    project = load(MINIMAL)

    assert project.name == "examples"
    assert project.gateway == DEFAULT_GATEWAY
    hello = project.functions["hello"]
    assert hello.routes == ()
    assert dict(hello.environment) == {}
    assert hello.timeout == DEFAULT_TIMEOUT
    assert hello.memory == DEFAULT_MEMORY
    assert hello.cpus == DEFAULT_CPUS
    assert hello.base_image == DEFAULT_BASE_IMAGE
    assert hello.requirements is None
    assert hello.scale == DEFAULT_SCALE


def test_resolved_objects_are_immutable() -> None:
    project = load(with_function("environment: {A: b}"))
    hello = project.functions["hello"]

    with pytest.raises(TypeError):
        project.functions["other"] = hello  # type: ignore[index]
    with pytest.raises(TypeError):
        hello.environment["A"] = "c"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        hello.timeout = 1.0  # type: ignore[misc]
    assert hash(hello) == hash(dataclasses.replace(hello))


def test_empty_blocks_mean_the_defaults() -> None:
    project = load(
        """\
        version: 1
        gateway:
        defaults:
          # scale: {max: 2}
        functions:
          hello:
            handler: hello.py
            http:
            environment:
            scale:
        """
    )

    assert project.gateway == DEFAULT_GATEWAY
    assert project.functions["hello"].scale == DEFAULT_SCALE


def test_yaml_merge_keys_may_be_overridden() -> None:
    project = load(
        """\
        version: 1
        functions:
          hello:
            handler: hello.py
          bye:
            <<: {handler: hello.py, timeout: 5}
            timeout: 7
        """
    )

    assert project.functions["bye"].handler_file == "hello.py"
    assert project.functions["bye"].timeout == 7.0


@pytest.mark.parametrize(
    ("directory", "declared", "argument", "expected"),
    [
        ("examples", None, None, "examples"),
        ("My Cool_Project", None, None, "my-cool-project"),
        ("examples", "shop", None, "shop"),
        ("examples", "shop", "override", "override"),
    ],
)
def test_project_name(
    directory: str, declared: str | None, argument: str | None, expected: str
) -> None:
    text = MINIMAL + (f"project: {declared}\n" if declared else "")
    assert load(text, root=Path("/srv") / directory, project_name=argument).name == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (1024, 1024),
        ("512", 512),
        ("100B", 100),
        ("1K", 1024),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("256m", 256 * MiB),
        ("256MiB", 256 * MiB),
        ("2MB", 2_000_000),
        ("1.5GiB", 1536 * MiB),
        ("1gb", 1_000_000_000),
    ],
)
def test_sizes(value: object, count: int) -> None:
    assert parse_size(value) == count


@pytest.mark.parametrize(
    ("handler", "file", "function"),
    [
        ("hello.py", "hello.py", "handle"),
        ("./src/../hello.py:main", "hello.py", "main"),
        ("a/b/c.py:_run2", "a/b/c.py", "_run2"),
    ],
)
def test_handler_forms(handler: str, file: str, function: str) -> None:
    hello = load(with_handler(handler)).functions["hello"]
    assert (hello.handler_file, hello.handler_name) == (file, function)


@pytest.mark.parametrize("path", ["/", "/uid", "/users/{id}", "/functions", "/ui-kit/x"])
def test_route_paths_allowed(path: str) -> None:
    routes = load(with_function("http:", f"  - path: {path}")).functions["hello"].routes
    assert routes == (Route(path, ("GET",)),)


def test_load_project_reads_a_file_or_its_directory(tmp_path: Path) -> None:
    project_dir = tmp_path / "My_Shop"
    project_dir.mkdir()
    (project_dir / "functions.yaml").write_text(MINIMAL)

    assert load_project(project_dir / "functions.yaml").name == "my-shop"
    project = load_project(project_dir, project_name="shop")
    assert (project.name, project.root) == ("shop", project_dir.resolve())


# --- invalid files: one problem each ---------------------------------------------------------

BAD_FUNCTION_VALUES = [
    ("timout: 5s", "timout", "unknown field 'timout'; did you mean 'timeout'?"),
    ("colour: red", "colour", "unknown field 'colour'; expected one of: auth, base_image, "),
    (
        "timeout: soon",
        "timeout",
        'expected a duration like 30, "500ms", "30s" or "5m", got \'soon\'',
    ),
    ("timeout: 0", "timeout", "expected a duration greater than 0, got 0"),
    ("timeout: -1s", "timeout", "expected a duration like"),
    ("timeout: yes", "timeout", 'or "5m", got true'),
    ("memory: lots", "memory", 'expected a size like 1048576, "512KiB", "256MiB", "1GB" or'),
    ("memory: 8MiB", "memory", "expected at least 16MiB of memory, got '8MiB': a Python"),
    ("memory: 1.5", "memory", "expected a size like"),
    ("cpus: 0", "cpus", "expected a number of CPUs greater than 0 and at most 64, like 0.5"),
    ("cpus: 65", "cpus", "got 65"),
    ("cpus: true", "cpus", "got true"),
    ("cpus: '2'", "cpus", "got '2'"),
    ("base_image: ''", "base_image", "expected an image reference, got ''"),
    ("requirements: /etc/req.txt", "requirements", "relative to the project directory"),
    ("requirements: ../req.txt", "requirements", "inside the project directory"),
    ("http: /hello", "http", "expected a list, got '/hello'"),
    ("scale: 3", "scale", "expected a mapping, got 3"),
    ("scale: {max: 0}", "scale.max", "expected an integer >= 1, got 0"),
    ("scale: {min: -1}", "scale.min", "expected an integer >= 0, got -1"),
    ("scale: {max_queue: 1.5}", "scale.max_queue", "expected an integer >= 0, got 1.5"),
    ("scale: {idle_timeout: never}", "scale.idle_timeout", "expected a duration like"),
    ("scale: {min: 4, max: 2}", "scale.max", "expected max >= min (4), got 2"),
    ("scale: {concurrency: 5}", "scale.concurrency", "(10, the default), got 5"),
    ("scale: {target_concurrency: 0}", "scale.target_concurrency", "expected an integer >= 1"),
    ("environment: {FAAS_TOKEN: x}", "environment.FAAS_TOKEN", "reserved for the platform"),
    ("environment: {MY-VAR: x}", "environment.MY-VAR", "expected an environment variable name"),
    ("environment: {EMPTY: null}", "environment.EMPTY", "expected a string, number or boolean"),
    ("environment: {NESTED: [1]}", "environment.NESTED", "got a list"),
    ("environment: {on: 1}", "environment.on", "YAML reads 'on' as a boolean; put it in quotes"),
    ("environment: {1: x}", "environment.1", "keys must be strings, but YAML reads '1' as a"),
]


@pytest.mark.parametrize(("line", "field", "fragment"), BAD_FUNCTION_VALUES)
def test_bad_function_value(line: str, field: str, fragment: str) -> None:
    assert_one_problem(problems_of(with_function(line)), 5, f"functions.hello.{field}", fragment)


BAD_HANDLERS = [
    ("/srv/hello.py", "expected a path relative to the project directory, got '/srv/hello.py'"),
    ("../hello.py", "expected a path inside the project directory, got '../hello.py'"),
    ("functions/../../hello.py", "expected a path inside the project directory"),
    ("'functions\\hello.py'", "expected '/' as the path separator"),
    ("hello.txt", 'expected "path/to/file.py" or "path/to/file.py:function", got \'hello.txt\''),
    ("functions/", 'expected "path/to/file.py" or "path/to/file.py:function"'),
    ("'hello.py:'", "the function name after ':' is missing in 'hello.py:'"),
    ("hello.py:2fast", "expected the handler function to be a Python identifier, got '2fast'"),
    ("hello.py:class", "expected the handler function to be a Python identifier, got 'class'"),
    ("hello.py:a:b", "got 'a:b'"),
    ("42", "got 42"),
]


@pytest.mark.parametrize(("handler", "fragment"), BAD_HANDLERS)
def test_bad_handler(handler: str, fragment: str) -> None:
    assert_one_problem(problems_of(with_handler(handler)), 4, "functions.hello.handler", fragment)


BAD_ROUTES = [
    (["- path: /function/x"], 6, "[0].path", "paths under /function are reserved for the gateway"),
    (["- path: /async-function/x"], 6, "[0].path", "reserved for the gateway"),
    (["- path: /healthz"], 6, "[0].path", "paths under /healthz are reserved"),
    (["- path: /ui"], 6, "[0].path", "paths under /ui are reserved"),
    (["- path: /_/status"], 6, "[0].path", "paths under /_ are reserved"),
    (["- path: hello"], 6, "[0].path", "expected a path starting with '/', like \"/hello\""),
    (["- path: /a b"], 6, "[0].path", "expected a path without spaces, '?' or '#'"),
    (["- path: /users/{id"], 6, "[0].path", "expected path parameters like {id} or {id:int}"),
    (["- path: /users/{id:long}"], 6, "[0].path", "expected path parameters like"),
    (["- methods: [GET]"], 6, "[0].path", "missing required field 'path'"),
    (["- /hello"], 6, "[0]", "expected a mapping, got '/hello'"),
    (
        ["- path: /a", "  methods: [GET, FETCH]"],
        7,
        "[0].methods[1]",
        "PATCH, DELETE, HEAD, OPTIONS",
    ),
    (["- path: /a", "  methods: [get, POST, GET]"], 7, "[0].methods[2]", "GET is listed twice"),
    (["- path: /a", "  methods: []"], 7, "[0].methods", "expected at least one HTTP method"),
    (["- path: /a", "  methods: GET"], 7, "[0].methods", "expected a list, got 'GET'"),
    (
        ["- path: /a", "- path: /a", "  methods: [POST]"],
        7,
        "[1].path",
        "already declared in http[0]",
    ),
    (
        ["- path: /a/{x}", "- path: /a/{y}"],
        7,
        "[1].path",
        "'/a/{y}' is already declared in http[0]",
    ),
]


@pytest.mark.parametrize(("routes", "line", "field", "fragment"), BAD_ROUTES)
def test_bad_route(routes: list[str], line: int, field: str, fragment: str) -> None:
    problems = problems_of(with_function("http:", *(f"  {route}" for route in routes)))
    assert_one_problem(problems, line, f"functions.hello.http{field}", fragment)


BAD_GATEWAY_VALUES = [
    ("prot: 1", "prot", "unknown field 'prot'; did you mean 'port'?"),
    ("port: true", "port", "expected a port number between 1 and 65535, got true"),
    ("port: '8080'", "port", "got '8080'"),
    ("port: 70000", "port", "between 1 and 65535, got 70000"),
    ("port: 0", "port", "between 1 and 65535, got 0"),
    ("max_body_size: -1", "max_body_size", "expected a size greater than 0, got -1"),
    ("max_body_size: 0MiB", "max_body_size", "expected a size greater than 0, got '0MiB'"),
    ("max_body_size: big", "max_body_size", "expected a size like"),
    ("host: ''", "host", "expected a host name or IP address, got ''"),
]


@pytest.mark.parametrize(("line", "field", "fragment"), BAD_GATEWAY_VALUES)
def test_bad_gateway_value(line: str, field: str, fragment: str) -> None:
    problems = problems_of(f"gateway:\n  {line}\n" + MINIMAL)
    assert_one_problem(problems, 2, f"gateway.{field}", fragment)


BAD_YAML = [
    ("version: 1\nfunctions:\n\thello: {}\n", 3, "found character '\\t' that cannot start any"),
    ("version: 1\nfunctions:\n\thello: {}\n", 3, "(indent with spaces: YAML does not allow tabs)"),
    ("version: 1\nfunctions: [\n", 3, "while parsing a flow node, expected the node content"),
    ("version: 1\nhandler: a: b\n", 2, "mapping values are not allowed here"),
    ("version: 1\n%%%\n", 2, "while scanning a directive"),
    ("version: 1\nhandler: 'a.py\n", 3, "while scanning a quoted scalar"),
    (MINIMAL + "x: !python/name:os.system x\n", 5, "could not determine a constructor for the tag"),
    (MINIMAL + "x: !python/object {}\n", 5, "unsupported tag '!python/object'"),
    (MINIMAL + "---\nversion: 1\n", 5, "expected a single document in the stream"),
    (MINIMAL + "x: \x07\n", 5, "unacceptable character #x0007"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD_YAML)
def test_invalid_yaml(text: str, line: int, fragment: str) -> None:
    problems = problems_of(text)
    assert_one_problem(problems, line, "", "invalid YAML: ")
    assert fragment in problems[0].message


TWO_FUNCTIONS = """\
version: 1
functions:
  hello:
    handler: hello.py
    http: [{path: /hello, methods: [GET, POST]}]
  greet:
    handler: greet.py
    http:
      - path: /hello
        methods: [post]
"""

SAME_ROUTE_RENAMED_PARAMETER = """\
version: 1
functions:
  users:
    handler: users.py
    http: [{path: "/users/{id}"}]
  profiles:
    handler: profiles.py
    http:
      - path: "/users/{name}"
"""

DEFAULTS_MAX_BELOW_MIN = """\
version: 1
defaults:
  scale:
    max: 2
    min: 3
functions:
  hello: {handler: hello.py}
  bye: {handler: bye.py}
"""

INVALID_FILES = [
    pytest.param(
        MINIMAL + "projct: x\n",
        5,
        "projct",
        "unknown field 'projct'; did you mean 'project'?",
        id="unknown-top-level-key",
    ),
    pytest.param(
        with_function("scale:", "  max: 3", "  mni: 1"),
        7,
        "functions.hello.scale.mni",
        "unknown field 'mni'; did you mean 'min'?",
        id="unknown-scale-key",
    ),
    pytest.param(
        "defaults:\n  handler: x.py\n" + MINIMAL,
        2,
        "defaults.handler",
        "'handler' cannot have a default; set it on each function",
        id="function-only-key-in-defaults",
    ),
    pytest.param(
        "defaults:\n  scale:\n    idle_timeout: 5 minutes\n" + MINIMAL,
        3,
        "defaults.scale.idle_timeout",
        "expected a duration like",
        id="bad-value-in-defaults",
    ),
    pytest.param(
        MINIMAL.replace("hello:", "Hello_World:"),
        3,
        "functions.Hello_World",
        "expected a function name of at most 40 lowercase letters, digits and '-'",
        id="bad-function-name",
    ),
    pytest.param(
        MINIMAL.replace("hello:", f"{'a' * 41}:"),
        3,
        f"functions.{'a' * 41}",
        "at most 40",
        id="function-name-too-long",
    ),
    pytest.param(
        MINIMAL + "project: 9lives\n",
        5,
        "project",
        "expected a project name",
        id="bad-project-name",
    ),
    pytest.param(
        MINIMAL.replace("version: 1", "version: 2"),
        1,
        "version",
        "expected 1, the only version this platform reads, got 2",
        id="bad-version",
    ),
    pytest.param(
        MINIMAL.replace("version: 1", "version: '1'"),
        1,
        "version",
        "got '1'",
        id="version-as-string",
    ),
    pytest.param(
        MINIMAL.replace("version: 1\n", ""),
        1,
        "version",
        "missing required field 'version'",
        id="missing-version",
    ),
    pytest.param(
        "version: 1\n",
        1,
        "functions",
        "missing required field 'functions'",
        id="missing-functions",
    ),
    pytest.param(
        "version: 1\nfunctions: {}\n",
        2,
        "functions",
        "expected at least one function",
        id="no-functions",
    ),
    pytest.param(
        "version: 1\nfunctions: [hello]\n",
        2,
        "functions",
        "expected a mapping, got a list",
        id="functions-as-list",
    ),
    pytest.param(
        "version: 1\nfunctions:\n  hello:\n    timeout: 5\n",
        3,
        "functions.hello.handler",
        "missing required field 'handler'",
        id="missing-handler",
    ),
    pytest.param(
        "version: 1\nfunctions:\n  hello:\n",
        3,
        "functions.hello",
        "expected a mapping, got null",
        id="function-without-body",
    ),
    pytest.param(
        with_function("timeout: 5", "timeout: 6"),
        6,
        "functions.hello.timeout",
        "duplicate key 'timeout'; it is already set on line 5",
        id="duplicate-key",
    ),
    pytest.param(
        "defaults:\n  scale: {max: 2}\n" + with_function("scale:", "  min: 3"),
        8,
        "functions.hello.scale.min",
        "expected min <= max (2, set in defaults), got 3",
        id="min-above-max-from-defaults",
    ),
    pytest.param(
        DEFAULTS_MAX_BELOW_MIN,
        4,
        "defaults.scale.max",
        "expected max >= min (3, set in defaults), got 2",
        id="max-below-min-in-defaults-reported-once",
    ),
    pytest.param(
        TWO_FUNCTIONS,
        10,
        "functions.greet.http[0].methods[0]",
        "POST /hello is declared by both 'hello' (line 5) and 'greet'",
        id="route-in-two-functions",
    ),
    pytest.param(
        SAME_ROUTE_RENAMED_PARAMETER,
        9,
        "functions.profiles.http[0].path",
        "GET /users/{name} is declared by both 'users' (line 5) and 'profiles'",
        id="route-in-two-functions-renamed-parameter",
    ),
    pytest.param("", None, "", "the file is empty", id="empty-file"),
    pytest.param("# nothing yet\n", None, "", "the file is empty", id="only-comments"),
    pytest.param(
        "- version: 1\n",
        1,
        "",
        "expected a mapping with 'version' and 'functions' at the top level, got a list",
        id="top-level-list",
    ),
    pytest.param(
        "just some text\n",
        1,
        "",
        "at the top level, got 'just some text'",
        id="top-level-string",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), INVALID_FILES)
def test_invalid_file(text: str, line: int | None, field: str, fragment: str) -> None:
    assert_one_problem(problems_of(text), line, field, fragment)


def test_project_name_argument_is_checked() -> None:
    problems = problems_of(MINIMAL, project_name="Bad Name")
    assert_one_problem(problems, None, "project", "invalid project name given to the loader")


def test_directory_that_makes_no_project_name() -> None:
    problems = problems_of(MINIMAL, root=Path("/srv/2024"))
    assert_one_problem(problems, 1, "project", "the directory name '2024' does not make one")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "functions.yaml"
    with pytest.raises(SpecError) as caught:
        load_project(path)
    assert caught.value.problems == [Problem(str(path), None, "", "file not found")]


# --- many problems at once ---------------------------------------------------------------------

MANY = """\
version: 1
projct: shop
gateway:
  port: 0
functions:
  hello:
    handler: ../hello.py
    timeout: soon
    scale: {min: 3, max: 1}
    http:
      - path: /hello
  greet:
    handler: greet.py
    http:
      - path: /hello
      - path: /system/x
"""


def test_every_problem_is_reported_in_file_order() -> None:
    problems = problems_of(MANY)

    assert [(p.line, p.field) for p in problems] == [
        (2, "projct"),
        (4, "gateway.port"),
        (7, "functions.hello.handler"),
        (8, "functions.hello.timeout"),
        (9, "functions.hello.scale.max"),
        (15, "functions.greet.http[0].path"),
        (16, "functions.greet.http[1].path"),
    ]
    assert "'hello' (line 11) and 'greet'" in problems[5].message
    assert str(problems[0]) == (
        "functions.yaml:2: projct: unknown field 'projct'; did you mean 'project'?"
    )


def test_spec_error_message_lists_every_problem() -> None:
    with pytest.raises(SpecError) as caught:
        load(MANY)
    assert str(caught.value).count("\n") == len(caught.value.problems) - 1


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        (
            "version: 1\nfunctions:\n  f:\n    handler: f.py\n    auth: jwt\n",
            5,
            "functions.f.auth",
            "needs a gateway.jwt block",
        ),
        (
            "version: 1\ngateway:\n  jwt:\n    algorithms: [HS256, RS256]\n    secret: s\n"
            "functions:\n  f:\n    handler: f.py\n",
            4,
            "gateway.jwt.algorithms",
            "not both",
        ),
        (
            "version: 1\nfunctions:\n  f:\n    handler: f.py\n    auth: password\n",
            5,
            "functions.f.auth",
            "expected one of none, key, jwt",
        ),
        (
            "version: 1\nfunctions:\n  f:\n    handler: f.py\n    secrets: [Bad Name]\n",
            5,
            "functions.f.secrets[0]",
            "secret name",
        ),
        (
            "version: 1\ngateway:\n  rate_limit: lots\nfunctions:\n  f:\n    handler: f.py\n",
            3,
            "gateway.rate_limit",
            'a rate like "100/s"',
        ),
    ],
)
def test_security_settings_are_checked(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_project_text(text, filename="functions.yaml", root=Path("/project"))
    (problem,) = raised.value.problems
    assert (problem.line, problem.field) == (line, field)
    assert fragment in problem.message


def test_security_settings_resolve() -> None:
    project = load_project_text(
        "version: 1\ngateway:\n  rate_limit: 600/m\n  jwt: {secret: k, audience: a}\n"
        "defaults:\n  auth: jwt\nfunctions:\n  f:\n    handler: f.py\n    public: false\n"
        "    secrets: [db]\n    http:\n      - {path: /hook, methods: [POST], webhook_secret: h}\n"
        "  g:\n    handler: g.py\n    auth: none\n",
        filename="functions.yaml",
        root=Path("/project"),
    )
    f, g = project.functions["f"], project.functions["g"]
    assert (f.auth, f.public, f.secrets) == ("jwt", False, ("db",))
    assert f.routes[0].webhook_secret == "h"
    assert (g.auth, g.public) == ("none", True)
    assert project.gateway.rate_limit is not None and project.gateway.rate_limit.per == 60.0
    assert project.gateway.jwt is not None and project.gateway.jwt.algorithms == ("HS256",)


# --- cluster.placement ------------------------------------------------------------------------


def test_placement_constraints_are_read_and_normalised() -> None:
    project = load(
        MINIMAL + "cluster:\n  placement: [node.role==worker, ' node.labels.zone != a ']\n"
    )
    assert project.cluster.placement == ("node.role==worker", "node.labels.zone!=a")
    assert load(MINIMAL).cluster.placement == ()


@pytest.mark.parametrize("bad", ["node.role", "node.role=worker", "==worker", "a==b c", "1x==y"])
def test_a_malformed_placement_constraint_names_its_line(bad: str) -> None:
    problems = problems_of(MINIMAL + f"cluster:\n  placement:\n    - '{bad}'\n")
    assert_one_problem(problems, 7, "cluster.placement[0]", "placement constraint")
