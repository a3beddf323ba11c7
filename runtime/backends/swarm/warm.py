"""Warm services: watchdogs without a function, kept running by Swarm, one service per kind.

A warm service is a replicated Swarm service of warm watchdogs (runtime/watchdog/warm.py)
for one kind of function (runtime/warm_kinds.py) under one set of limits: Swarm fixes a
task's limits when it creates it, so a warm task must already have the function's, and
functions of one kind with other limits have a service of their own. A gateway that needs
a replica of a function at once claims one of its kind's tasks over the network (the
runtime/supply/warm_tasks.py side): no engine call on the task's container, which may run
on another node, and none that waits for the orchestrator.

Every task of a service shares its environment, so the key the service gives its
watchdogs (TOKEN_ENV, with CLAIM_ENV) is shared too: it opens only the one claim of each
task, in which the claiming gateway gives the task a token of its own (wire.CLAIM_HEADER),
and which the watchdog logs; the gateway sends the function only once the task's output,
read through the manager (`first_claim`), shows that claim first.
A claimed task that should go is told to exit (POST /_/retire, with its own token); the
service's restart policy `any` has Swarm replace it, in the same slot, by a new warm task.

Where a gateway reaches warm tasks: inside the swarm (`faas deploy`), on the project's warm
overlay network, which `faas deploy` creates and attaches the gateway service to; outside it
(`faas up --backend swarm`), through docker_gwbridge, like any task on this node (the
services are pinned to it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

import docker.errors

from runtime.backends.base import WarmSpec, WarmTask
from runtime.backends.docker import containers
from runtime.backends.docker.engine import engine_errors
from runtime.backends.docker.log_stream import frame_payloads
from runtime.backends.swarm import services
from runtime.watchdog import wire

if TYPE_CHECKING:
    from runtime.backends.swarm import SwarmBackend

LABEL_KIND = "faas.warm-kind"
"""The kind's readable label (runtime/warm_kinds.py), on the service."""
LABEL_WARM_SPEC = "faas.warm-spec"
"""Digest of what the service's tasks are made of: it also names the service."""
CLAIM_IDLE = 600.0
"""Seconds a claimed task goes without a request before it retires itself: the gateway
that claimed it is gone (a gateway retires its idle replicas itself, much sooner)."""
CODE_TMPFS_BYTES = 16 * 1024 * 1024
SECRETS_TMPFS_BYTES = 1024 * 1024
STOP_GRACE = 10.0


def warm_spec_digest(project: str, spec: WarmSpec, image: str) -> str:
    inputs = {
        "project": project,
        "image": image,
        "limits": list(spec.limits),
        "preload": list(spec.preload),
        "mounts": [list(mount) for mount in spec.code_mounts],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def warm_service_name(project: str, digest: str) -> str:
    return f"faas-{project}-warm-{digest}"


def warm_network_name(project: str) -> str:
    """One overlay network for every warm service of a project, shared with the gateway."""
    return f"faas-{project}-warm"


def warm_network_args(project: str) -> dict[str, Any]:
    return {
        "name": warm_network_name(project),
        "driver": "overlay",
        "labels": {containers.LABEL_PROJECT: project, containers.LABEL_ROLE: containers.ROLE_WARM},
        "check_duplicate": True,
    }


def warm_service_args(
    project: str,
    spec: WarmSpec,
    image: str,
    *,
    label: str,
    key: str,
    size: int,
    constraints: list[str],
) -> dict[str, Any]:
    """Arguments for `APIClient.create_service`: `size` warm watchdogs of `image`.

    Each starts as root able only to change user (SETUID, SETGID), forks the writer
    that puts its function's files into the root-owned tmpfs mounts, and becomes the
    replica user before it imports anything (as the docker backend's warm watchdogs).
    """
    digest = warm_spec_digest(project, spec, image)
    environment = {
        wire.WARM_ENV: "1",
        wire.CLAIM_ENV: "1",
        wire.CLAIM_IDLE_ENV: f"{CLAIM_IDLE:g}",
        wire.TOKEN_ENV: key,
        wire.PORT_ENV: str(containers.REPLICA_PORT),
        wire.FUNCTION_NAME_ENV: "warm",
        wire.RUN_AS_ENV: containers.REPLICA_USER,
    }
    if spec.preload:
        environment[wire.PRELOAD_ENV] = ",".join(spec.preload)
    mounts: list[dict[str, Any]] = [
        {
            "Type": "tmpfs",
            "Target": "/tmp",
            "TmpfsOptions": {"SizeBytes": services.TMPFS_BYTES, "Mode": 0o1777},
        },
        {
            "Type": "tmpfs",
            "Target": wire.SECRETS_DIR,
            "TmpfsOptions": {"SizeBytes": SECRETS_TMPFS_BYTES, "Mode": 0o700},
        },
    ]
    if spec.code_mounts:
        mounts += [
            {"Type": "bind", "Source": host, "Target": target, "ReadOnly": True}
            for host, target in spec.code_mounts
        ]
    else:
        mounts.append(
            {
                "Type": "tmpfs",
                "Target": wire.CODE_DIR,
                "TmpfsOptions": {"SizeBytes": CODE_TMPFS_BYTES, "Mode": 0o755},
            }
        )
    labels = {
        containers.LABEL_PROJECT: project,
        containers.LABEL_ROLE: containers.ROLE_WARM,
        LABEL_KIND: label,
        LABEL_WARM_SPEC: digest,
    }
    task_template: dict[str, Any] = {
        "ContainerSpec": {
            "Image": image,
            "User": "0:0",
            "Env": [f"{name}={value}" for name, value in environment.items()],
            "Labels": {
                containers.LABEL_PROJECT: project,
                containers.LABEL_ROLE: containers.ROLE_WARM,
            },
            "ReadOnly": True,
            "CapabilityDrop": ["ALL"],
            "CapabilityAdd": ["CAP_SETUID", "CAP_SETGID"],
            "Mounts": mounts,
            "StopSignal": "SIGTERM",
            "StopGracePeriod": int(STOP_GRACE * 1e9),
        },
        "Resources": {
            "Limits": {
                "NanoCPUs": int(spec.limits.cpus * 1e9),
                "MemoryBytes": spec.limits.memory,
                "Pids": spec.limits.pids,
            }
        },
        # A retired task exits 0: Swarm replaces it with a new warm watchdog in its slot.
        "RestartPolicy": {"Condition": "any", "Delay": 100_000_000, "MaxAttempts": 0},
        "Networks": [{"Target": warm_network_name(project)}],
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "2"}},
    }
    if constraints:  # where function code may run (SwarmBackend._constraints)
        task_template["Placement"] = {"Constraints": constraints}
    return {
        "task_template": task_template,
        "name": warm_service_name(project, digest),
        "labels": labels,
        "mode": {"Replicated": {"Replicas": size}},
    }


def first_claim(output: bytes) -> str | None:
    """The digest in the first claim line (wire.CLAIMED) of a watchdog's output."""
    for line in output.splitlines():
        if b'"claimed"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == wire.CLAIMED:
            claim = entry.get("claim")
            return claim if isinstance(claim, str) else ""
    return None


def warm_task_from(
    raw: dict[str, Any], service: str, key: str, address: str | None
) -> WarmTask | None:
    """A running task (None for any other), with the address the caller found."""
    if raw["Status"]["State"] != services.RUNNING or raw.get("DesiredState") != services.RUNNING:
        return None
    return WarmTask(raw["ID"], service, key, address, services.parse_time(raw["CreatedAt"]))


class WarmServices:
    """The engine side of a project's warm services, on a `SwarmBackend`'s connection."""

    claim_idle = CLAIM_IDLE

    def __init__(self, backend: SwarmBackend) -> None:
        self._backend = backend
        self._network_id: str | None = None
        self._listed: set[str] = set()
        """Warm tasks the last listing found running."""

    @property
    def _project(self) -> str:
        return self._backend.project

    async def ensure(self, spec: WarmSpec, *, label: str, size: int) -> str:
        """Create the warm service of `spec` (unless it exists) with `size` tasks, and the
        project's warm network; returns the service's name."""
        await self._backend.prepare()
        return await self._backend._call(self._ensure, spec, label, size)

    def _ensure(self, spec: WarmSpec, label: str, size: int) -> str:
        backend = self._backend
        api = backend._api
        image = backend._image(spec.image)
        args = warm_service_args(
            self._project,
            spec,
            image,
            label=label,
            key=secrets.token_urlsafe(32),
            size=size,
            constraints=backend._constraints,
        )
        name = str(args["name"])
        with engine_errors(f"creating the warm service {label}"):
            self._network_id = self._ensure_network()
            if backend._service(name) is not None:
                return name  # made by this or another gateway: the same spec, its own key
            try:
                api.create_service(**args)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # another gateway made it meanwhile
                    raise
        return name

    def _ensure_network(self) -> str:
        api = self._backend._api
        args = warm_network_args(self._project)
        for network in api.networks(names=[args["name"]]):
            if network["Name"] == args["name"]:
                return str(network["Id"])
        try:
            return str(api.create_network(**args)["Id"])
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        return str(api.networks(names=[args["name"]])[0]["Id"])

    async def remove(self, service: str) -> None:
        await self._backend._call(self._remove, service)

    def _remove(self, service: str) -> None:
        with (
            engine_errors(f"removing the warm service {service}"),
            contextlib.suppress(docker.errors.NotFound),
        ):
            self._backend._api.remove_service(service)

    async def first_claim(self, task_id: str) -> str | None:
        return await self._backend._call(self._first_claim, task_id)

    def _first_claim(self, task_id: str) -> str | None:
        """Through the manager: the task may run on any node. Only the watchdog writes
        before its first claim (the function's code runs after it), so the first claim
        line is the watchdog's own. Its standard error only: one pipe keeps the order in
        which lines were written (the engine may interleave two streams otherwise)."""
        api = self._backend._api
        with engine_errors(f"reading the output of warm task {task_id[:12]}"):
            response = api._get(
                api._url("/tasks/{0}/logs", task_id), params={"stdout": 0, "stderr": 1}
            )
            api._raise_for_status(response)
            output = b"".join(frame_payloads(iter([response.content])))
        return first_claim(output)

    async def tasks(self) -> list[WarmTask]:
        """The running tasks of every warm service of the project."""
        return await self._backend._call(self._tasks)

    def _tasks(self) -> list[WarmTask]:
        from runtime.backends.swarm import GWBRIDGE, _bridge_address

        api = self._backend._api
        label = [
            f"{containers.LABEL_PROJECT}={self._project}",
            f"{containers.LABEL_ROLE}={containers.ROLE_WARM}",
        ]
        with engine_errors("listing warm tasks"):
            found = api.services(filters={"label": label})
            keys = {s["ID"]: (s["Spec"]["Name"], services.token_of(s) or "") for s in found}
            if not keys:
                return []
            raw_tasks = api.tasks(filters={"service": list(keys), "desired-state": "running"})
            bridge: dict[str, Any] | None = None
            result = []
            for raw in raw_tasks:
                service, key = keys.get(raw["ServiceID"], ("", ""))
                if not service or raw["Status"]["State"] != services.RUNNING:
                    continue
                address: str | None = None
                container_id = (raw["Status"].get("ContainerStatus") or {}).get("ContainerID")
                if container_id:  # on this node: its output and logs can be read
                    self._backend._containers[raw["ID"]] = container_id
                if self._backend._overlay:
                    if self._network_id is None:
                        self._network_id = self._ensure_network()
                    address = services.overlay_address(raw, self._network_id)
                elif container_id:
                    if bridge is None:
                        bridge = api.inspect_network(GWBRIDGE)
                    address = _bridge_address(bridge, container_id)
                task = warm_task_from(raw, service, key, address)
                if task is not None:
                    result.append(task)
            listed = {task.id for task in result}
            for task_id in self._listed - listed:
                found = self._backend.node_lost(task_id)
                if found is not None:
                    raw, why = found
                    service, key = keys.get(raw["ServiceID"], ("", ""))
                    created = services.parse_time(raw["CreatedAt"])
                    result.append(WarmTask(task_id, service, key, None, created, lost=why))
            self._listed = listed
        return result
