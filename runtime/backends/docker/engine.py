"""Connecting to the Docker Engine and translating its errors once, at the boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import docker.errors
from docker.api.client import APIClient

from runtime.errors import EngineUnavailable

ENGINE_HELP = (
    "no Docker engine answers. Start one (on Debian as root: `apt-get install docker.io` "
    "then `dockerd`; scripts/ensure-docker.sh does both), or point DOCKER_HOST at one."
)


def connect(timeout: float = 60.0) -> APIClient:
    """A low-level client for the engine named by the environment, checked with a ping."""
    try:
        client = docker.APIClient(
            **docker.utils.kwargs_from_env(), timeout=timeout, version="auto", max_pool_size=32
        )
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"{ENGINE_HELP} ({exc})") from None
    return client


@contextlib.contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Turn transport and API failures into EngineUnavailable with what we were doing."""
    try:
        yield
    except docker.errors.APIError as exc:
        explanation = exc.explanation or str(exc)
        raise EngineUnavailable(f"{action}: {explanation}") from None
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"{action}: {exc}") from None
    except OSError as exc:  # requests wraps most, but not every, socket error
        raise EngineUnavailable(f"{action}: {exc}") from None
