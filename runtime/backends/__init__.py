"""Backends by name; only the selected one is imported (it may need an SDK others lack)."""

from __future__ import annotations

import importlib

from runtime.backends.base import AnyBackend
from runtime.errors import FaasError

BACKENDS = {
    "docker": "runtime.backends.docker:DockerBackend",
    "swarm": "runtime.backends.swarm:SwarmBackend",
    "kubernetes": "runtime.backends.kubernetes:KubernetesBackend",
}


def create_backend(name: str, project: str, *, registry: str | None = None) -> AnyBackend:
    """The backend called `name`; `registry` is where images are pushed (not for docker)."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise FaasError(f"unknown backend {name!r}; known backends: {known}") from None
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    options = {"registry": registry} if name != "docker" else {}
    backend: AnyBackend = backend_class(project, **options)
    return backend
