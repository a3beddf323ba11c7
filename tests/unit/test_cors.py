"""CORS: the `cors` blocks of functions.yaml, which origins they allow, and which policy a
request meets (gateway/cors.py), with a recording app in place of the gateway's routes."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.cors import Cors, CorsRules, policy
from runtime.errors import Problem, SpecError
from runtime.spec import CorsSettings, Project, load_project_text
from runtime.spec.origins import origin_entry, pattern_regex

ROOT = Path("/srv/examples")


def load(text: str) -> Project:
    return load_project_text(textwrap.dedent(text), filename="functions.yaml", root=ROOT)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load(text)
    return caught.value.problems


SPEC = """\
version: 1
gateway:
  cors:
    allow_origins: [https://App.Example.com:443, "https://*.tools.example.com", http://localhost:3000]
    allow_headers: [Authorization]
    expose_headers: [X-Call-Id]
    allow_credentials: true
    max_age: 5m
functions:
  hello:
    handler: functions/hello.py
    http:
      - path: /hello
        methods: [GET, POST]
      - path: /partner
        cors:
          allow_origins: ["*"]
          allow_credentials: false
      - path: /internal
        methods: [PUT]
        cors: false
      - path: /items/{id:int}
        methods: [GET, DELETE]
        cors:
          allow_methods: [GET]
  other:
    handler: functions/hello.py
    http:
      - path: /items/{id:int}
        methods: [PATCH]
"""


# -- functions.yaml ------------------------------------------------------------------


def test_gateway_cors_is_normalized_and_routes_inherit_or_override_it() -> None:
    project = load(SPEC)
    default = project.gateway.cors
    assert default == CorsSettings(
        allow_origins=(
            "https://app.example.com",
            "https://*.tools.example.com",
            "http://localhost:3000",
        ),
        allow_headers=("Authorization",),
        expose_headers=("X-Call-Id",),
        allow_credentials=True,
        max_age=300,
    )
    hello, partner, internal, items = project.functions["hello"].routes
    assert hello.cors == default
    assert partner.cors is not None
    assert partner.cors.allow_origins == ("*",) and not partner.cors.allow_credentials
    assert partner.cors.allow_headers == ("Authorization",)  # the rest inherited
    assert internal.cors is None
    assert items.cors is not None and items.cors.allow_methods == ("GET",)
    assert project.functions["other"].routes[0].cors == default


def test_no_cors_anywhere_leaves_everything_off() -> None:
    project = load(
        "version: 1\nfunctions:\n  hello:\n    handler: functions/hello.py\n"
        "    http:\n      - path: /hello\n"
    )
    assert project.gateway.cors is None
    assert project.functions["hello"].routes[0].cors is None
    assert not CorsRules.of(project).active


def test_a_route_block_alone_needs_origins_and_an_empty_one_inherits() -> None:
    project = load(
        "version: 1\nfunctions:\n  hello:\n    handler: functions/hello.py\n"
        "    http:\n      - path: /a\n        cors:\n"
        "      - path: /b\n        cors: {allow_origins: [https://a.example]}\n"
    )
    a, b = project.functions["hello"].routes
    assert a.cors is None and b.cors is not None
    assert b.cors.allow_origins == ("https://a.example",)
    (problem,) = problems_of(
        "version: 1\nfunctions:\n  hello:\n    handler: functions/hello.py\n"
        "    http:\n      - path: /a\n        cors: {max_age: 60}\n"
    )
    assert (problem.line, problem.field) == (7, "functions.hello.http[0].cors")
    assert "needs allow_origins (here or in gateway.cors)" in problem.message


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://APP.example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("https://app.example.com:8443", "https://app.example.com:8443"),
        ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("chrome-extension://abcdef", "chrome-extension://abcdef"),
        ("https://*.example.com", "https://*.example.com"),
        ("*", "*"),
    ],
)
def test_origin_entries(origin: str, expected: str) -> None:
    assert origin_entry(origin) == expected


@pytest.mark.parametrize(
    ("origin", "complaint"),
    [
        ("https://app.example.com/", "no path, got 'https://app.example.com/'; write https://app.example.com"),
        ("https://app.example.com/x?y", "no path"),
        ("app.example.com", "expected an origin like"),
        ("null", "allowing it allows them all"),
        ("https://user@app.example.com", "no user name"),
        ("https://*.com", "at least two labels"),
        ("https://a.*.example.com", "leftmost labels"),
        ("https://*", "leftmost labels"),
        ("https://app.example.com:0", "port from 1 to 65535"),
        ("https://app.example.com:70000", "port from 1 to 65535"),
        ("https://bücher.example", "xn-- form"),
        ("https://-bad.example.com", "expected an origin like"),
    ],
)  # fmt: skip
def test_bad_origin_entries(origin: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        origin_entry(origin)
    assert complaint in str(caught.value)


def test_value_errors_name_file_line_and_field() -> None:
    problems = problems_of(
        """\
        version: 1
        functions:
          hello:
            handler: functions/hello.py
            http:
              - path: /a
                cors:
                  allow_origins: ["https://a.example", "https://b.example/"]
                  allow_methods: [GET, BREW]
                  allow_headers: ["Bad Header"]
              - path: /b
                cors: true
        """
    )
    found = {(p.line, p.field): p.message for p in problems}
    assert all(p.file == "functions.yaml" for p in problems)
    assert "write https://b.example" in found[(8, "functions.hello.http[0].cors.allow_origins[1]")]
    assert "BREW" in found[(9, "functions.hello.http[0].cors.allow_methods[1]")]
    assert "header name" in found[(10, "functions.hello.http[0].cors.allow_headers[0]")]
    assert "or false to turn CORS off" in found[(12, "functions.hello.http[1].cors")]


def test_star_with_credentials_is_named_where_it_is_written() -> None:
    problems = problems_of(
        """\
        version: 1
        gateway:
          cors:
            allow_origins: ["*"]
            allow_credentials: true
            expose_headers: ["*"]
        functions:
          hello:
            handler: functions/hello.py
            http:
              - path: /a
                cors:
                  allow_origins: [https://a.example]
                  allow_methods: []
        """
    )
    assert [(p.line, p.field) for p in problems] == [
        (4, "gateway.cors.allow_origins[0]"),
        (6, "gateway.cors.expose_headers[0]"),
        (14, "functions.hello.http[0].cors.allow_methods"),
    ]
    assert "allow_origins '*' cannot go with allow_credentials: true" in problems[0].message
    assert "expose_headers '*' cannot go" in problems[1].message
    assert "at least one HTTP method" in problems[2].message


def test_credentials_set_on_a_route_over_an_inherited_star_is_named_on_the_route() -> None:
    problems = problems_of(
        """\
        version: 1
        gateway:
          cors:
            allow_origins: ["*", https://a.example]
        functions:
          hello:
            handler: functions/hello.py
            http:
              - path: /a
                cors:
                  allow_credentials: true
        """
    )
    assert [(p.line, p.field) for p in problems] == [
        (4, "gateway.cors.allow_origins[0]"),  # '*' with others: one or the other
        (11, "functions.hello.http[0].cors.allow_credentials"),
    ]
    assert "cannot go with allow_credentials" in problems[1].message


# -- which origins a policy allows ------------------------------------------------------


def settings(*origins: str, **more: Any) -> CorsSettings:
    return CorsSettings(allow_origins=tuple(origin_entry(o) for o in origins), **more)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://a.tools.example.com", True),
        ("https://a.b.tools.example.com", True),
        ("https://tools.example.com", False),  # the domain itself is not its subdomain
        ("https://eviltools.example.com", False),
        ("https://a.tools.example.com.evil.net", False),
        ("https://a.tools.example.com:8443", False),  # a port not written is the default
        ("http://a.tools.example.com", False),  # the scheme is part of the origin
        ("https://a.tools-example.com", False),  # '.' is not a wildcard
        ("https://x/y.tools.example.com", False),
        ("https://app.example.com.", False),
        ("null", False),
        ("https://APP.example.com", False),  # browsers send it lowercase; compared as sent
    ],
)
def test_origin_matching(origin: str, allowed: bool) -> None:
    chosen = policy(settings("https://app.example.com", "https://*.tools.example.com"), ["GET"])
    assert chosen.is_allowed_origin(origin) is allowed


def test_a_subdomain_pattern_with_a_port_needs_that_port() -> None:
    regex = pattern_regex(["https://*.example.com:8443", "https://app.example.com"])
    assert regex is not None
    chosen = policy(settings("https://*.example.com:8443"), ["GET"])
    assert chosen.is_allowed_origin("https://a.example.com:8443")
    assert not chosen.is_allowed_origin("https://a.example.com")
    assert pattern_regex(["https://app.example.com", "*"]) is None


# -- which policy a request meets, and what it answers ----------------------------------


def test_policy_per_path_and_method_mirrors_the_router() -> None:
    rules = CorsRules.of(load(SPEC))
    assert rules.active and rules.default is not None
    assert rules.policy_for("/function/hello", "POST") is rules.default
    assert rules.policy_for("/events/orders", "POST") is rules.default
    assert rules.policy_for("/nowhere", "GET") is rules.default
    hello = rules.policy_for("/hello", "GET")
    assert hello is not None and list(hello.allow_methods) == ["GET", "POST"]
    partner = rules.policy_for("/partner", "GET")
    assert partner is not None and partner.allow_all_origins
    assert rules.policy_for("/internal", "PUT") is None  # cors: false
    other = rules.policy_for("/internal", "GET")  # not a method it takes: refused
    assert other is not None and list(other.allow_methods) == ["PUT"]
    items = rules.policy_for("/items/7", "DELETE")
    assert items is not None and list(items.allow_methods) == ["GET"]
    assert rules.policy_for("/items/x", "DELETE") is rules.default  # {id:int} does not match
    patch = rules.policy_for("/items/7", "PATCH")  # another function's method on that path
    assert patch is not None and list(patch.allow_methods) == ["PATCH"]


class Recorder:
    """The app behind the middleware: records what reached it, answers with `headers`."""

    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.calls: list[str] = []
        self.headers = headers or []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 401, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": b"{}"})


def call(
    app: Any, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    answered = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], answered, b"".join(m.get("body", b"") for m in sent[1:])


PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_a_preflight_is_answered_without_reaching_the_app() -> None:
    rules = CorsRules.of(load(SPEC))
    inner = Recorder()
    status, headers, body = call(Cors(inner, lambda: rules), "OPTIONS", "/function/x", PREFLIGHT)
    assert (status, body) == (200, b"OK")
    assert inner.calls == []
    assert len(headers["x-call-id"]) == 32
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-max-age"] == "300"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    assert "POST" in headers["access-control-allow-methods"]


@pytest.mark.parametrize(
    ("changed", "failure"),
    [
        ({"Origin": "https://evil.example"}, "Disallowed CORS origin"),
        ({"Access-Control-Request-Headers": "x-secret"}, "Disallowed CORS headers"),
        ({"Access-Control-Request-Private-Network": "true"}, "Disallowed CORS private-network"),
    ],
)
def test_a_refused_preflight_is_400_and_never_reaches_the_app(
    changed: dict[str, str], failure: str
) -> None:
    rules = CorsRules.of(load(SPEC))
    inner = Recorder()
    status, headers, body = call(
        Cors(inner, lambda: rules), "OPTIONS", "/hello", {**PREFLIGHT, **changed}
    )
    assert (status, body.decode()) == (400, failure)
    assert inner.calls == []
    allowed = headers.get("access-control-allow-origin")
    assert allowed == (None if "origin" in failure else "https://app.example.com")


def test_a_method_the_route_does_not_allow_is_refused() -> None:
    rules = CorsRules.of(load(SPEC))
    asked = {**PREFLIGHT, "Access-Control-Request-Method": "DELETE"}
    status, _, body = call(Cors(Recorder(), lambda: rules), "OPTIONS", "/items/3", asked)
    assert (status, body) == (400, b"Disallowed CORS method")


def test_answers_get_the_policys_headers_and_lose_the_functions_own() -> None:
    rules = CorsRules.of(load(SPEC))
    inner = Recorder([(b"access-control-allow-origin", b"*"), (b"vary", b"Accept")])
    origin = {"Origin": "https://app.example.com"}
    status, headers, _ = call(Cors(inner, lambda: rules), "GET", "/function/x", origin)
    assert status == 401 and inner.calls == ["GET /function/x"]
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-expose-headers"] == "X-Call-Id"
    assert headers["vary"] == "Accept, Origin"
    _, refused, _ = call(Cors(inner, lambda: rules), "GET", "/hello", {"Origin": "https://x.test"})
    assert "access-control-allow-origin" not in refused
    _, star, _ = call(Cors(inner, lambda: rules), "GET", "/partner", origin)
    assert star["access-control-allow-origin"] == "*" and "origin" not in star.get("vary", "")


def test_where_no_policy_applies_nothing_changes() -> None:
    inner = Recorder([(b"access-control-allow-origin", b"*")])
    off = CorsRules.of(load(SPEC))
    for rules, path in ((off, "/internal"), (CorsRules(None, (), False), "/function/x")):
        headers = {**PREFLIGHT, "Access-Control-Request-Method": "PUT"}
        status, answered, _ = call(Cors(inner, lambda r=rules: r), "OPTIONS", path, headers)
        assert status == 401  # the app (auth, in the gateway) answers, as without CORS
        assert answered == {"access-control-allow-origin": "*"}  # the function's own header
    assert inner.calls == ["OPTIONS /internal", "OPTIONS /function/x"]
