"""Images shared through a registry: pushed once, then named by digest in service specs.

A service whose image is `registry/name:tag` makes every node ask the registry
what the tag means before each task, and a node that cannot ask (or an engine
set to prefer its local copy) may run whatever it holds under that tag. The
Docker CLI pins a service's image to `name:tag@sha256:...` for that reason; the
SDK does not, so this module does: a node that holds the digest starts the task
without asking, one that does not pulls exactly that image.
"""

from __future__ import annotations

import threading

import docker.errors
from docker.api.client import APIClient

from runtime.backends.base import ProgressCallback
from runtime.backends.docker.engine import engine_errors
from runtime.errors import EngineUnavailable, FaasError
from runtime.images import image_reference


def push_image(api: APIClient, registry: str, tag: str, progress: ProgressCallback) -> str:
    """Tag the local image `tag` for `registry`, push it; returns its pinned reference."""
    reference = image_reference(registry, tag)
    repository, _, version = reference.rpartition(":")
    progress(f"pushing {reference}", None)
    digest = ""
    with engine_errors(f"pushing {reference}"):
        api.tag(tag, repository, version)
        for event in api.push(repository, tag=version, stream=True, decode=True):
            if "error" in event:
                raise EngineUnavailable(f"pushing {reference}: {event['error']}")
            digest = (event.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise EngineUnavailable(f"pushing {reference}: the engine reported no digest")
    progress(f"pushed {reference}", 1.0)
    return f"{reference}@{digest}"


class Pins:
    """Registry references resolved to their digests, asked of the registry once each.

    The engine asks the registry (`GET /distribution/{name}/json`), so this works
    wherever the engine can pull from, as the gateway inside the swarm needs.
    Tags of function images are content hashes, so a tag's digest never changes.
    """

    def __init__(self) -> None:
        self._pinned: dict[str, str] = {}
        self._lock = threading.Lock()

    def pinned(self, api: APIClient, reference: str) -> str:
        with self._lock:
            found = self._pinned.get(reference)
        if found is not None:
            return found
        with engine_errors(f"asking the registry about {reference}"):
            try:
                descriptor = api.inspect_distribution(reference)["Descriptor"]
            except docker.errors.NotFound:
                raise FaasError(
                    f"the registry has no image {reference}: `faas deploy` pushes it"
                ) from None
        pinned = f"{reference}@{descriptor['digest']}"
        with self._lock:
            self._pinned[reference] = pinned
        return pinned

    def remember(self, pinned: str) -> None:
        """A reference `push_image` returned: no need to ask the registry about it."""
        reference, _, _ = pinned.partition("@")
        with self._lock:
            self._pinned[reference] = pinned
