"""The Docker Engine backend: one container per replica, through the docker SDK.

docker-py is synchronous, so every call runs in a worker thread; nothing
here blocks the event loop. The same code drives Docker Engine (rootful or
rootless), Docker Desktop and Podman through the Docker API (see
runtime/backends/docker/profile.py). Replicas join a per-project bridge
network with inter-container traffic disabled (by Docker itself; on a rootful
Podman, which ignores that option, by an iptables rule the gateway adds on the
bridge it names, as root on the engine's host). The gateway reaches them by
their address on that network, which only this host can route to; where the
host cannot route there (rootless engines, Docker Desktop's VM), each replica
publishes its port on the host's 127.0.0.1 and the gateway dials that.

A call that creates a container keeps running in its thread when its caller
is cancelled; the caller never learns the id, so the backend removes what was
made once the engine answers (`_undoable`). `containers` lists everything the
project holds for the reconcile (runtime/reconcile.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

import docker.errors

from runtime.backends.base import (
    CreatedReplica,
    Limits,
    ListedContainer,
    Replica,
    ReplicaSpec,
    ReplicaStatus,
    WarmSpec,
)
from runtime.backends.docker import containers, memory
from runtime.backends.docker import log_stream as container_logs
from runtime.backends.docker.engine import EngineBackend, engine_errors
from runtime.backends.docker.profile import (
    PODMAN_ULIMITS,
    Engine,
    ReplicaAccess,
    network_isolation,
    replica_access,
)
from runtime.errors import EngineUnavailable

log = logging.getLogger("faas.docker")

NETWORK_REMOVE_WAIT = 30.0
NETWORK_IN_USE = ("active endpoints", "network is being used", "has associated containers")
"""How Docker and Podman refuse to remove a network that containers are still leaving."""
STALE_AFTER = 5.0
"""How long a network with no container attached may still refuse removal before its
endpoints are taken for the engine's stale ones (see `_stale_endpoints`)."""
IPTABLES_TIMEOUT = 15.0
START_WAIT = 30.0
"""Seconds a removal waits for the start of the same container to come back first."""
CONCURRENT_STARTS = max(2, min(8, 2 * (os.cpu_count() or 1)))
"""Container starts handed to the engine at once: twice the cores. Measured on 2 cores
(bench/start_parallelism.py, ten containers): one at a time makes the tenth ready
1.25-1.41x later than two at once; four at once 0.91-0.96x of two, six or eight no
better than four, while each start waits longer (start -> ready p50 0.4 s at two,
0.7 s at four, 1.0-1.4 s at six or eight)."""


class DockerBackend(EngineBackend):
    kind: Literal["containers"] = "containers"

    def __init__(
        self, project: str, *, engine: Engine = "docker", access: ReplicaAccess = "auto"
    ) -> None:
        super().__init__(project, workers=16, thread_name="docker", engine=engine)
        self._access = access
        self._options = containers.EngineOptions(
            ulimits=PODMAN_ULIMITS if self.profile.podman else (), podman=self.profile.podman
        )
        self._network = containers.network_name(project)
        self._isolation = network_isolation(self.profile, os.geteuid())
        self._bridge = containers.bridge_name(project) if self._isolation == "iptables" else None
        """The project network's interface, named by us where we drop traffic within it."""
        self._isolated: str | None = None
        """The interface our rule is on, once its network is made (see `_keep_first`)."""
        self._isolation_checked = threading.Event()
        self._isolation_lock = threading.Lock()
        self._network_ready = asyncio.Lock()
        self._has_network = False
        self._start_slots = asyncio.Semaphore(CONCURRENT_STARTS)
        self._sandboxes: dict[str, str] = {}
        """Replica container id -> the network sandbox it joined."""
        self._assigned: dict[str, str] = {}
        """Warm watchdog container id -> the function it was given (runtime/warm_pool.py)."""
        self._warm_limits: dict[str, Limits] = {}
        """Unassigned warm watchdog container id -> the limits it was created with."""
        self._abandoned: set[str] = set()
        self._starting: dict[str, threading.Event] = {}
        """Containers whose start is with the engine now (set once it has answered)."""
        """Containers made here that no caller knows of and that could not be removed
        (a failed create's sandbox): the reconcile removes them without a grace."""

    async def prepare(self) -> None:
        async with self._network_ready:
            if not self._has_network:
                await self._call(self._create_network)
                self._has_network = True

    @property
    def published(self) -> bool:
        """Replicas are dialed at a port published on 127.0.0.1 (known after `prepare`)."""
        return self._options.published

    def _create_network(self) -> None:
        with engine_errors(f"creating network {self._network}"):
            # by inspecting: the engines' name filter also matches longer names (faas-<project>2)
            try:
                attrs = self._api.inspect_network(self._network)
            except docker.errors.NotFound:
                self._api.create_network(
                    **containers.network_args(self.project, self._options, self._bridge)
                )
                attrs = self._api.inspect_network(self._network)
            # one an earlier version made keeps the interface Podman gave it
            bridge = self._interface_of(self._network) if self._bridge else None
        if bridge is not None:
            self._isolate(bridge)
            self._isolated = bridge
            self._isolation_checked.clear()
        elif self._isolation == "none":
            log.warning(
                "replicas on this engine are not kept from connecting to each other: Podman "
                "ignores the bridge option that does it, and only root on the engine's host "
                "can drop that traffic itself (each replica still refuses calls without "
                "its own token)",
                extra={"engine": self.profile.describe(), "network": self._network},
            )
        gateway = _network_gateway(attrs)
        mode = replica_access(self._access, self.profile, _is_local_address(gateway))
        self._options = dataclasses.replace(self._options, published=mode == "published")
        if not self.profile.enforces_limits:
            log.warning(
                "this engine does not enforce memory, CPU or process limits (no cgroups: "
                "rootless Docker needs cgroup v2 and systemd); replicas run without them",
                extra={"engine": self.profile.describe()},
            )
        log.info(
            "replicas reached at their published port on 127.0.0.1"
            if self.published
            else "replicas reached at their address on the project network",
            extra={"engine": self.profile.describe(), "network_gateway": gateway or "?"},
        )

    def _interface_of(self, network: str) -> str:
        """The host interface of a Podman bridge network (its Docker API does not say)."""
        api = self._api
        response = api._get(
            api._url(f"{containers.LIBPOD_API}/networks/{{0}}/json", network, versioned_api=False)
        )
        interface = api._result(response, json=True).get("network_interface")
        if not interface:
            raise EngineUnavailable(f"network {network} has no host interface to isolate")
        return str(interface)

    def _isolate(self, bridge: str) -> None:
        """Drop what one container on `bridge` sends another (idempotent)."""
        if _iptables(containers.isolation_rule("-C", bridge)).returncode == 0:
            return
        self._insert_rule(bridge)
        log.info(
            "replicas kept from connecting to each other",
            extra={"network": self._network, "bridge": bridge},
        )

    def _insert_rule(self, bridge: str) -> None:
        argv = containers.isolation_rule("-I", bridge)
        inserted = _iptables(argv)
        if inserted.returncode != 0:
            raise EngineUnavailable(
                f"keeping replicas on {self._network} apart (`{' '.join(argv)}`): "
                f"{inserted.stderr.strip() or f'exit {inserted.returncode}'}"
            )

    def _keep_first(self) -> None:
        """After a container started: once per network, put our rule back above netavark's
        jump if netavark just inserted that first (`containers.isolation_comes_first`).
        netavark sets a bridge up when its first container starts; before then no two
        replicas are on it. Copies left below are removed with the rule (`_unisolate`)."""
        bridge = self._isolated
        if bridge is None or self._isolation_checked.is_set():
            return
        with self._isolation_lock:
            if self._isolation_checked.is_set():
                return
            listed = _iptables(containers.FORWARD_RULES)
            if listed.returncode != 0:
                raise EngineUnavailable(
                    f"listing iptables FORWARD rules: {listed.stderr.strip() or listed.returncode}"
                )
            if not containers.isolation_comes_first(listed.stdout, bridge):
                self._insert_rule(bridge)
                log.info(
                    "the rule keeping replicas apart put back above netavark's",
                    extra={"network": self._network, "bridge": bridge},
                )
            self._isolation_checked.set()

    def _unisolate(self, bridge: str) -> None:
        """Remove every copy of the rule `_isolate` inserted; a failure is only logged."""
        for _ in range(10):
            if _iptables(containers.isolation_rule("-C", bridge)).returncode != 0:
                return
            deleted = _iptables(containers.isolation_rule("-D", bridge))
            if deleted.returncode != 0:
                log.warning(
                    "removing the iptables rule of a removed network failed",
                    extra={"bridge": bridge, "error": deleted.stderr.strip()},
                )
                return

    async def create(self, spec: ReplicaSpec) -> CreatedReplica:
        await self.prepare()
        return await self._undoable(self._create, spec)

    async def _undoable(self, make: Callable[..., CreatedReplica], *args: Any) -> CreatedReplica:
        """Run `make` in a worker thread; if the caller is cancelled meanwhile, remove
        what it made once it returns (the caller will never know its id)."""
        try:
            future = self._executor.submit(make, *args)
        except RuntimeError:  # after teardown
            raise EngineUnavailable(f"the {self.project} backend is closed") from None
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._remove_made)
            raise

    def _remove_made(self, future: Future[CreatedReplica]) -> None:
        """Done callback (any thread) of a creation whose caller was cancelled."""
        if future.cancelled() or future.exception() is not None:
            return  # never started in its thread, or made nothing (it cleans up after itself)
        created = future.result()
        with contextlib.suppress(RuntimeError):  # torn down: teardown removed them all
            self._executor.submit(self._remove_abandoned, created)

    def _remove_abandoned(self, created: CreatedReplica) -> None:
        try:
            with engine_errors(f"removing {created.name}"):
                self._remove_replica(created.id)
        except EngineUnavailable as exc:
            self._abandoned.add(created.id)
            log.warning(
                "removing a container whose start was cancelled failed; left to the reconcile",
                extra={"container": created.name, "error": str(exc)},
            )
            return
        log.info(
            "a container whose start was cancelled was removed", extra={"container": created.name}
        )

    def _create(self, spec: ReplicaSpec) -> CreatedReplica:
        """A running network sandbox and, joined to it, the replica's container (not started)."""
        replica_id = secrets.token_hex(6)
        name = containers.container_name(self.project, spec.function)
        api = self._api
        with engine_errors(f"creating a replica of {spec.function}"):
            options = self._options
            sandbox = api.create_container(
                host_config=api.create_host_config(
                    **containers.sandbox_host_config_args(
                        self.project, options, debug=spec.debugger is not None
                    )
                ),
                **containers.sandbox_args(spec, self.project, name, options),
            )["Id"]
            try:
                api.start(sandbox)
                self._keep_first()
                attrs = api.inspect_container(sandbox)
                address = self._address(attrs)
                debug_address = (
                    self._address(attrs, containers.DEBUG_PORT) if spec.debugger else None
                )
                host_config = api.create_host_config(
                    **containers.host_config_args(spec, self.project, sandbox, options)
                )
                created = api.create_container(
                    host_config=host_config,
                    **containers.container_args(spec, self.project, name, replica_id),
                )
            except BaseException:
                try:
                    self._remove(sandbox)
                except Exception:
                    self._abandoned.add(sandbox)  # the reconcile's
                raise
        self._sandboxes[created["Id"]] = sandbox
        return CreatedReplica(
            id=created["Id"],
            name=name,
            function=spec.function,
            token=spec.token,
            address=address,
            debug_address=debug_address,
        )

    async def create_warm(self, spec: WarmSpec, token: str) -> CreatedReplica:
        await self.prepare()
        return await self._undoable(self._create_warm, spec, token)

    def _create_warm(self, spec: WarmSpec, token: str) -> CreatedReplica:
        name = containers.warm_name(self.project)
        api = self._api
        options = self._options
        with engine_errors("creating a warm watchdog"):
            created = api.create_container(
                host_config=api.create_host_config(
                    **containers.warm_host_config_args(self.project, spec, options)
                ),
                **containers.warm_args(self.project, spec, token, name, options),
            )
        self._warm_limits[created["Id"]] = spec.limits
        return CreatedReplica(id=created["Id"], name=name, function="", token=token)

    async def assign_warm(self, replica: Replica, spec: ReplicaSpec) -> Replica:
        return await self._call(self._assign_warm, replica, spec)

    def _assign_warm(self, replica: Replica, spec: ReplicaSpec) -> Replica:
        api = self._api
        name = containers.assigned_name(self.project, spec.function, replica.name)
        with engine_errors(f"giving a warm watchdog the limits of {spec.function}"):
            limits = self._warm_limits.pop(replica.id, None)
            if limits != spec.limits and self.profile.enforces_limits:
                # docker-py's update_container knows neither NanoCpus nor PidsLimit.
                if self.profile.podman:
                    response = api._post_json(
                        api._url(
                            f"{containers.LIBPOD_API}/containers/{{0}}/update",
                            replica.id,
                            versioned_api=False,
                        ),
                        data=containers.libpod_limits_update(spec.limits),
                    )
                else:
                    response = api._post_json(
                        api._url("/containers/{0}/update", replica.id),
                        data=containers.limits_update(spec.limits),
                    )
                api._raise_for_status(response)
            self._assigned[replica.id] = spec.function
            api.rename(replica.id, name)
        log.info("warm watchdog assigned", extra={"function": spec.function, "replica": name})
        return dataclasses.replace(replica, name=name, function=spec.function)

    async def start(self, created: CreatedReplica) -> Replica:
        async with self._start_slots:
            return await self._call(self._start, created)

    def _start(self, created: CreatedReplica) -> Replica:
        started = threading.Event()
        self._starting[created.id] = started
        try:
            with engine_errors(f"starting replica {created.name}"):
                try:
                    self._api.start(created.id)
                    self._keep_first()
                    address = created.address or self._address(
                        self._api.inspect_container(created.id)
                    )
                except BaseException:
                    with contextlib.suppress(Exception):  # the caller removes it again
                        self._remove_replica(created.id)
                    raise
        finally:
            started.set()
            self._starting.pop(created.id, None)
        if created.function:
            log.info(
                "replica started", extra={"function": created.function, "replica": created.name}
            )
        else:
            log.info("warm watchdog started", extra={"replica": created.name})
        return Replica(
            id=created.id,
            name=created.name,
            function=created.function,
            address=address,
            token=created.token,
            debug_address=created.debug_address,
        )

    def _address(self, attrs: dict[str, Any], port: int = containers.REPLICA_PORT) -> str:
        """Where the gateway dials container `port` (the watchdog's by default)."""
        if self.published:
            address = containers.published_address(attrs, port)
            if address is None:
                raise EngineUnavailable(f"the engine published no port for {attrs['Name']}")
            return address
        network = attrs["NetworkSettings"]["Networks"][self._network]
        return f"{network['IPAddress']}:{port}"

    async def stop(self, replica_id: str, *, grace: float = 5.0) -> None:
        await self._call(self._stop, replica_id, grace)

    def _stop(self, replica_id: str, grace: float) -> None:
        starting = self._starting.get(replica_id)
        if starting is not None:
            # Its start (a caller cancelled meanwhile) is still with the engine: removing
            # the container under it can leave an endpoint the network never forgets
            # (Docker 20.10 then refuses to remove the network: "active endpoints").
            starting.wait(START_WAIT)
        with engine_errors(f"stopping replica {replica_id[:12]}"):
            with contextlib.suppress(docker.errors.NotFound):
                self._api.stop(replica_id, timeout=max(0, round(grace)))
            self._remove_replica(replica_id)

    def _remove_replica(self, replica_id: str) -> None:
        """The replica's container, then its network sandbox."""
        self._remove(replica_id)
        self._assigned.pop(replica_id, None)
        self._warm_limits.pop(replica_id, None)
        sandbox = self._sandboxes.pop(replica_id, None)
        if sandbox is not None:
            self._remove(sandbox)

    def _remove(self, container_id: str) -> None:
        try:
            self._api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
        self._abandoned.discard(container_id)

    async def memory_usage(self, container_id: str) -> int | None:
        # Not on the engine's worker threads: the stats API takes a second per container.
        return await asyncio.to_thread(self._memory_usage, container_id)

    def _memory_usage(self, container_id: str) -> int | None:
        if not self.profile.enforces_limits:
            # no cgroup of its own (rootless Docker without systemd): the engine's stats
            # would be those of the cgroup it shares with everything else
            return None
        try:
            with engine_errors("measuring a container's memory"):
                pid = self._api.inspect_container(container_id)["State"].get("Pid")
                if pid and not self.profile.remote:
                    measured = memory.cgroup_memory(int(pid), container_id=container_id)
                    if measured is not None:
                        return measured
                stats = self._api.stats(container_id, stream=False)
        except EngineUnavailable:
            return None
        return memory.from_stats(stats.get("memory_stats") or {})

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        return await self._call(self._status, replica_id)

    def _status(self, replica_id: str) -> ReplicaStatus | None:
        with engine_errors(f"inspecting replica {replica_id[:12]}"):
            try:
                attrs = self._api.inspect_container(replica_id)
            except docker.errors.NotFound:
                return None
        return _status_from_inspect(
            attrs, self._function_of(attrs["Id"], attrs["Config"]["Labels"] or {})
        )

    async def replicas(self) -> list[ReplicaStatus]:
        return await self._call(self._list)

    def _list(self) -> list[ReplicaStatus]:
        with engine_errors("listing replicas"):
            found = self._api.containers(
                all=True, filters={"label": f"{containers.LABEL_PROJECT}={self.project}"}
            )
        # Network sandboxes and warm watchdogs are not replicas, until a watchdog is assigned.
        return [
            ReplicaStatus(
                id=c["Id"],
                name=c["Names"][0].lstrip("/") if c.get("Names") else c["Id"][:12],
                function=self._function_of(c["Id"], c.get("Labels") or {}),
                running=c["State"] == "running",
            )
            for c in found
            if containers.LABEL_ROLE not in (c.get("Labels") or {}) or c["Id"] in self._assigned
        ]

    async def containers(self) -> list[ListedContainer]:
        return await self._call(self._containers)

    def _containers(self) -> list[ListedContainer]:
        """Replicas, warm watchdogs and network sandboxes of this project; other roles
        (a deployed gateway's own tasks) are not the backend's to remove."""
        with engine_errors("listing the project's containers"):
            found = self._api.containers(
                all=True, filters={"label": f"{containers.LABEL_PROJECT}={self.project}"}
            )
        owners = {sandbox: replica for replica, sandbox in dict(self._sandboxes).items()}
        listed = []
        for c in found:
            labels = c.get("Labels") or {}
            role = labels.get(containers.LABEL_ROLE, "replica")
            if role not in ("replica", containers.ROLE_WARM, containers.ROLE_SANDBOX):
                continue
            if c["Id"] in self._assigned:
                role = "replica"
            listed.append(
                ListedContainer(
                    id=c["Id"],
                    name=c["Names"][0].lstrip("/") if c.get("Names") else c["Id"][:12],
                    role=role,
                    created=float(c.get("Created") or 0),
                    running=c["State"] == "running",
                    owner=owners.get(c["Id"]),
                    abandoned=c["Id"] in self._abandoned,
                )
            )
        return listed

    def _function_of(self, container_id: str, labels: dict[str, str]) -> str:
        return self._assigned.get(container_id) or labels.get(containers.LABEL_FUNCTION, "?")

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        return await self._call(container_logs.read_logs, self._api, replica_id, tail)

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None:
        container_logs.follow_logs(self._api, replica_id, on_line)

    async def teardown(self) -> int:
        # Work already handed to the engine (a create or start whose caller was
        # cancelled still runs in its thread) must land before we list what to remove.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        return await asyncio.to_thread(self._teardown)

    def _teardown(self) -> int:
        """Remove everything labelled with this project, even what an earlier run left."""
        label = f"{containers.LABEL_PROJECT}={self.project}"
        with engine_errors(f"removing the containers of project {self.project}"):
            found = self._remove_containers(label)
            bridges = {self._bridge} if self._bridge else set()
            for network in self._api.networks(filters={"label": label}):
                if self._bridge:
                    with contextlib.suppress(docker.errors.NotFound):
                        bridges.add(self._interface_of(network["Name"]))
                self._remove_network(network["Id"], label)
        for bridge in sorted(bridges):  # also a rule whose network an earlier run removed
            self._unisolate(bridge)
        self._has_network = False
        self._isolated = None
        self._sandboxes.clear()
        self._assigned.clear()
        self._warm_limits.clear()
        self._abandoned.clear()
        return len(found)

    def _remove_containers(self, label: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._api.containers(all=True, filters={"label": label})
        # network sandboxes last: Podman refuses to remove one while a replica joins it
        for container in sorted(found, key=_is_sandbox):
            self._remove(container["Id"])
        return found

    def _remove_network(self, network_id: str, label: str) -> None:
        """Remove a network once the containers still leaving it are gone: a removal
        already in progress (answered 409 above) may not have finished, and a container
        whose creation the engine finished only now, after the listing, is removed too."""
        deadline = time.monotonic() + NETWORK_REMOVE_WAIT
        while True:
            try:
                self._api.remove_network(network_id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                in_use = any(reason in str(exc) for reason in NETWORK_IN_USE)
                if not in_use or time.monotonic() > deadline:
                    raise
                if self._stale_endpoints(network_id, deadline):
                    return
            time.sleep(0.2)
            self._remove_containers(label)

    def _stale_endpoints(self, network_id: str, deadline: float) -> bool:
        """Docker 20.10 can keep an endpoint of a removed container (moby#42119): the
        network then has no container yet "has active endpoints" for good, until dockerd
        restarts. Once no container of ours is on it for `STALE_AFTER`, that is what it
        is: say so and leave it, rather than fail the whole teardown."""
        try:
            attached = self._api.inspect_network(network_id).get("Containers") or {}
        except docker.errors.NotFound:
            return True
        if attached or time.monotonic() < deadline - NETWORK_REMOVE_WAIT + STALE_AFTER:
            return False
        log.warning(
            "the engine keeps a stale endpoint in this network (a Docker bug, moby#42119): "
            "it is left behind; restarting dockerd frees it",
            extra={"network": network_id[:12]},
        )
        return True


def _iptables(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run an iptables command (in a worker thread); a missing binary is an engine fault."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=IPTABLES_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(
            f"running iptables to keep replicas apart on Podman: {exc}"
        ) from None


def _is_sandbox(listed: dict[str, Any]) -> bool:
    return (listed.get("Labels") or {}).get(containers.LABEL_ROLE) == containers.ROLE_SANDBOX


def _network_gateway(attrs: dict[str, Any]) -> str | None:
    """The gateway address of a network, from its inspect; None when it names none."""
    for config in (attrs.get("IPAM") or {}).get("Config") or ():
        if config.get("Gateway"):
            return str(config["Gateway"]).partition("/")[0]
    return None


def _is_local_address(address: str | None) -> bool:
    """Whether `address` is one of this host's own: only then can it bind to it."""
    if address is None:
        return False
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _status_from_inspect(attrs: dict[str, Any], function: str) -> ReplicaStatus:
    state = attrs["State"]
    return ReplicaStatus(
        id=attrs["Id"],
        name=attrs["Name"].lstrip("/"),
        function=function,
        running=bool(state["Running"]),
        exit_code=None if state["Running"] else int(state["ExitCode"]),
    )
