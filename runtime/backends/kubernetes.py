"""The backend a gateway pod runs with in Kubernetes (see `faas export kubernetes`).

Kubernetes runs the replicas: each function is a Deployment that KEDA scales on
its JetStream backlog, applied with `kubectl`. The gateway builds nothing and
sets no counts. It finds a function's ready pods the way any client in the
cluster can, through DNS: the function's Service is headless, so its name
resolves to one address per ready pod. That needs no access to the Kubernetes
API, so the gateway pod runs with no service-account rights at all.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Literal

from runtime.backends.base import (
    ImageRequest,
    ProgressCallback,
    ReplicaSpec,
    ReplicaStatus,
    Task,
)
from runtime.backends.docker.containers import REPLICA_PORT
from runtime.errors import EngineUnavailable, ImageBuildError
from runtime.interpreter import Interpreter
from runtime.requirements import default_interpreter

NAMESPACE_ENV = "FAAS_NAMESPACE"
TOKEN_ENV = "FAAS_REPLICA_TOKEN"
IMAGE_ID = "prebuilt"
"""Images are built and pushed before the manifests are applied; the gateway never builds."""

Resolver = Callable[[str], list[str]]
"""A host name -> the IPv4 addresses it resolves to now (none when it does not resolve)."""


def resolve(name: str) -> list[str]:
    try:
        found = socket.getaddrinfo(name, REPLICA_PORT, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({str(entry[4][0]) for entry in found})


def service_host(function: str, namespace: str) -> str:
    return f"{function}.{namespace}.svc.cluster.local"


def tasks_from(
    answers: dict[str, list[str]], seen: dict[str, float], token: str, now: float
) -> list[Task]:
    """Tasks for the pods each function's name resolves to; `seen` keeps first sightings."""
    found = []
    for function, addresses in sorted(answers.items()):
        for ip in addresses:
            task_id = f"{function}/{ip}"
            created = seen.setdefault(task_id, now)
            found.append(
                Task(
                    id=task_id,
                    name=f"{function}@{ip}",
                    function=function,
                    running=True,
                    created_at=created,
                    token=token,
                    address=f"{ip}:{REPLICA_PORT}",
                )
            )
    live = {task.id for task in found}
    for gone in [task_id for task_id in seen if task_id not in live]:
        del seen[gone]
    return found


class KubernetesBackend:
    kind: Literal["services"] = "services"
    scales_itself = True
    """The autoscaler only follows: KEDA decides each Deployment's replicas."""

    def __init__(
        self, project: str, *, registry: str | None = None, resolver: Resolver = resolve
    ) -> None:
        self.project = project
        self.registry = registry
        self._namespace = os.environ.get(NAMESPACE_ENV, project)
        self._token = os.environ.get(TOKEN_ENV, "")
        self._resolve = resolver
        self._functions: set[str] = set()
        self._seen: dict[str, float] = {}
        self._running: set[str] = set()

    async def prepare(self) -> None:
        if not self._token:
            raise EngineUnavailable(
                f"the kubernetes backend needs the replicas' token in {TOKEN_ENV} "
                "(the exported gateway Deployment sets it from a Secret)"
            )

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None:
        progress(f"{image}: built and pushed before the manifests were applied", 1.0)

    async def image_id(self, image: str) -> str | None:
        return IMAGE_ID

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        return False

    async def interpreter(self, image_id: str) -> Interpreter:
        return default_interpreter()

    async def build_wheel(
        self, image_id: str, sdist: str, inputs: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        raise ImageBuildError("the kubernetes backend builds nothing: `faas build` does")

    async def ensure_service(self, spec: ReplicaSpec) -> None:
        self._functions.add(spec.function)

    async def remove_service(self, function: str) -> None:
        self._functions.discard(function)

    async def set_replicas(self, function: str, count: int) -> None:
        """KEDA and the Deployment own the count: nothing to set from here."""

    async def desired_replicas(self) -> dict[str, int]:
        counts = dict.fromkeys(self._functions, 0)
        for task_id in self._running:
            function = task_id.partition("/")[0]
            counts[function] = counts.get(function, 0) + 1
        return counts

    async def tasks(self) -> list[Task]:
        answers = await asyncio.gather(*(self._lookup(f) for f in sorted(self._functions)))
        found = tasks_from(
            dict(zip(sorted(self._functions), answers, strict=True)),
            self._seen,
            self._token,
            time.time(),
        )
        self._running = {task.id for task in found}
        return found

    async def _lookup(self, function: str) -> list[str]:
        return await asyncio.to_thread(self._resolve, service_host(function, self._namespace))

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        if replica_id not in self._running:
            return None
        function = replica_id.partition("/")[0]
        return ReplicaStatus(id=replica_id, name=replica_id, function=function, running=True)

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        return ""  # `kubectl logs` has them

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None:
        """Pod output goes to Kubernetes' own log collection."""

    async def teardown(self) -> int:
        return 0  # `kubectl delete -f` removes what `kubectl apply -f` made

    async def close(self) -> None:
        pass
