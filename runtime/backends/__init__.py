"""Backends by name; only the selected one is imported (it may need an SDK others lack)."""

from __future__ import annotations

import importlib

from runtime.backends.base import AnyBackend
from runtime.backends.docker.profile import isolation_problems
from runtime.errors import FaasError, UnsupportedSetting
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
    placement: tuple[str, ...] = (),
) -> AnyBackend:
    """The backend called `name`; `registry` is where images are pushed (not for docker);
    `engine` (docker or podman) and `access` (runtime/backends/docker/profile.py) are
    the docker backend's; `placement` (Swarm constraints) the swarm backend's."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise FaasError(f"unknown backend {name!r}; known backends: {known}") from None
    if name != "docker" and engine != "docker":
        raise FaasError(f"the {name} backend needs Docker; engine {engine} runs backend docker")
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    options: dict[str, object] = {"registry": registry}
    if name == "docker":
        options = {"engine": engine, "access": access}
    elif name == "swarm":
        options["placement"] = placement
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
        placement=cluster.placement,
    )


async def checked_backend(project: Project, name: str | None = None) -> AnyBackend:
    """`backend_for`, once it is known to run every function as its `isolation` asks;
    raises UnsupportedSetting naming each function it cannot."""
    backend = backend_for(project, name)
    isolations = {function.name: function.isolation for function in project.functions.values()}
    profile = getattr(backend, "profile", None)  # the engine's, for engine backends
    problems = isolation_problems(name or project.cluster.backend, profile, isolations)
    if problems:
        await backend.close()
        raise UnsupportedSetting("\n".join(problems))
    return backend
