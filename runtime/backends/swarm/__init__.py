"""The Docker Swarm backend: each function is a Swarm service, scaled by its replica count.

The engine, not the gateway, starts and stops replicas (Swarm calls them
tasks): the autoscaler sets a service's count, and every gateway learns which
tasks run by listing them. That is what lets several gateways share replicas.

Where a gateway reaches a task depends on where the gateway runs:

- inside the swarm (`faas deploy`), on the function's overlay network, on any node;
- on a host outside the swarm (`faas up --backend swarm`), through the task's
  interface on `docker_gwbridge`, the bridge that connects each overlay task to its
  own host. Only the host can open connections there (inter-container traffic is
  off on that bridge), and only to its own tasks, so the services are pinned to
  this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import docker.errors

from runtime.backends.base import (
    ImageRequest,
    ProgressCallback,
    ReplicaSpec,
    ReplicaStatus,
    Task,
)
from runtime.backends.docker import containers
from runtime.backends.docker import log_stream as container_logs
from runtime.backends.docker.engine import EngineBackend, engine_errors
from runtime.backends.swarm import services
from runtime.backends.swarm.registry import Pins, push_image
from runtime.backends.swarm.warm import WarmServices
from runtime.errors import EngineUnavailable, FaasError
from runtime.images import image_reference

log = logging.getLogger("faas.swarm")

ADDRESS_MODE_ENV = "FAAS_SWARM_ADDRESS"
"""`overlay` when the gateway runs as a Swarm service itself; else the host's bridge."""
GWBRIDGE = "docker_gwbridge"
SWARM_HELP = (
    "Docker Swarm is not active on this engine. On the machine that will manage it, run "
    "`docker swarm init` (add `--advertise-addr ADDRESS` when it has several), then "
    "`docker swarm join` on the others (see README, 'Running on more than one machine')"
)
REMOVE_WAIT = 30.0
UPDATE_ATTEMPTS = 5


class SwarmBackend(EngineBackend):
    kind: Literal["services"] = "services"
    scales_itself = False
    """The gateway that leads sets each service's count (see runtime/scaling/coordination.py)."""

    def __init__(
        self, project: str, *, registry: str | None = None, placement: tuple[str, ...] = ()
    ) -> None:
        super().__init__(project, workers=8, thread_name="swarm")
        self.registry = registry
        self.placement = placement
        """Constraints on where functions' tasks run, from `cluster.placement`."""
        self._overlay = os.environ.get(ADDRESS_MODE_ENV) == "overlay"
        self._node_id: str | None = None
        self._prepared = asyncio.Lock()
        self._is_prepared = False
        self._tokens: dict[str, str] = {}
        """Function -> the token its service's replicas were made with."""
        self._networks: dict[str, str] = {}
        """Function -> id of its overlay network."""
        self._containers: dict[str, str] = {}
        """Task id -> its container id, for tasks on this node."""
        self._addresses: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        """Function -> its service's replica count, as the last `tasks` listing found it."""
        self._listed: set[str] = set()
        """Tasks that the last `tasks` listing found running."""
        self._service_locks: dict[str, asyncio.Lock] = {}
        self._warm: WarmServices | None = None
        self._holder_lock = threading.Lock()
        """Functions' services are made in parallel threads; the holder is updated by one."""
        self._pins = Pins()

    def warm_services(self) -> WarmServices:
        """The project's warm services (warm.py), on this backend's engine connection."""
        if self._warm is None:
            self._warm = WarmServices(self)
        return self._warm

    # -- preparation and images ------------------------------------------------------

    async def prepare(self) -> None:
        async with self._prepared:
            if not self._is_prepared:
                await self._call(self._check_swarm)
                self._is_prepared = True

    def _check_swarm(self) -> None:
        with engine_errors("asking the engine about its swarm"):
            swarm = self._api.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise EngineUnavailable(SWARM_HELP)
        if not swarm.get("ControlAvailable"):
            raise EngineUnavailable(
                "this engine is a Swarm worker; run the gateway on a manager node "
                "(`docker node ls` there lists them)"
            )
        if not self._overlay:
            self._node_id = swarm["NodeID"]

    @property
    def _constraints(self) -> list[str]:
        """Where function tasks (and the holder) may run: `cluster.placement`, and this
        node when the gateway runs outside the swarm (it reaches only its own tasks)."""
        pinned = [f"node.id=={self._node_id}"] if self._node_id is not None else []
        return [*self.placement, *pinned]

    @property
    def _from_registry(self) -> bool:
        """A gateway inside the swarm with a registry takes images from it, never builds:
        `faas deploy` built and pushed them, and a build here (on whichever manager this
        task runs) would push a different image under the same tag."""
        return self._overlay and self.registry is not None

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None:
        if self._from_registry and await self.image_id(image) is None:
            await self._call(self._pull_base_image, image, progress)
        await super().ensure_base_image(image, progress)

    def _pull_base_image(self, image: str, progress: ProgressCallback) -> None:
        """The base image `faas deploy` pushed: planning images needs its id and Python."""
        reference = image_reference(self.registry, image)
        repository, _, version = reference.rpartition(":")
        local_repository, _, local_version = image.rpartition(":")
        progress(f"pulling {reference}", None)
        with engine_errors(f"pulling {reference}"):
            self._api.pull(repository, tag=version)
            self._api.tag(reference, local_repository, local_version)
        progress(f"pulled {reference}", 1.0)

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        if self._from_registry:
            await self._call(self._image, request.tag)  # raises when the registry lacks it
            progress(f"in the registry: {request.tag}", 1.0)
            return False
        built = await super().build_image(request, progress)
        if self.registry is not None:
            pinned = await self._call(push_image, self._api, self.registry, request.tag, progress)
            self._pins.remember(pinned)
        return built

    async def push_base_image(self, image: str, progress: ProgressCallback) -> None:
        """Push a base image to the registry (when there is one) for gateways inside the
        swarm, which plan each function's image from its base (see `_from_registry`)."""
        if self.registry is not None:
            await self._call(push_image, self._api, self.registry, image, progress)

    def _image(self, tag: str) -> str:
        """What a service runs: the local tag, or the registry's copy pinned by digest."""
        if self.registry is None:
            return tag
        return self._pins.pinned(self._api, image_reference(self.registry, tag))

    # -- services --------------------------------------------------------------------

    def _lock(self, function: str) -> asyncio.Lock:
        return self._service_locks.setdefault(function, asyncio.Lock())

    async def ensure_service(self, spec: ReplicaSpec) -> None:
        await self.prepare()
        async with self._lock(spec.function):
            await self._call(self._ensure_service, spec)

    def _ensure_service(self, spec: ReplicaSpec) -> None:
        name = services.service_name(self.project, spec.function)
        with engine_errors(f"creating the service of {spec.function}"):
            image = self._image(spec.image)
            self._networks[spec.function] = self._ensure_network(spec.function)
            self._hold_network(spec.function, image)
            secrets = {
                secret: self._ensure_secret(secret, Path(path))
                for secret, path in spec.secret_files.items()
            }

            def wanted_for(existing: dict[str, Any] | None) -> dict[str, Any]:
                token = (existing and services.token_of(existing)) or spec.token
                self._tokens[spec.function] = token
                return services.service_args(
                    dataclasses.replace(spec, token=token),
                    self.project,
                    image,
                    secrets=secrets,
                    grace=spec.timeout,
                    constraints=self._constraints,
                )

            if self._service(name) is None:
                args = wanted_for(None)
                self._api.create_service(mode={"Replicated": {"Replicas": 0}}, **args)
                log.info("service created", extra={"function": spec.function, "service": name})
                return

            def update(existing: dict[str, Any]) -> dict[str, Any] | None:
                wanted = wanted_for(existing)
                if existing["Spec"]["Labels"].get(services.LABEL_SPEC) == wanted["labels"].get(
                    services.LABEL_SPEC
                ):
                    return None
                return {
                    "mode": {"Replicated": {"Replicas": services.replicas_of(existing)}},
                    **wanted,
                }

            if self._update_service(name, update):
                log.info("service updated", extra={"function": spec.function, "service": name})

    def _service(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._api.inspect_service(name)
        except docker.errors.NotFound:
            return None
        return found

    def _hold_network(self, function: str, image: str) -> None:
        """Attach the project's holder to `function`'s network (see `services.holder_args`)."""
        network = services.network_name(self.project, function)
        name = services.holder_name(self.project)

        def attach(holder: dict[str, Any]) -> dict[str, Any] | None:
            template = holder["Spec"]["TaskTemplate"]
            attached = {self._network_name(n["Target"]) for n in template.get("Networks") or []}
            if network in attached:
                return None
            held = template["ContainerSpec"]["Image"]
            return services.holder_args(self.project, held, [*attached, network], self._constraints)

        with self._holder_lock:
            if self._service(name) is None:
                self._api.create_service(
                    **services.holder_args(self.project, image, [network], self._constraints)
                )
            else:
                self._update_service(name, attach)

    def _update_service(
        self, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> bool:
        """Update service `name` with the arguments `change` makes of its current state.

        `change` returns None when the service is as wanted. A write that races
        another (a gateway, or Swarm recording a rollout's progress) is refused as
        "out of sequence"; the service is then read again and the change remade.
        Returns whether the service was updated.
        """
        for attempt in range(UPDATE_ATTEMPTS):
            service = self._service(name)
            if service is None:
                raise FaasError(f"the service {name} was removed")
            args = change(service)
            if args is None:
                return False
            try:
                self._api.update_service(service["ID"], service["Version"]["Index"], **args)
                return True
            except docker.errors.APIError as exc:
                if "out of sequence" not in str(exc) or attempt == UPDATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _network_name(self, target: str) -> str:
        """Services name their networks by id once created; the holder compares names."""
        try:
            return str(self._api.inspect_network(target)["Name"])
        except docker.errors.NotFound:
            return target

    def _ensure_network(self, function: str) -> str:
        args = services.network_args(self.project, function)
        for network in self._api.networks(names=[args["name"]]):
            if network["Name"] == args["name"]:
                return str(network["Id"])
        return str(self._api.create_network(**args)["Id"])

    def _ensure_secret(self, secret: str, path: Path) -> tuple[str, str]:
        content = path.read_bytes()
        name = services.secret_name(self.project, secret, content)
        for found in self._api.secrets(filters={"name": name}):
            if found["Spec"]["Name"] == name:
                return str(found["ID"]), name
        created = self._api.create_secret(
            name, content, labels={containers.LABEL_PROJECT: self.project}
        )
        return str(created["ID"]), name

    async def remove_service(self, function: str) -> None:
        async with self._lock(function):
            await self._call(self._remove_service, function)

    def _remove_service(self, function: str) -> None:
        name = services.service_name(self.project, function)
        with (
            engine_errors(f"removing the service of {function}"),
            contextlib.suppress(docker.errors.NotFound),
        ):
            self._api.remove_service(name)
        self._tokens.pop(function, None)

    async def set_replicas(self, function: str, count: int) -> None:
        async with self._lock(function):
            await self._call(self._set_replicas, function, count)

    def _set_replicas(self, function: str, count: int) -> None:
        name = services.service_name(self.project, function)

        def scale(service: dict[str, Any]) -> dict[str, Any] | None:
            if services.replicas_of(service) == count:
                return None
            return {"mode": {"Replicated": {"Replicas": count}}, "fetch_current_spec": True}

        with engine_errors(f"scaling {function} to {count}"):
            self._update_service(name, scale)

    async def desired_replicas(self) -> dict[str, int]:
        """Read off the services that the last `tasks` listed: no second listing per tick."""
        return dict(self._counts)

    @property
    def _project_label(self) -> str:
        return f"{containers.LABEL_PROJECT}={self.project}"

    @property
    def _function_labels(self) -> list[str]:
        """The project's function services (not its gateway service, see `faas deploy`)."""
        return [self._project_label, containers.LABEL_FUNCTION]

    # -- tasks -----------------------------------------------------------------------

    async def tasks(self) -> list[Task]:
        return await self._call(self._tasks)

    def _tasks(self) -> list[Task]:
        with engine_errors("listing tasks"):
            found = self._api.services(filters={"label": self._function_labels})
            self._counts = {
                service["Spec"]["Labels"][containers.LABEL_FUNCTION]: services.replicas_of(service)
                for service in found
            }
            by_service = {
                service["ID"]: (
                    service["Spec"]["Labels"][containers.LABEL_FUNCTION],
                    services.token_of(service) or "",
                )
                for service in found
            }
            if not by_service:
                return []
            raw_tasks = self._api.tasks(
                filters={"service": list(by_service), "desired-state": "running"}
            )
            bridge: dict[str, Any] | None = None
            result = []
            for raw in raw_tasks:
                function, token = by_service.get(raw["ServiceID"], ("", ""))
                if not function:
                    continue
                container_id = (raw["Status"].get("ContainerStatus") or {}).get("ContainerID")
                if container_id:
                    self._containers[raw["ID"]] = container_id
                address = self._addresses.get(raw["ID"])
                if address is None and raw["Status"]["State"] == services.RUNNING:
                    if self._overlay:
                        network_id = self._networks.get(function) or self._network_id(function)
                        address = services.overlay_address(raw, network_id)
                    elif container_id:
                        if bridge is None:
                            bridge = self._api.inspect_network(GWBRIDGE)
                        address = _bridge_address(bridge, container_id)
                    if address is not None:
                        self._addresses[raw["ID"]] = address
                result.append(services.task_from(raw, function, token, address, self.project))
            listed = {task.id for task in result if task.running}
            for task_id in self._listed - listed:
                lost = self._lost_task(task_id, by_service)
                if lost is not None:
                    result.append(lost)
            self._listed = listed
        live = {task.id for task in result}
        for stale in [task_id for task_id in self._addresses if task_id not in live]:
            del self._addresses[stale]
        return result

    def _lost_task(self, task_id: str, by_service: dict[str, tuple[str, str]]) -> Task | None:
        """The task `task_id` as lost (`Task.lost`), if its node is why it left the running."""
        found = self.node_lost(task_id)
        if found is None:
            return None
        raw, why = found
        function, token = by_service.get(raw["ServiceID"], ("", ""))
        if not function:
            return None
        task = services.task_from(raw, function, token, None, self.project)
        return dataclasses.replace(task, running=False, lost=why)

    def node_lost(self, task_id: str) -> tuple[dict[str, Any], str] | None:
        """(the task, why) when a task left the running ones because its node stopped
        answering Swarm; None when it stopped otherwise.

        Swarm then reschedules its slot and marks it to shut down, as on a scale-down,
        but nothing will stop it in an orderly way: its node is gone, and connections
        to it go silent rather than closed. Blocking: call in the backend's threads.
        """
        try:
            raw = self._api.inspect_task(task_id)
            node = self._api.inspect_node(raw["NodeID"]) if raw.get("NodeID") else None
        except docker.errors.NotFound:
            return None
        if node is None or node["Status"]["State"] == "ready":
            return None
        hostname = node.get("Description", {}).get("Hostname") or raw["NodeID"][:12]
        return raw, f"its node {hostname} is {node['Status']['State']}"

    def _network_id(self, function: str) -> str:
        name = services.network_name(self.project, function)
        for network in self._api.networks(names=[name]):
            if network["Name"] == name:
                self._networks[function] = network["Id"]
                return str(network["Id"])
        return ""

    # -- one task --------------------------------------------------------------------

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        return await self._call(self._status, replica_id)

    def _status(self, task_id: str) -> ReplicaStatus | None:
        with engine_errors(f"inspecting task {task_id[:12]}"):
            try:
                raw = self._api.inspect_task(task_id)
            except docker.errors.NotFound:
                return None
        exit_code = (raw["Status"].get("ContainerStatus") or {}).get("ExitCode")
        running = (
            raw["Status"]["State"] == services.RUNNING
            and raw.get("DesiredState") == services.RUNNING
        )
        return ReplicaStatus(
            id=task_id,
            name=task_id[:12],
            function=(raw.get("Spec", {}).get("ContainerSpec", {}).get("Labels") or {}).get(
                containers.LABEL_FUNCTION, "?"
            ),
            running=running,
            exit_code=None if running else exit_code,
        )

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        container_id = self._containers.get(replica_id)
        if container_id is None:
            return ""  # a task on another node: `docker service logs` there has its output
        return await self._call(container_logs.read_logs, self._api, container_id, tail)

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None:
        container_id = self._containers.get(replica_id)
        if container_id is not None:
            container_logs.follow_logs(self._api, container_id, on_line)

    # -- teardown --------------------------------------------------------------------

    async def teardown(self) -> int:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._overlay:
            # A gateway inside the swarm is one task of the gateway service: when it stops
            # (an update, a move, one of several replicas) the other gateways keep using the
            # function services. `faas deploy --remove` removes them.
            return 0
        return await asyncio.to_thread(self._teardown)

    def _teardown(self) -> int:
        """Remove the project's services, then (once their tasks are gone) networks, secrets."""
        label = {"label": self._project_label}
        with engine_errors(f"removing the services of project {self.project}"):
            found = self._api.services(filters=label)
            ids = [service["ID"] for service in found]
            tasks = self._api.tasks(filters={"service": ids}) if ids else []
            for service in found:
                with contextlib.suppress(docker.errors.NotFound):
                    self._api.remove_service(service["ID"])
            # Networks and secrets in use cannot go: wait for the tasks' containers to stop
            # (each drains its calls first), then until the networks are gone on this node.
            deadline = time.monotonic() + REMOVE_WAIT
            while self._api.containers(all=True, filters=label) and time.monotonic() < deadline:
                time.sleep(0.2)
            for network in self._api.networks(filters=label):
                with contextlib.suppress(docker.errors.APIError):
                    self._api.remove_network(network["Id"])
            while self._api.networks(filters=label) and time.monotonic() < deadline:
                time.sleep(0.2)
            for secret in self._api.secrets(filters=label):
                with contextlib.suppress(docker.errors.APIError):
                    self._api.remove_secret(secret["ID"])
        self._tokens.clear()
        self._addresses.clear()
        self._counts.clear()
        self._containers.clear()
        running = [t for t in tasks if t["Status"]["State"] == services.RUNNING]
        return len(running)


def _bridge_address(bridge: dict[str, Any], container_id: str) -> str | None:
    endpoint = (bridge.get("Containers") or {}).get(container_id)
    if not endpoint or not endpoint.get("IPv4Address"):
        return None
    return f"{endpoint['IPv4Address'].split('/')[0]}:{containers.REPLICA_PORT}"
