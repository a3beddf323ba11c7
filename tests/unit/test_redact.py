"""Masking secret values: the pure Redactor, its live holder, and where they are applied."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from pathlib import Path

import pytest

from runtime.loghub import HubHandler, LogHub, RedactingFilter, redact_log_records
from runtime.redact import MASK, LiveRedactor, Redactor
from runtime.secrets import SecretStore

SECRET = "s3cr3t-value/with:odd@chars"


@pytest.mark.parametrize(
    "shown",
    [
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote(SECRET, safe="").lower(),  # %2f as well as %2F
        urllib.parse.quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        repr(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    ],
    ids=["raw", "quoted", "quoted-lower", "quote-plus", "json", "repr", "base64", "b64url"],
)
def test_a_value_and_its_encodings_are_masked(shown: str) -> None:
    redact = Redactor([SECRET.encode()])
    assert redact(f"connecting to <{shown}> failed") == f"connecting to <{MASK}> failed"


def test_a_dsn_built_from_a_secret_file_is_masked() -> None:
    stored = b"p@ss/w0rd:1\n"  # as `faas secrets set` stores what it is piped
    password = stored.decode().strip()
    dsn = f"postgresql://app:{urllib.parse.quote(password, safe='')}@db:5432/app"
    redact = Redactor([stored])
    assert redact(f"OperationalError: cannot reach {dsn}") == (
        f"OperationalError: cannot reach postgresql://app:{MASK}@db:5432/app"
    )
    assert redact(f"password={password!r}") == f"password='{MASK}'"


def test_short_values_are_left_alone() -> None:
    redact = Redactor([b"true", b"8080", b"abcde"])
    assert not redact
    assert redact("listening on 8080: true abcde") == "listening on 8080: true abcde"


def test_the_longest_value_is_masked_whole() -> None:
    redact = Redactor(["secret-one", "secret-one-and-more"])
    assert redact("x secret-one-and-more y secret-one") == f"x {MASK} y {MASK}"


def test_each_line_of_a_multi_line_value_is_masked() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\nEEEEFFFFGGGG\n-----END KEY-----\n"
    redact = Redactor([key])
    assert redact("bad line: EEEEFFFFGGGG") == f"bad line: {MASK}"
    assert MASK in redact(json.dumps({"key": key}))


def test_structures_are_walked() -> None:
    redact = Redactor(["hunter22"])
    data = {"error": "pw hunter22", "rows": [("hunter22", 1)], "n": 3, "none": None}
    assert redact.value(data) == {
        "error": f"pw {MASK}",
        "rows": [(MASK, 1)],
        "n": 3,
        "none": None,
    }


def test_no_values_no_change() -> None:
    redact = Redactor()
    assert redact("anything") == "anything"
    data = {"a": "b"}
    assert redact.value(data) is data


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_live_redactor_follows_changed_values_at_most_every_interval() -> None:
    values = [b"first-secret"]
    loads = 0

    def load() -> list[bytes]:
        nonlocal loads
        loads += 1
        return list(values)

    clock = FakeClock()
    live = LiveRedactor(load, interval=1.0, clock=clock)
    assert live("first-secret") == MASK
    values[:] = [b"second-secret"]
    clock.now = 0.5
    assert live("second-secret") == "second-secret"  # not looked at again yet
    clock.now = 1.0
    assert live("second-secret first-secret") == f"{MASK} first-secret"
    assert loads == 2
    values[:] = [b"third-secret"]
    live.refresh()  # functions.yaml was applied: at once
    assert live("third-secret") == MASK


def test_secret_store_knows_stored_environment_and_named_values(tmp_path: Path) -> None:
    environ = {"FAAS_SECRET_DB_PASSWORD": "from-env-1", "FAAS_SECRET_OTHER": "other-env-2"}
    store = SecretStore(tmp_path, environ)
    store.set("api-key", b"stored-value-3")
    values = sorted(store.known_values(["db-password", "never-set"]))
    assert values == [b"from-env-1", b"from-env-1", b"other-env-2", b"stored-value-3"]


# -- where masking is applied ------------------------------------------------------------


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": message, "args": args, "levelname": "ERROR"})
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_log_records_are_masked_with_their_fields_and_traceback() -> None:
    redact = Redactor(["hunter22-pw"])
    try:
        raise ValueError("bad password hunter22-pw")
    except ValueError:
        import sys

        record = make_record("login %s failed", "hunter22-pw", detail="dsn hunter22-pw")
        record.exc_info = sys.exc_info()
    assert RedactingFilter(redact).filter(record)
    formatted = logging.Formatter().format(record)
    assert "hunter22-pw" not in formatted
    assert "ValueError: bad password ***" in formatted
    assert record.getMessage().startswith("login *** failed")
    assert getattr(record, "detail") == "dsn ***"  # noqa: B009


def test_redaction_is_installed_on_the_root_handlers_once() -> None:
    logger = logging.getLogger("test-redact-install")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        redact_log_records(Redactor(["aaaaaaa"]), logger)
        redact_log_records(Redactor(["bbbbbbb"]), logger)
        filters = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        assert len(filters) == 1
        assert filters[0].redact("aaaaaaa bbbbbbb") == "aaaaaaa ***"
    finally:
        logger.removeHandler(handler)


def test_hub_masks_gateway_records_and_unlimited_replica_lines() -> None:
    hub = LogHub()
    hub.redact = Redactor(["hunter22-pw"])
    record = make_record("failed: %s", "hunter22-pw", function="f", detail="hunter22-pw")
    HubHandler(hub).emit(record)
    hub.ingest("f", "f-1", json.dumps({"msg": "dsn hunter22-pw", "level": "error"}))
    shown = json.dumps([line.to_json() for line in hub.recent()])
    assert "hunter22-pw" not in shown
    assert shown.count(MASK) == 3


def test_every_secret_a_project_names_is_known(tmp_path: Path) -> None:
    from runtime.secrets import secret_names
    from runtime.spec import load_project

    spec = tmp_path / "functions.yaml"
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "f.py").write_text("def handle(event, context):\n    return 1\n")
    spec.write_text(
        "version: 1\n"
        "gateway:\n"
        "  callback_secret: project-callbacks\n"
        "  jwt: {algorithms: [HS256], secret: jwt-key}\n"
        "functions:\n"
        "  f:\n"
        "    handler: functions/f.py\n"
        "    secrets: [db]\n"
        "    callback_secret: f-callbacks\n"
        "    http: [{path: /hook, methods: [POST], webhook_secret: hook}]\n"
    )
    names = secret_names(load_project(spec))
    assert names == {"project-callbacks", "jwt-key", "db", "f-callbacks", "hook"}
