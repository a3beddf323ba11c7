"""Pure translation from a ReplicaSpec to Docker create arguments.

Kept apart from the I/O so the hardening every replica gets can be read in
one place and checked by unit tests.
"""

from __future__ import annotations

import secrets
from typing import Any

from runtime.backends.base import ReplicaSpec

LABEL_PROJECT = "faas.project"
LABEL_FUNCTION = "faas.function"
LABEL_REPLICA = "faas.replica"
LABEL_ROLE = "faas.role"
ROLE_SANDBOX = "sandbox"
SANDBOX_MEMORY = 8 * 1024 * 1024

REPLICA_PORT = 8080
REPLICA_USER = "10001:10001"
TMPFS_SIZE = "64m"
SECRETS_DIR = "/run/secrets"


def network_name(project: str) -> str:
    return f"faas-{project}"


def container_name(project: str, function: str) -> str:
    return f"faas-{project}-{function}-{secrets.token_hex(3)}"


def network_args(project: str) -> dict[str, Any]:
    """A bridge network on which replicas cannot open connections to each other."""
    return {
        "name": network_name(project),
        "driver": "bridge",
        "labels": {LABEL_PROJECT: project},
        "options": {"com.docker.network.bridge.enable_icc": "false"},
        "check_duplicate": True,
    }


def sandbox_args(spec: ReplicaSpec, project: str, name: str) -> dict[str, Any]:
    """A network sandbox: holds one replica's network namespace on the project network.

    It runs `sleep` from the function's own image, as unprivileged as the replica.
    Started ahead of need, it takes the ~100-200 ms of bridge endpoint setup off
    the cold start: the replica joins its namespace (`network_mode=container:`).
    """
    return {
        "image": spec.image,
        "command": ["sleep", "infinity"],
        "name": f"{name}-net",
        "user": REPLICA_USER,
        "labels": {
            LABEL_PROJECT: project,
            LABEL_FUNCTION: spec.function,
            LABEL_ROLE: ROLE_SANDBOX,
        },
        "use_config_proxy": False,
    }


def sandbox_host_config_args(project: str) -> dict[str, Any]:
    return {
        "network_mode": network_name(project),
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": SANDBOX_MEMORY,
        "memswap_limit": SANDBOX_MEMORY,
        "pids_limit": 4,
        "nano_cpus": 10_000_000,
        "restart_policy": {"Name": "no"},
    }


def host_config_args(spec: ReplicaSpec, project: str, sandbox: str | None = None) -> dict[str, Any]:
    return {
        "network_mode": f"container:{sandbox}" if sandbox else network_name(project),
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,size={TMPFS_SIZE}"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": spec.memory,
        "memswap_limit": spec.memory,
        "nano_cpus": int(spec.cpus * 1e9),
        "pids_limit": spec.pids,
        "init": False,
        "restart_policy": {"Name": "no"},
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}},
        "binds": _binds(spec),
    }


def _binds(spec: ReplicaSpec) -> dict[str, dict[str, str]]:
    binds = {
        path: {"bind": f"{SECRETS_DIR}/{name}", "mode": "ro"}
        for name, path in spec.secret_files.items()
    }
    if spec.code_mount is not None:
        host, container = spec.code_mount
        binds[host] = {"bind": container, "mode": "ro"}
    return binds


def container_args(spec: ReplicaSpec, project: str, name: str, replica_id: str) -> dict[str, Any]:
    environment = dict(spec.environment)
    environment.update(
        FAAS_FUNCTION_NAME=spec.function,
        FAAS_HANDLER_FILE=spec.handler_file,
        FAAS_HANDLER_NAME=spec.handler_name,
        FAAS_TOKEN=spec.token,
        FAAS_PORT=str(REPLICA_PORT),
    )
    return {
        "image": spec.image,
        "name": name,
        "user": REPLICA_USER,
        "environment": environment,
        "labels": {
            LABEL_PROJECT: project,
            LABEL_FUNCTION: spec.function,
            LABEL_REPLICA: replica_id,
        },
        "stop_signal": "SIGTERM",
        "use_config_proxy": False,
    }
