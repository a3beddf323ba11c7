"""Names of the JetStream objects a project uses, shared by the queue and the exporters.

Project and function names are `[a-z][a-z0-9-]*`, so `_` and `.` never occur
in them and every name below is unambiguous.
"""

from __future__ import annotations

CONSUMER = "workers"
"""The durable pull consumer every gateway of a project leases work through."""


def stream(project: str, function: str) -> str:
    """The work-queue stream holding one function's deliveries."""
    return f"faas_{project}_{function}"


def subject(project: str, function: str) -> str:
    """The subject deliveries for one function are published on."""
    return f"faas.{project}.{function}"


def dead_letter_stream(project: str) -> str:
    return f"faas_{project}__dead"  # two underscores: never a function's stream


def dead_letter_subject(project: str, function: str) -> str:
    """The subject a function's dead letters are published on (`*`: every function's)."""
    return f"faas.{project}._dead.{function}"


def bucket(project: str, purpose: str) -> str:
    """A key-value bucket of the project: calls, cron, leases, depth."""
    return f"faas_{project}_{purpose}"
