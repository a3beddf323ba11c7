"""Pure translation from a ReplicaSpec to Docker create arguments.

Kept apart from the I/O so the hardening every replica gets can be read in
one place and checked by unit tests.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from runtime.backends.base import Limits, ReplicaSpec, WarmSpec
from runtime.backends.docker.profile import ISOLATION_RUNTIMES
from runtime.watchdog import wire

LABEL_PROJECT = "faas.project"
LABEL_FUNCTION = "faas.function"
LABEL_REPLICA = "faas.replica"
LABEL_ROLE = "faas.role"
ROLE_SANDBOX = "sandbox"
ROLE_WARM = "warm"
"""A watchdog with no function yet; once assigned it serves one (runtime/warm_pool.py)."""
SANDBOX_MEMORY = 8 * 1024 * 1024
SANDBOX_CPUS = 250_000_000
"""A quarter of a CPU (nano-CPUs). Only `sleep` runs there, but the container's start
(runc's init, the exec of `sleep`) runs in its cgroup too, and it is on a cold start's
path: at 0.01 CPU it took 1.5-2.2 s here, at 0.25 ~0.1-0.3 s."""

REPLICA_PORT = wire.PORT
DEBUG_PORT = wire.DEBUG_PORT
REPLICA_USER = f"{wire.REPLICA_UID}:{wire.REPLICA_GID}"
TMPFS_SIZE = "64m"
SECRETS_DIR = wire.SECRETS_DIR
WARM_CODE_SIZE = "16m"
ENGINE_TMPFS_OPTIONS = "rw,noexec,nosuid,nodev,size=1m"
"""Podman's /run and /var/tmp (`_engine_tmpfs`)."""
CPU_PERIOD = 100_000
"""Microseconds: the CFS period a CPU quota is a share of (Docker's NanoCpus uses it too)."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What differs between engines in the containers made (runtime/backends/docker/profile.py)."""

    published: bool = False
    """Replicas publish their port on the host's 127.0.0.1 (a port the engine picks) and
    are dialed there: for engines whose bridge networks the host cannot route to."""
    ulimits: tuple[dict[str, Any], ...] = ()
    """Resource limits every container sets explicitly (Podman needs them)."""
    podman: bool = False
    """The engine is Podman: its tmpfs mounts take no uid=/gid= (root owns them anyway)
    and copy the image directory's mode over ours unless told not to, and a read-only
    container gets a writable /run and /var/tmp of Podman's own unless it names them."""


PUBLISHED_HOST = "127.0.0.1"


def network_name(project: str) -> str:
    return f"faas-{project}"


def container_name(project: str, function: str) -> str:
    return f"faas-{project}-{function}-{secrets.token_hex(3)}"


def bridge_name(project: str) -> str:
    """The host interface of the project network where the gateway names it (Podman as
    root): `faas` and a hash of the project, within Linux's 15 characters."""
    return "faas" + hashlib.sha256(project.encode()).hexdigest()[:10]


def network_args(
    project: str, options: EngineOptions = EngineOptions(), bridge: str | None = None
) -> dict[str, Any]:
    """A bridge network on which replicas cannot open connections to each other.

    Docker's bridge driver drops traffic between its containers itself (enable_icc).
    Podman ignores that option (with a warning): there the network gets the host
    interface `bridge`, where the gateway can drop that traffic (`isolation_rule`),
    or no option at all where it cannot.
    """
    if not options.podman:
        driver_options = {"com.docker.network.bridge.enable_icc": "false"}
    else:
        driver_options = {"com.docker.network.bridge.name": bridge} if bridge else {}
    return {
        "name": network_name(project),
        "driver": "bridge",
        "labels": {LABEL_PROJECT: project},
        "options": driver_options,
        "check_duplicate": True,
    }


IptablesAction = Literal["-C", "-I", "-D"]
IPTABLES = ("iptables", "-w", "5")
"""`-w`: wait for the lock the engine's own rule changes hold."""
FORWARD_RULES = [*IPTABLES, "-S", "FORWARD"]
"""The command that lists the FORWARD chain's rules (`isolation_comes_first` reads it)."""


def _isolation(bridge: str) -> list[str]:
    return ["-i", bridge, "-o", bridge, "-j", "DROP"]


def isolation_rule(action: IptablesAction, bridge: str) -> list[str]:
    """The iptables command that checks (-C), inserts first (-I) or deletes (-D) the rule
    dropping what one container on `bridge` sends another on it (Docker's own rule for
    enable_icc=false)."""
    return [*IPTABLES, action, "FORWARD", *_isolation(bridge)]


def isolation_comes_first(forward_rules: str, bridge: str) -> bool:
    """Whether, in `iptables -S FORWARD`, the rule of `bridge` comes before netavark's
    jump to its own chain, which accepts whatever a Podman network's containers send.

    netavark inserts that jump first in FORWARD whenever it is missing (when the first
    Podman network since boot is set up), above a rule put there before it.
    """
    ours = " ".join(["-A", "FORWARD", *_isolation(bridge)])
    for line in forward_rules.splitlines():
        line = line.strip()
        if line == ours:
            return True
        if line.startswith("-A FORWARD ") and line.endswith("-j NETAVARK_FORWARD"):
            return False
    return False


def sandbox_args(
    spec: ReplicaSpec, project: str, name: str, options: EngineOptions = EngineOptions()
) -> dict[str, Any]:
    """A network sandbox: holds one replica's network namespace on the project network.

    It runs `sleep` from the function's own image, as unprivileged as the replica;
    the replica joins its namespace (`network_mode=container:`). Both are made at a
    start of a container of the function's own (nothing is made ahead); the
    sandbox's address is known before the replica starts.
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
        **_exposed(options, debug=spec.debugger is not None),
    }


def _ports(debug: bool) -> list[int]:
    """The container ports a replica serves on: the watchdog's, and a debugged one's debugpy."""
    return [REPLICA_PORT, DEBUG_PORT] if debug else [REPLICA_PORT]


def _exposed(options: EngineOptions, debug: bool = False) -> dict[str, Any]:
    """Create arguments of the container that owns a replica's network namespace."""
    return {"ports": _ports(debug)} if options.published else {}


def _published(options: EngineOptions, debug: bool = False) -> dict[str, Any]:
    """Host config of that container: the replica port on 127.0.0.1, any free host port
    (and a debugged replica's debugpy port likewise).

    Loopback only: no other machine can reach it, and a container reaching the host
    through its bridge gateway does not match the binding either.
    """
    if not options.published:
        return {}
    return {"port_bindings": {port: (PUBLISHED_HOST, None) for port in _ports(debug)}}


def published_address(attrs: dict[str, Any], port: int = REPLICA_PORT) -> str | None:
    """host:port the engine published container `port` on, from an inspect; None if none."""
    bindings = (attrs["NetworkSettings"].get("Ports") or {}).get(f"{port}/tcp") or ()
    for binding in bindings:
        if binding.get("HostPort"):
            return f"{PUBLISHED_HOST}:{binding['HostPort']}"
    return None


def sandbox_host_config_args(
    project: str, options: EngineOptions = EngineOptions(), debug: bool = False
) -> dict[str, Any]:
    return {
        **_published(options, debug),
        **({"tmpfs": _engine_tmpfs(options)} if options.podman else {}),
        "ulimits": list(options.ulimits) or None,
        "network_mode": network_name(project),
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": SANDBOX_MEMORY,
        "memswap_limit": SANDBOX_MEMORY,
        "pids_limit": 4,
        "nano_cpus": SANDBOX_CPUS,
        "restart_policy": {"Name": "no"},
    }


def host_config_args(
    spec: ReplicaSpec,
    project: str,
    sandbox: str | None = None,
    options: EngineOptions = EngineOptions(),
) -> dict[str, Any]:
    return {
        **_hardening(spec.limits, spec.isolation, options),
        **({"network_mode": f"container:{sandbox}"} if sandbox else _own_network(project, options)),
        "binds": _binds(spec),
    }


def _own_network(project: str, options: EngineOptions) -> dict[str, Any]:
    return {"network_mode": network_name(project), **_published(options)}


def _hardening(limits: Limits, isolation: str, options: EngineOptions) -> dict[str, Any]:
    """What every replica runs under: see ARCHITECTURE.md, "Containers"."""
    memory, cpus, pids = limits
    return {
        "runtime": ISOLATION_RUNTIMES[isolation],
        "ulimits": list(options.ulimits) or None,
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,size={TMPFS_SIZE}", **_engine_tmpfs(options)},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(cpus * 1e9),
        "pids_limit": pids,
        "init": False,
        "restart_policy": {"Name": "no"},
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}},
    }


def _engine_tmpfs(options: EngineOptions) -> dict[str, str]:
    """Where Podman would mount a writable tmpfs that allows exec in a read-only
    container: small ones that do not, instead. (Docker mounts none of its own.)
    The secrets a replica is given are bind-mounted below /run, over this one."""
    if not options.podman:
        return {}
    return {"/run": ENGINE_TMPFS_OPTIONS, "/var/tmp": ENGINE_TMPFS_OPTIONS}


def _root_owned(options: EngineOptions) -> str:
    """Mount options of a tmpfs that belongs to root and that only root may write.

    Docker takes the owner explicitly. Podman refuses uid=/gid= ("unknown mount
    option") and makes its tmpfs mounts root's anyway, but copies the image
    directory's contents and mode into the mount unless told `notmpcopyup`.
    """
    return "mode=0755,notmpcopyup" if options.podman else "uid=0,gid=0,mode=0755"


def _binds(spec: ReplicaSpec) -> dict[str, dict[str, str]]:
    binds = {
        path: {"bind": f"{SECRETS_DIR}/{name}", "mode": "ro"}
        for name, path in spec.secret_files.items()
    }
    if spec.code_mount is not None:
        host, container = spec.code_mount
        binds[host] = {"bind": container, "mode": "ro"}
    if spec.debugger is not None:
        binds[spec.debugger] = {"bind": wire.DEBUGGER_DIR, "mode": "ro"}
    return binds


def replica_environment(spec: ReplicaSpec) -> dict[str, str]:
    """The function's environment and what the watchdog needs to load and guard it."""
    environment = dict(spec.environment)
    environment.update(
        {
            wire.FUNCTION_NAME_ENV: spec.function,
            wire.HANDLER_FILE_ENV: spec.handler_file,
            wire.HANDLER_NAME_ENV: spec.handler_name,
            wire.TOKEN_ENV: spec.token,
            wire.PORT_ENV: str(REPLICA_PORT),
        }
    )
    if spec.debugger is not None:
        # debugpy, and no call timeout: a call paused at a breakpoint must not be killed
        environment[wire.DEBUG_PORT_ENV] = str(DEBUG_PORT)
        environment[wire.TIMEOUT_ENV] = f"{spec.timeout:g}"
    return environment


def container_args(spec: ReplicaSpec, project: str, name: str, replica_id: str) -> dict[str, Any]:
    """Create arguments of a replica (its network namespace is its sandbox's)."""
    return {
        "image": spec.image,
        "name": name,
        "user": REPLICA_USER,
        "environment": replica_environment(spec),
        "labels": {
            LABEL_PROJECT: project,
            LABEL_FUNCTION: spec.function,
            LABEL_REPLICA: replica_id,
        },
        "stop_signal": "SIGTERM",
        "use_config_proxy": False,
    }


def warm_name(project: str) -> str:
    """Unlike a function's replica (`assigned_name`), with a dot no function name has."""
    return f"faas-{project}.warm-{secrets.token_hex(3)}"


def warm_args(
    project: str, spec: WarmSpec, token: str, name: str, options: EngineOptions = EngineOptions()
) -> dict[str, Any]:
    """A watchdog with no function: the replica hardening, function-neutral limits.

    It starts as root, able only to change user (`warm_host_config_args`): it forks
    a writer that stays root, becomes the replica user for good, then imports
    `spec.preload`; at its start the writer puts the function's code and secrets
    into root-owned tmpfs mounts (runtime/watchdog/warm.py), so the function
    cannot change its own files.
    """
    environment = {
        wire.WARM_ENV: "1",
        wire.TOKEN_ENV: token,
        wire.PORT_ENV: str(REPLICA_PORT),
        wire.FUNCTION_NAME_ENV: "warm",
        wire.RUN_AS_ENV: REPLICA_USER,
    }
    if spec.preload:
        environment[wire.PRELOAD_ENV] = ",".join(spec.preload)
    return {
        "image": spec.image,
        "name": name,
        "user": "0:0",
        "environment": environment,
        "labels": {LABEL_PROJECT: project, LABEL_ROLE: ROLE_WARM},
        "stop_signal": "SIGTERM",
        "use_config_proxy": False,
        **_exposed(options),
    }


def warm_host_config_args(
    project: str, spec: WarmSpec, options: EngineOptions = EngineOptions()
) -> dict[str, Any]:
    """Development mounts the project's code read-only (`spec.code_mounts`: (host,
    container)); otherwise the code directory is a tmpfs that receives one function's
    code. Requirements are in the image (the kind's), never sent.

    The tmpfs mounts belong to root; the only capabilities are the two the watchdog
    needs to become the replica user, and that change clears them.
    """
    hardening = _hardening(spec.limits, spec.isolation, options)
    owned = _root_owned(options)
    tmpfs = {
        **hardening["tmpfs"],
        SECRETS_DIR: f"rw,noexec,nosuid,nodev,size=1m,{owned}",
    }
    if not spec.code_mounts:
        tmpfs[wire.CODE_DIR] = f"rw,noexec,nosuid,nodev,size={WARM_CODE_SIZE},{owned}"
    return {
        **hardening,
        "cap_add": ["SETUID", "SETGID"],
        **_own_network(project, options),
        "tmpfs": tmpfs,
        "binds": {host: {"bind": container, "mode": "ro"} for host, container in spec.code_mounts},
    }


def limits_update(limits: Limits) -> dict[str, int]:
    """The body of Docker's container update that gives a warm watchdog other limits."""
    return {
        "Memory": limits.memory,
        "MemorySwap": limits.memory,
        "NanoCpus": int(limits.cpus * 1e9),
        "PidsLimit": limits.pids,
    }


LIBPOD_API = "/v4.0.0/libpod"
"""Podman's own API, beside its Docker one: versioned by Podman releases (4.0.0 is the
oldest it accepts), not by the Docker API version the client negotiated (400 there)."""


def libpod_limits_update(limits: Limits) -> dict[str, Any]:
    """The same for Podman, whose Docker API has no container update (404 in 4.3): the
    body of its own POST LIBPOD_API/containers/{id}/update (an OCI LinuxResources)."""
    return {
        "memory": {"limit": limits.memory, "swap": limits.memory},
        "cpu": {"quota": round(limits.cpus * CPU_PERIOD), "period": CPU_PERIOD},
        "pids": {"limit": limits.pids},
    }


def assigned_name(project: str, function: str, warm: str) -> str:
    """`faas-<project>-<function>-<hex>`, the hex kept from the warm watchdog's name."""
    return f"faas-{project}-{function}-{warm.rpartition('-')[2]}"


def serving_function(labels: dict[str, str], name: str, project: str) -> str | None:
    """The function a listed container serves, from its labels and name; None for network
    sandboxes and unassigned warm watchdogs. Labels are fixed when a container is made,
    so a warm watchdog given a function is known by its name (`assigned_name`)."""
    role = labels.get(LABEL_ROLE)
    if role is None:
        return labels.get(LABEL_FUNCTION)
    prefix = f"faas-{project}-"
    if role != ROLE_WARM or not name.startswith(prefix):
        return None
    return name.removeprefix(prefix).rpartition("-")[0]
