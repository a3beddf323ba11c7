"""Connecting to the Docker Engine and translating its errors once, at the boundary."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.context
import docker.errors
from docker.api.client import APIClient

from runtime.backends.base import ImageRequest, ProgressCallback
from runtime.backends.docker import images, tools
from runtime.backends.docker.profile import (
    Engine,
    EngineProfile,
    engine_help,
    engine_url,
    profile_of,
    unsupported,
)
from runtime.errors import EngineUnavailable
from runtime.interpreter import Interpreter

T = TypeVar("T")


def connect(engine: Engine = "docker", timeout: float = 60.0) -> tuple[APIClient, EngineProfile]:
    """A low-level client for `engine` where the environment says it is, and what it is.

    Raises EngineUnavailable saying what to start or set when nothing answers there,
    and what is missing when something answers that cannot serve the platform.
    """
    url = engine_url(engine, os.environ, context_host=_docker_context_host(engine))
    tls = docker.utils.kwargs_from_env().get("tls") if engine == "docker" else None
    try:
        client = docker.APIClient(
            base_url=url, tls=tls, timeout=timeout, version="auto", max_pool_size=32
        )
        version, info = client.version(), client.info()
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"{engine_help(engine, url)} ({_reason(exc)})") from None
    except OSError as exc:
        raise EngineUnavailable(f"{engine_help(engine, url)} ({exc})") from None
    why = unsupported(version)
    if why is not None:
        client.close()
        raise EngineUnavailable(f"the engine at {url} cannot serve faas: {why}")
    return client, profile_of(version, info, url)


def _docker_context_host(engine: Engine) -> str | None:
    """The endpoint of the current `docker context`, as the docker CLI would use it."""
    if engine != "docker" or os.environ.get("DOCKER_HOST"):
        return None
    try:
        context = docker.context.ContextAPI.get_current_context()
    except (docker.errors.DockerException, OSError, ValueError):
        return None  # an unreadable ~/.docker: the default socket, as without a context
    host = getattr(context, "Host", None) if context is not None else None
    return str(host) if host else None


def _reason(exc: docker.errors.DockerException) -> str:
    """The last cause in docker-py's nested connection errors, not the whole chain."""
    text = str(exc)
    return text.rpartition("(")[2].rstrip(")") if "Connection aborted" in text else text


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


class EngineBackend:
    """What the docker and swarm backends share: one engine connection, the worker
    threads its blocking SDK calls run in, and the image verbs."""

    def __init__(
        self, project: str, *, workers: int, thread_name: str, engine: Engine = "docker"
    ) -> None:
        self.project = project
        self._api, self.profile = connect(engine)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking SDK call in this backend's threads (see `teardown`)."""
        try:
            future = self._executor.submit(function, *args)
        except RuntimeError:  # after teardown
            raise EngineUnavailable(f"the {self.project} backend is closed") from None
        return await asyncio.wrap_future(future)

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None:
        with engine_errors(f"preparing base image {image}"):
            await self._call(images.ensure_base_image, self._api, image, progress)

    async def image_id(self, image: str) -> str | None:
        with engine_errors(f"inspecting image {image}"):
            return await self._call(images.image_id, self._api, image)

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        with engine_errors(f"building image {request.tag}"):
            return await self._call(images.build_function_image, self._api, request, progress)

    async def interpreter(self, image_id: str) -> Interpreter:
        with engine_errors(f"probing the Python of image {image_id[:19]}"):
            return await self._call(tools.interpreter, self._api, image_id)

    async def build_wheel(
        self, image_id: str, sdist: str, inputs: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        with engine_errors(f"building {sdist} in a container of {image_id[:19]}"):
            return await self._call(tools.build_wheel, self._api, image_id, sdist, inputs)

    async def close(self) -> None:
        self._api.close()
