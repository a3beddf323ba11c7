"""The platform's exceptions, in one place.

    FaasError                     base of everything the platform raises on purpose
    ├── SpecError                 functions.yaml is invalid (carries every problem found)
    ├── EngineUnavailable         no container engine answers
    ├── ImageBuildError           a base or function image could not be built
    ├── FunctionNotFound          no function by that name            -> 404
    ├── FunctionUnavailable       the function failed to deploy/import -> 503
    ├── ReplicaStartError         a replica did not become ready       -> 503
    │   └── ClaimLost             a warm task was claimed by another (never reaches callers)
    ├── QueueFull                 too much work is waiting             -> 429
    ├── InvocationTimeout         the call ran past its deadline       -> 504
    ├── ReplicaUnreachable        the replica dropped the connection   -> 502
    │   └── AnswerRejected        its answer broke framing or limits   -> 502
    └── PayloadTooLarge           the request body is over the limit   -> 413

The gateway maps these to HTTP statuses in one table (gateway/errors.py);
nothing else needs to know about status codes.
"""

from __future__ import annotations

from dataclasses import dataclass


class FaasError(Exception):
    """Base class: the message is meant for the user, as is."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a spec file, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class SpecError(FaasError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EngineUnavailable(FaasError):
    pass


class UnsupportedSetting(FaasError):
    """The project asks for what the engine it runs on cannot do (`faas up` exits 2)."""


class ImageBuildError(FaasError):
    pass


class FunctionNotFound(FaasError):
    pass


class FunctionUnavailable(FaasError):
    """The message is what every caller of the function is told; `detail`, when there is
    one, is what went wrong inside the function (an import-time exception's text, which
    may hold anything the module had at hand, a secret included): for the function's
    logs and the admin API, masked, never for callers."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


def import_failed(function: str) -> str:
    """What callers are told about a handler that does not import: where to look, not what."""
    return f"its handler failed to import (see `faas logs {function}`)"


class ReplicaStartError(FaasError):
    pass


class ClaimLost(ReplicaStartError):
    """A shared warm watchdog refused a claim: another gateway (or anything else holding
    its service's key) claimed it first. The claimer takes another task
    (runtime/supply/warm_tasks.py)."""


class QueueFull(FaasError):
    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvocationTimeout(FaasError):
    pass


class ReplicaUnreachable(FaasError):
    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent
        """False when not even a connection was made: the call never reached the replica."""


class AnswerRejected(ReplicaUnreachable):
    """The replica's answer was malformed or over the gateway's limits; the message says
    which, without the replica's bytes (they may be anything the function wrote)."""


class PayloadTooLarge(FaasError):
    pass
