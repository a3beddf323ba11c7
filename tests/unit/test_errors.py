"""gateway/errors.py: what callers read for each platform error, and what goes to the log."""

from __future__ import annotations

import contextvars
import json
import logging

import pytest

from gateway.errors import calling, error_response, response_for
from runtime import errors


def body(response: object) -> dict[str, str]:
    return json.loads(response.body)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (
            errors.ReplicaUnreachable("replica faas-p-hello-1a2b3c: ConnectionResetError"),
            502,
            "function hello's replica failed while answering",
        ),
        (
            errors.ReplicaStartError("container faas-p-hello-1a2b3c exited with 137"),
            503,
            "function hello could not start a replica; retry later",
        ),
        (
            errors.EngineUnavailable("Error while fetching server API version: ('Connection'"),
            503,
            "function hello cannot run now: the container engine is unavailable",
        ),
        (
            errors.FaasError("image faas-p-hello:3f2 missing"),
            500,
            "function hello failed in the gateway",
        ),
    ],
)
def test_failures_on_our_side_name_the_function_not_the_internals(
    caplog: pytest.LogCaptureFixture, error: errors.FaasError, status: int, message: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="faas.gateway"):
        response = response_for(error, "c0ffee", "hello")
    assert (response.status_code, body(response)) == (
        status,
        {"error": message, "call_id": "c0ffee"},
    )
    assert response.headers["x-call-id"] == "c0ffee"
    assert "faas-" not in bytes(response.body).decode()
    (record,) = caplog.records  # the detail, for the operator, under the call id
    assert record.__dict__["call_id"] == "c0ffee" and record.__dict__["error"] == str(error)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.FunctionNotFound("no function named 'nope'"), 404),
        (errors.PayloadTooLarge("request body is over the limit of 10 bytes"), 413),
        (errors.QueueFull("hello has 100 calls waiting, its limit (scale.max_queue)"), 429),
        (errors.AnswerRejected("hello's replica sent a malformed answer"), 502),
        (errors.InvocationTimeout("hello did not answer within 10s"), 504),
        (
            errors.FunctionUnavailable(
                "function hello is unavailable: its handler failed to import",
                detail="postgresql://app:s3cret@db/app",
            ),
            503,
        ),
    ],
)
def test_messages_written_for_callers_pass_as_they_are(
    error: errors.FaasError, status: int
) -> None:
    response = response_for(error, "c0ffee", "hello")
    assert (response.status_code, body(response)["error"]) == (status, str(error))
    assert "s3cret" not in bytes(response.body).decode()


def test_a_full_queue_says_when_to_retry() -> None:
    response = response_for(errors.QueueFull("full", retry_after=2.6), "c0ffee")
    assert response.headers["retry-after"] == "3"


def test_anything_else_is_a_500_without_its_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="faas.gateway"):
        response = response_for(KeyError("internal-detail"), "c0ffee", "hello")
    assert (response.status_code, body(response)["error"]) == (500, "internal error in the gateway")
    assert "internal-detail" not in bytes(response.body).decode()
    assert caplog.records[0].exc_info is not None


def test_the_function_comes_from_the_route_that_picked_it() -> None:
    def in_a_request() -> str:
        calling.set("resize")
        return body(response_for(errors.ReplicaUnreachable("replica x"), "c0ffee"))["error"]

    assert (
        contextvars.copy_context().run(in_a_request)
        == "function resize's replica failed while answering"
    )
    assert body(response_for(errors.ReplicaUnreachable("x"), "c0ffee"))["error"] == (
        "the function's replica failed while answering"
    )


def test_every_error_answer_has_a_call_id() -> None:
    response = error_response(401, "the admin API needs the admin token")
    assert len(response.headers["x-call-id"]) == 32
    assert body(response)["call_id"] == response.headers["x-call-id"]
