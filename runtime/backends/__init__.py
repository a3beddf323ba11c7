"""Backends by name; only the selected one is imported (it may need an SDK others lack)."""

from __future__ import annotations

import importlib

from runtime.backends.base import AnyBackend
from runtime.errors import FaasError
from runtime.spec import Project

BACKENDS = {
    "docker": "runtime.backends.docker:DockerBackend",
    "swarm": "runtime.backends.swarm:SwarmBackend",
    "kubernetes": "runtime.backends.kubernetes:KubernetesBackend",
}


def create_backend(
    name: str,
    project: str,
    *,
    registry: str | None = None,
    engine: str = "docker",
    access: str = "auto",
) -> AnyBackend:
    """The backend called `name`; `registry` is where images are pushed (not for docker);
    `engine` (docker or podman) and `access` (runtime/backends/docker/profile.py) are
    the docker backend's."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise FaasError(f"unknown backend {name!r}; known backends: {known}") from None
    if name != "docker" and engine != "docker":
        raise FaasError(f"the {name} backend needs Docker; engine {engine} runs backend docker")
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    options: dict[str, str | None] = {"registry": registry}
    if name == "docker":
        options = {"engine": engine, "access": access}
    backend: AnyBackend = backend_class(project, **options)
    return backend


def backend_for(project: Project, name: str | None = None) -> AnyBackend:
    """The backend `project` asks for in `cluster` (or the one called `name`)."""
    cluster = project.cluster
    return create_backend(
        name or cluster.backend,
        project.name,
        registry=cluster.registry,
        engine=cluster.engine,
        access=cluster.replica_access,
    )
