"""Pure tests of the watchdog's handler contract: Event, return-value conversion, loading."""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faas.handler import Headers
from runtime.watchdog import Context, Event, Response
from runtime.watchdog.config import ConfigError, load_settings
from runtime.watchdog.contract import ConversionError, Reply, new_call_id, to_reply
from runtime.watchdog.json_log import JsonFormatter
from runtime.watchdog.loader import HandlerLoadError, LoadFailure, load_handler
from runtime.watchdog.protocol import HttpError, RequestParser, render_response

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"


class Duck:
    def __init__(self, body: Any, **attrs: Any) -> None:
        self.body = body
        for name, value in attrs.items():
            setattr(self, name, value)


# ---------------------------------------------------------------- return values

CONVERSIONS: list[tuple[str, Any, int, str | None, bytes, list[tuple[str, str]] | None]] = [
    ("none", None, 204, None, b"", None),
    ("str", "héllo", 200, TEXT, "héllo".encode(), None),
    ("bytes", b"\x00\x01", 200, BINARY, b"\x00\x01", None),
    ("bytearray", bytearray(b"ab"), 200, BINARY, b"ab", None),
    ("memoryview", memoryview(b"ab"), 200, BINARY, b"ab", None),
    ("dict", {"a": 1, "é": [1, 2]}, 200, JSON, '{"a":1,"é":[1,2]}'.encode(), None),
    ("list", [1, "x"], 200, JSON, b'[1,"x"]', None),
    ("dict subclass", OrderedDict(a=1), 200, JSON, b'{"a":1}', None),
    (
        "openfaas dict subclass",
        OrderedDict(statusCode=202, body="x"),
        202,
        TEXT,
        b"x",
        None,
    ),
    ("empty dict", {}, 200, JSON, b"{}", None),
    (
        "openfaas str",
        {"statusCode": 201, "body": "made", "headers": {"X-A": "1"}},
        201,
        TEXT,
        b"made",
        [("X-A", "1")],
    ),
    ("openfaas dict body", {"statusCode": 200, "body": {"k": "v"}}, 200, JSON, b'{"k":"v"}', None),
    ("openfaas list body", {"statusCode": 202, "body": [1]}, 202, JSON, b"[1]", None),
    ("openfaas bytes body", {"statusCode": 200, "body": b"\xff"}, 200, BINARY, b"\xff", None),
    ("openfaas no body", {"statusCode": 404}, 404, None, b"", None),
    ("openfaas number body", {"statusCode": 200, "body": 42}, 200, TEXT, b"42", None),
    ("openfaas float body", {"statusCode": 200, "body": 0.5}, 200, TEXT, b"0.5", None),
    ("openfaas string status", {"statusCode": "418", "body": ""}, 418, None, b"", None),
    (
        "openfaas content-type wins",
        {"statusCode": 200, "body": "<p>", "headers": {"content-type": "text/html"}},
        200,
        "text/html",
        b"<p>",
        None,
    ),
    ("Response default", Response(), 200, None, b"", None),
    ("Response bytes", Response(b"x", 202), 202, BINARY, b"x", None),
    ("Response dict body", Response({"a": 1}, status=400), 400, JSON, b'{"a":1}', None),
    (
        "Response content_type",
        Response("<b>", content_type="text/html", headers={"X-B": "2"}),
        200,
        "text/html",
        b"<b>",
        [("X-B", "2")],
    ),
    (
        "Response header content-type beats argument",
        Response("x", headers={"Content-Type": "text/csv"}, content_type="text/html"),
        200,
        "text/csv",
        b"x",
        None,
    ),
    ("tuple 2", ("gone", 410), 410, TEXT, b"gone", None),
    ("tuple 2 dict", ({"e": 1}, 422), 422, JSON, b'{"e":1}', None),
    (
        "tuple 3",
        (b"raw", 200, {"X-C": 3, "Content-Type": "image/png"}),
        200,
        "image/png",
        b"raw",
        [("X-C", "3")],
    ),
    ("tuple None body", (None, 202), 202, None, b"", None),
    ("duck status", Duck(b"d", status=203), 203, BINARY, b"d", None),
    (
        "duck status_code and headers",
        Duck("d", status_code=299, headers={"X-D": "y"}),
        299,
        TEXT,
        b"d",
        [("X-D", "y")],
    ),
    ("duck flask-like", Duck(b"f", status="201 CREATED", status_code=201), 201, BINARY, b"f", None),
    (
        "duck content_type",
        Duck("<i>", status=200, content_type="text/html"),
        200,
        "text/html",
        b"<i>",
        None,
    ),
    (
        "framing headers dropped",
        Response("x", headers={"Content-Length": "99", "Connection": "close", "X-E": "1"}),
        200,
        TEXT,
        b"x",
        [("X-E", "1")],
    ),
    (
        "non-ascii header value sent as utf-8",
        Response("x", headers={"X-Name": "é"}),
        200,
        TEXT,
        b"x",
        [("X-Name", "é".encode().decode("latin-1"))],
    ),
]


@pytest.mark.parametrize(
    ("value", "status", "content_type", "body", "headers"),
    [case[1:] for case in CONVERSIONS],
    ids=[case[0] for case in CONVERSIONS],
)
def test_to_reply(
    value: Any,
    status: int,
    content_type: str | None,
    body: bytes,
    headers: list[tuple[str, str]] | None,
) -> None:
    reply = to_reply(value)
    assert (reply.status, reply.content_type, reply.body, reply.headers) == (
        status,
        content_type,
        body,
        headers,
    )


class Opaque:
    pass


BAD_VALUES: list[tuple[str, Any, str]] = [
    ("int", 42, "int"),
    ("float", 1.5, "float"),
    ("object", Opaque(), "Opaque"),
    ("set", {1}, "set"),
    ("tuple 1", ("x",), "tuple"),
    ("tuple 4", ("x", 200, {}, 1), "tuple"),
    ("bad status", ("x", 99), "status"),
    ("status too big", ("x", 600), "status"),
    ("bool status", ("x", True), "status"),
    ("non-int status", Response("x", status="abc"), "status"),  # type: ignore[arg-type]
    ("openfaas bad status", {"statusCode": None}, "statusCode"),
    ("unserialisable dict", {"when": object()}, "JSON"),
    ("bad body type", ({1, 2}, 200), "set"),
    ("header injection", Response("x", headers={"X-A": "a\r\nSet-Cookie: x"}), "line break"),
    ("bad header name", Response("x", headers={"Bad Name": "v"}), "header name"),
    ("bad headers type", ("x", 200, 5), "headers"),
    ("content type injection", Response("x", content_type="a\nb"), "line break"),
]


@pytest.mark.parametrize(
    ("value", "mentions"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES]
)
def test_to_reply_rejects(value: Any, mentions: str) -> None:
    with pytest.raises(ConversionError, match=mentions):
        to_reply(value)


# ---------------------------------------------------------------- Event and Context


def test_headers_are_case_insensitive_and_read_only() -> None:
    headers = Headers({"Content-Type": "text/plain", "X-Thing": "1"})
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "text/plain"
    assert headers.get("x-THING") == "1"
    assert headers.get("missing", "d") == "d"
    assert "Content-type" in headers
    assert 42 not in headers  # type: ignore[comparison-overlap]
    assert dict(headers) == {"content-type": "text/plain", "x-thing": "1"}
    assert len(headers) == 2
    with pytest.raises(TypeError):
        headers["x"] = "y"  # type: ignore[index]


def test_event_body_helpers() -> None:
    event = Event("POST", "/p", body=b'{"n": [1, 2]}', headers={"Content-Type": JSON})
    assert event.json() == {"n": [1, 2]}
    assert event.text() == '{"n": [1, 2]}'
    assert event.data is None  # not an event
    assert event.topic is None and event.event_id is None and event.attempt == 1
    with pytest.raises(ValueError):
        Event(body=b"{nope").json()
    with pytest.raises(ValueError):
        Event(body=b"").json()
    assert Event(body=b"\xff").text() == "\ufffd"


@pytest.mark.parametrize(
    ("query_string", "expected"),
    [
        ("", {}),
        ("a=1&b=two", {"a": "1", "b": "two"}),
        ("a=1&a=2", {"a": "1"}),  # the first value, as Flask and Django give it
        ("q=hello+world&e=%C3%A9", {"q": "hello world", "e": "é"}),
        ("flag&x=", {"flag": "", "x": ""}),
    ],
)
def test_event_query(query_string: str, expected: dict[str, str]) -> None:
    event = Event("GET", "/", query_string)
    assert event.query == expected
    assert event.query_string == query_string


def test_repeated_query_parameters_are_all_kept_in_order() -> None:
    event = Event("GET", "/", "tag=a&x=1&tag=b&tag=&y")
    assert event.query["tag"] == "a"
    assert event.query_list("tag") == ["a", "b", ""]
    assert event.query.getlist("tag") == ["a", "b", ""]  # OpenFaaS python3-http's spelling
    assert event.query_list("missing") == []
    assert event.query_items == [("tag", "a"), ("x", "1"), ("tag", "b"), ("tag", ""), ("y", "")]
    assert isinstance(event.query, dict) and event.query.get("x") == "1"


def test_event_data_for_events() -> None:
    as_json = Event(body=b'{"id": 7}', headers={"content-type": "application/cloudevents+json"})
    as_json.topic = "orders"
    assert as_json.data == {"id": 7}
    raw = Event(body=b"raw", headers={"content-type": "text/plain"}, topic="t", attempt=3)
    assert raw.data == b"raw"
    assert raw.attempt == 3


def test_context_remaining_and_logger(capsys: pytest.CaptureFixture[str]) -> None:
    context = Context("fn", "call-1", time.time() + 5, "host-a")
    assert 4 < context.remaining() <= 5
    assert Context("fn", "c", time.time() - 1).remaining() == 0.0

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("fn"))
    context.logger.logger.addHandler(handler)
    try:
        context.logger.warning("hello %s", "there", extra={"order": 3})
    finally:
        context.logger.logger.removeHandler(handler)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "hello there"
    assert line["level"] == "warning"
    assert line["function"] == "fn"
    assert line["call_id"] == "call-1"
    assert line["order"] == 3
    assert "ts" in line


# ---------------------------------------------------------------- handler loading


@pytest.fixture
def code_dir(tmp_path: Path) -> Iterator[Path]:
    """A code dir whose modules are forgotten afterwards, so tests do not see each other's."""
    before = set(sys.modules)
    path_before = list(sys.path)
    yield tmp_path
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(tmp_path)) or name == "faas_user_handler":
            del sys.modules[name]
    sys.path[:] = path_before


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def load_error(code_dir: Path, file: str, name: str = "handle") -> LoadFailure:
    with pytest.raises(HandlerLoadError) as info:
        load_handler(str(code_dir), file, name)
    return info.value.failure


def test_loads_sync_and_async_handlers(code_dir: Path) -> None:
    write(code_dir / "syncfn.py", "def handle(event, context):\n    return 'ok'\n")
    write(code_dir / "asyncfn.py", "async def handle(event, context):\n    return 'ok'\n")
    sync = load_handler(str(code_dir), "syncfn.py")
    assert not sync.is_async
    assert sync.call(Event(), None) == "ok"
    assert load_handler(str(code_dir), "asyncfn.py").is_async


def test_nested_file_imports_as_dotted_module_with_siblings(code_dir: Path) -> None:
    write(code_dir / "wdfns" / "helper.py", "GREETING = 'hi'\n")
    write(
        code_dir / "wdfns" / "greet.py",
        "from wdfns.helper import GREETING\nfrom . import helper\n"
        "def run(event, context):\n    return GREETING + helper.GREETING\n",
    )
    handler = load_handler(str(code_dir), "wdfns/greet.py", "run")
    assert handler.module == "wdfns.greet"
    assert handler.call(Event(), None) == "hihi"


def test_absolute_path_and_single_argument_handler(code_dir: Path) -> None:
    path = write(code_dir / "elsewhere" / "one_arg.py", "def handle(req):\n    return req.path\n")
    handler = load_handler("/nonexistent-code-dir", str(path))
    assert handler.call(Event(path="/x"), None) == "/x"


def test_module_name_avoids_stdlib_collisions(code_dir: Path) -> None:
    write(code_dir / "json.py", "def handle(event, context):\n    return 'mine'\n")
    handler = load_handler(str(code_dir), "json.py")
    assert handler.module != "json"
    assert handler.call(Event(), None) == "mine"
    assert sys.modules["json"].__file__ != str(code_dir / "json.py")


def test_missing_file(code_dir: Path) -> None:
    failure = load_error(code_dir, "nope/missing.py")
    assert failure.file == "nope/missing.py"
    assert failure.line is None
    assert "not found" in failure.error


def test_syntax_error_reports_file_and_line(code_dir: Path) -> None:
    write(code_dir / "broken.py", "x = 1\n\ndef handle(event, context)\n    return 1\n")
    failure = load_error(code_dir, "broken.py")
    assert failure.error.startswith("SyntaxError: ")
    assert (failure.file, failure.line) == ("broken.py", 3)
    assert failure.to_json() == {
        "status": "failed",
        "error": failure.error,
        "file": "broken.py",
        "line": 3,
    }


def test_exception_at_import_points_into_user_code(code_dir: Path) -> None:
    write(code_dir / "wdlib" / "config.py", "def load():\n    raise KeyError('DATABASE_URL')\n")
    write(
        code_dir / "boom.py",
        "import wdlib.config\n\nSETTINGS = wdlib.config.load()\n\ndef handle(e, c):\n    pass\n",
    )
    failure = load_error(code_dir, "boom.py")
    assert failure.error == "KeyError: 'DATABASE_URL'"
    assert (failure.file, failure.line) == ("wdlib/config.py", 2)
    assert "Traceback" in failure.traceback
    assert "boom.py" in failure.traceback
    assert "importlib" not in failure.traceback
    assert "boom" not in sys.modules


def test_import_error_of_missing_dependency(code_dir: Path) -> None:
    write(code_dir / "deps.py", "\nimport surely_not_installed_pkg\n")
    failure = load_error(code_dir, "deps.py")
    assert failure.error.startswith("ModuleNotFoundError: ")
    assert (failure.file, failure.line) == ("deps.py", 2)


def test_system_exit_at_import_is_a_failure(code_dir: Path) -> None:
    write(code_dir / "quits.py", "import sys\nsys.exit(3)\n")
    assert load_error(code_dir, "quits.py").line == 2


@pytest.mark.parametrize(
    ("source", "name", "mentions", "line"),
    [
        ("def other(e, c):\n    pass\n", "handle", "no function named 'handle'", None),
        ("handle = 42\n", "handle", "not a function", None),
        ("\n\ndef handle():\n    pass\n", "handle", "must accept (event, context)", 3),
        ("def handle(a, b, c):\n    pass\n", "handle", "must accept", 1),
    ],
)
def test_unusable_handler(
    code_dir: Path, source: str, name: str, mentions: str, line: int | None
) -> None:
    write(code_dir / "shape.py", source)
    failure = load_error(code_dir, "shape.py", name)
    assert mentions in failure.error
    assert (failure.file, failure.line) == ("shape.py", line)


def test_async_callable_object_is_async(code_dir: Path) -> None:
    write(
        code_dir / "obj.py",
        "class H:\n    async def __call__(self, event, context):\n        return 1\nhandle = H()\n",
    )
    assert load_handler(str(code_dir), "obj.py").is_async


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_overrides() -> None:
    settings = load_settings({"FAAS_HANDLER_FILE": "f.py", "FAAS_TOKEN": "s"})
    assert (settings.code_dir, settings.handler_name, settings.port) == ("/app", "handle", 8080)
    assert (settings.timeout, settings.max_body, settings.threads) == (30.0, 10 * 1024 * 1024, 16)
    assert settings.host == "0.0.0.0"
    custom = load_settings(
        {
            "FAAS_HANDLER_FILE": "f.py",
            "FAAS_TOKEN": "s",
            "FAAS_PORT": "9000",
            "FAAS_TIMEOUT": "1.5",
            "FAAS_MAX_BODY": "100",
            "FAAS_THREADS": "2",
            "FAAS_FUNCTION_NAME": "hello",
        }
    )
    assert (custom.port, custom.timeout, custom.max_body, custom.threads) == (9000, 1.5, 100, 2)
    assert custom.function_name == "hello"


def test_settings_errors_name_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"FAAS_PORT": "http", "FAAS_TIMEOUT": "-1", "FAAS_THREADS": "0"})
    message = str(info.value)
    for name in ("FAAS_HANDLER_FILE", "FAAS_TOKEN", "FAAS_PORT", "FAAS_TIMEOUT", "FAAS_THREADS"):
        assert name in message


# ---------------------------------------------------------------- HTTP parsing


def parse_all(data: bytes, max_body: int = 1000) -> list[Any]:
    parser = RequestParser(max_body)
    parser.feed(data)
    requests = []
    while (request := parser.next()) is not None:
        requests.append(request)
    return requests


def test_parser_splits_faas_headers_and_query() -> None:
    (request,) = parse_all(
        b"POST /a%20b/c?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Faas-Token: t\r\n"
        b"X-Custom: v\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert (request.method, request.path, request.query_string) == ("POST", "/a b/c", "x=1&y=2")
    assert request.headers == {"host": "h", "x-custom": "v", "content-length": "3"}
    assert request.faas == {"x-faas-token": "t"}
    assert request.body == b"abc"
    assert request.keep_alive


def test_parser_byte_by_byte_chunked_and_pipelined() -> None:
    data = (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
        b"GET /next HTTP/1.0\r\n\r\n"
    )
    parser = RequestParser(1000)
    requests = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (request := parser.next()) is not None:
            requests.append(request)
    assert [r.body for r in requests] == [b"abcde", b""]
    assert requests[1].path == "/next"
    assert not requests[1].keep_alive


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", 413),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000, 431),
    ],
)
def test_parser_rejects(data: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_all(data)
    assert info.value.status == status


def test_render_response() -> None:
    data = render_response(200, b"hi", TEXT, "c1", [("X-A", "1")], keep_alive=False)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert {"Content-Length: 2", f"Content-Type: {TEXT}", "X-Call-Id: c1", "X-A: 1"} <= set(lines)
    assert "Connection: close" in lines
    assert body == b"hi"
    no_content = render_response(204, b"", None, "c2")
    assert b"Content-Length" not in no_content and no_content.endswith(b"\r\n\r\n")
    head_only = render_response(200, b"hidden", TEXT, "c3", head_only=True)
    assert b"Content-Length: 6" in head_only and not head_only.endswith(b"hidden")


def test_reply_repr_is_short() -> None:
    assert "Reply 200" in repr(Reply(200, b"x" * 1000, TEXT))


def test_call_ids_are_uuid4_hex() -> None:
    ids = {new_call_id() for _ in range(200)}
    assert len(ids) == 200
    for call_id in ids:
        parsed = uuid.UUID(call_id)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, call_id)
