"""Pure translation from a ReplicaSpec to a Swarm service, and from tasks back to replicas.

The hardening matches the docker backend's where Swarm's API (1.41) has the
setting: unprivileged user, read-only root, every capability dropped, memory,
CPU and process limits, a size-capped /tmp, secrets as read-only files. Swarm
has no per-service `no-new-privileges` nor tmpfs mount flags before API 1.46.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from runtime.backends.base import ReplicaSpec, Task
from runtime.backends.docker import containers
from runtime.watchdog import wire

LABEL_SPEC = "faas.spec"
"""Hash of the settings a service was made from: equal hashes need no update."""
DRAIN_DELAY = 1.0
"""Seconds a replica keeps accepting calls after Swarm asks it to stop, so that gateways
stop routing to it first (they notice within a sync interval)."""
TMPFS_BYTES = 64 * 1024 * 1024
RUNNING = "running"


def service_name(project: str, function: str) -> str:
    return f"faas-{project}-{function}"


def network_name(project: str, function: str) -> str:
    """Each function has an overlay network of its own, shared only with the gateway."""
    return f"faas-{project}-{function}"


def network_args(project: str, function: str) -> dict[str, Any]:
    return {
        "name": network_name(project, function),
        "driver": "overlay",
        "labels": {containers.LABEL_PROJECT: project, containers.LABEL_FUNCTION: function},
        "check_duplicate": True,
    }


ROLE_HOLDER = "holder"
HOLDER_MEMORY = 8 * 1024 * 1024


def holder_name(project: str) -> str:
    return f"faas-{project}-{ROLE_HOLDER}"


def holder_args(
    project: str, image: str, networks: list[str], constraints: list[str]
) -> dict[str, Any]:
    """A `sleep` on every node, attached to every function's overlay network.

    Swarm tears a node's overlay sandbox down when its last task there stops,
    and builds it again for the next: measured here, a service at zero took
    1.3-2.0 s to its first 200 without a holder on its network, 0.5-0.7 s with
    one. The holder runs no function code and is as unprivileged as a replica.
    """
    task_template: dict[str, Any] = {
        "ContainerSpec": {
            "Image": image,
            "Command": ["sleep", "infinity"],
            "User": containers.REPLICA_USER,
            "Labels": {containers.LABEL_PROJECT: project, containers.LABEL_ROLE: ROLE_HOLDER},
            "ReadOnly": True,
            "CapabilityDrop": ["ALL"],
            "StopGracePeriod": 0,
        },
        "Resources": {"Limits": {"NanoCPUs": 10_000_000, "MemoryBytes": HOLDER_MEMORY, "Pids": 4}},
        "RestartPolicy": {"Condition": "any", "Delay": 100_000_000},
        "Networks": [{"Target": network} for network in sorted(networks)],
    }
    if constraints:
        task_template["Placement"] = {"Constraints": constraints}
    return {
        "task_template": task_template,
        "name": holder_name(project),
        "labels": {containers.LABEL_PROJECT: project, containers.LABEL_ROLE: ROLE_HOLDER},
        "mode": {"Global": {}},
    }


def secret_name(project: str, name: str, content: bytes) -> str:
    """Swarm secrets cannot change, so a new value is a new secret: the name carries a hash."""
    digest = hashlib.sha256(content).hexdigest()[:12]
    return f"faas-{project}-{name}-{digest}"


def spec_hash(spec: ReplicaSpec, image: str, constraints: list[str] | None = None) -> str:
    """What a replica is made from, and where it may run; not its token (kept across updates)."""
    inputs: dict[str, Any] = {
        "image": image,
        "handler": [spec.handler_file, spec.handler_name],
        "environment": dict(spec.environment),
        "limits": [spec.memory, spec.cpus, spec.pids],
        "secrets": sorted(spec.secret_files),
        "code": list(spec.code_mount) if spec.code_mount else None,
    }
    if constraints:
        inputs["placement"] = sorted(constraints)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def service_args(
    spec: ReplicaSpec,
    project: str,
    image: str,
    *,
    secrets: dict[str, tuple[str, str]],
    grace: float,
    constraints: list[str],
) -> dict[str, Any]:
    """Arguments for `APIClient.create_service` (and `update_service`, with a version).

    `secrets` maps a secret's name in functions.yaml to its Swarm (id, name).
    `constraints` place the replicas (see `SwarmBackend._constraints`).
    """
    environment = containers.replica_environment(spec)
    environment[wire.DRAIN_DELAY_ENV] = str(DRAIN_DELAY)
    uid, gid = containers.REPLICA_USER.split(":")
    mounts: list[dict[str, Any]] = [
        {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": TMPFS_BYTES}}
    ]
    if spec.code_mount is not None:
        host, target = spec.code_mount
        mounts.append({"Type": "bind", "Source": host, "Target": target, "ReadOnly": True})
    labels = {
        containers.LABEL_PROJECT: project,
        containers.LABEL_FUNCTION: spec.function,
        LABEL_SPEC: spec_hash(spec, image, constraints),
    }
    container_spec = {
        "Image": image,
        "User": containers.REPLICA_USER,
        "Env": [f"{key}={value}" for key, value in environment.items()],
        "Labels": {containers.LABEL_PROJECT: project, containers.LABEL_FUNCTION: spec.function},
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        "Mounts": mounts,
        "StopSignal": "SIGTERM",
        "StopGracePeriod": int((grace + DRAIN_DELAY + 1) * 1e9),
        "Secrets": [
            {
                "SecretID": secret_id,
                "SecretName": swarm_name,
                "File": {"Name": name, "UID": uid, "GID": gid, "Mode": 0o400},
            }
            for name, (secret_id, swarm_name) in sorted(secrets.items())
        ],
    }
    task_template: dict[str, Any] = {
        "ContainerSpec": container_spec,
        "Resources": {
            "Limits": {
                "NanoCPUs": int(spec.cpus * 1e9),
                "MemoryBytes": spec.memory,
                "Pids": spec.pids,
            }
        },
        # A replica that exits cleanly was asked to; one that fails is replaced.
        "RestartPolicy": {"Condition": "on-failure", "Delay": 100_000_000, "MaxAttempts": 0},
        "Networks": [{"Target": network_name(project, spec.function)}],
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "2"}},
    }
    if constraints:
        task_template["Placement"] = {"Constraints": constraints}
    return {
        "task_template": task_template,
        "name": service_name(project, spec.function),
        "labels": labels,
        # Updates (new image, settings) start each successor before stopping its predecessor.
        "update_config": {"Parallelism": 0, "Order": "start-first", "FailureAction": "pause"},
    }


def token_of(service: dict[str, Any]) -> str | None:
    """The replica token a service was created with (from its environment)."""
    env = service["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or []
    for entry in env:
        key, _, value = entry.partition("=")
        if key == wire.TOKEN_ENV:
            return str(value)
    return None


def replicas_of(service: dict[str, Any]) -> int:
    return int(service["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 0))


def task_from(
    raw: dict[str, Any], function: str, token: str, address: str | None, project: str
) -> Task:
    """A task as the gateway sees it; `address` is found by the caller (see SwarmBackend)."""
    state = raw["Status"]["State"]
    running = state == RUNNING and raw.get("DesiredState") == RUNNING
    slot = raw.get("Slot")
    name = f"{service_name(project, function)}.{slot if slot is not None else raw['ID'][:12]}"
    return Task(
        id=raw["ID"],
        name=name,
        function=function,
        running=running,
        created_at=parse_time(raw["CreatedAt"]),
        token=token,
        address=address if running else None,
    )


def overlay_address(raw: dict[str, Any], network_id: str) -> str | None:
    """The task's address on its function's overlay network, for a gateway inside the swarm."""
    for attachment in raw.get("NetworksAttachments") or []:
        if attachment["Network"]["ID"] == network_id and attachment.get("Addresses"):
            ip = attachment["Addresses"][0].split("/")[0]
            return f"{ip}:{containers.REPLICA_PORT}"
    return None


def parse_time(value: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, which `fromisoformat` refuses."""
    head, _, rest = value.rstrip("Z").partition(".")
    fraction = rest[:6]
    return datetime.fromisoformat(f"{head}.{fraction:0<6}+00:00").timestamp()
