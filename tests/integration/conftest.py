"""Tests against real services run beside the code (not in Docker): a NATS server here."""

from tests.nats_server import nats_server

__all__ = ["nats_server"]
