"""The gateway itself as a Swarm service (`faas deploy`), so requests can enter on any node.

`deploy_gateway` builds the function images (pushed when `cluster.registry` is set)
and a gateway image (gateway_image.py), creates each function's overlay network,
then a service `faas-<project>-gateway` running `faas up --backend swarm` with
`FAAS_SWARM_ADDRESS=overlay`: attached to every function's overlay network, it
reaches their tasks by overlay address. Its port is published through the routing
mesh, so every node of the swarm answers on it and hands the connection to a
gateway task, wherever that runs.

The gateway creates, scales and removes the function services itself, so it
gets the engine's API: the Docker socket is bind-mounted into it. Whoever
controls that socket controls the engine (root on the node, and through Swarm,
every service of the cluster), so the gateway service is exactly as privileged
as the engine: its tasks run only on manager nodes (a worker's engine cannot
manage services anyway), and anything that could take over the gateway process
(a bug in it, a malicious dependency) could take over the node. Function
replicas never get the socket; they stay as hardened as with `faas up`.

State: the admin token (made by the caller, `.faas/admin-token` as for `faas up`)
is handed to the gateway as a Swarm secret (mounted at /srv/.faas/admin-token,
mode 0400), as are the project's stored secrets (at /srv/.faas/secrets/). The
rest of the gateway's `.faas/` (durable queue, API keys, callback key) lives in a
volume per task slot, on the task's node, so it survives a restart of the task
there. The admin API has a listener of its own on loopback (`gateway.admin_host`,
`admin_port`), inside the gateway's container: `docker exec <container> python3 -m
faas ls` talks to it.

Where gateway tasks run: on manager nodes. With `cluster.registry` set, the gateway
image is pushed there like the functions' and any manager can run a gateway task;
without one, its tasks are pinned to the node that built it. With the default
SQLite queue each gateway task keeps its own queue (use `cluster.queue: nats` for
several replicas sharing work);
`gateway.tls` is refused (terminate TLS in front of the published port).

The function images are built here with the backend's image verbs, not through a
`Platform`: deploying needs the images only, not pools, a replica client or an
autoscaler. They are planned by runtime/images.py exactly as `faas build` plans
them, so the gateway inside finds them by the same tags. Engine calls block; the
two entry points run them in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker.errors
from docker.api.client import APIClient

from runtime import requirements
from runtime.backends.base import ImageRequest, ProgressCallback
from runtime.backends.docker import containers, images
from runtime.backends.docker.engine import connect, engine_errors
from runtime.backends.swarm import SwarmBackend, gateway_image, services, warm
from runtime.backends.swarm.gateway_image import default_publish_mode
from runtime.backends.swarm.registry import push_image
from runtime.errors import FaasError
from runtime.images import plan_image, plan_warm_image, requirements_target
from runtime.secrets import SecretMissing, SecretStore
from runtime.spec import DEFAULT_BASE_IMAGE, Project, placeholder_values
from runtime.warm_kinds import requirements_files

__all__ = [
    "DEFAULT_TIMEOUT",
    "DeployProgress",
    "GatewayOptions",
    "Removed",
    "default_publish_mode",
    "deploy_gateway",
    "remove_gateway",
]

DEFAULT_TIMEOUT = 180.0
REMOVE_TIMEOUT = 60.0
CRASH_LIMIT = 3
"""Failed gateway tasks of the new image after which waiting stops."""
BUILD_PARALLELISM = 4
DeployProgress = Callable[[str, str, float | None], None]
"""(task, message, fraction done or None), as faas.console.ProgressDisplay takes; called
from worker threads too."""


@dataclass(frozen=True)
class GatewayOptions:
    port: int = 8080
    """Published on every node (`ingress`) or on the gateway's node (`host`)."""
    replicas: int = 1
    publish_mode: str = "ingress"
    """`ingress` (the routing mesh) or `host`; `default_publish_mode()` picks for this host."""
    ready_timeout: float = DEFAULT_TIMEOUT
    """Seconds to wait for the new gateway to answer GET /healthz."""


@dataclass(frozen=True)
class Removed:
    gateway_tasks: int
    replicas: int
    volumes: int


async def deploy_gateway(
    project: Project,
    spec_file: Path,
    options: GatewayOptions,
    *,
    admin_token: str,
    secrets: SecretStore,
    progress: DeployProgress,
) -> list[str]:
    """Build, create or update the gateway service, wait until it answers; returns its
    URLs (one per node that runs a gateway task).

    `secrets` is the project's secret store: the values the gateway needs go to it as
    Swarm secrets. Raises FaasError when a function's image does not build or the
    gateway does not answer, EngineUnavailable when the engine fails or is no manager.
    """
    backend = SwarmBackend(
        project.name, registry=project.cluster.registry, placement=project.cluster.placement
    )
    try:
        failures = await build_function_images(backend, project, progress)
    finally:
        await backend.close()
    if failures:
        raise FaasError("some functions did not build:\n  " + "\n  ".join(failures))
    return await asyncio.to_thread(
        _deploy, project, spec_file, options, admin_token, secrets, progress
    )


async def build_function_images(
    backend: SwarmBackend, project: Project, progress: DeployProgress
) -> list[str]:
    """Every function's image as `faas build` makes it; returns `function: why` of those
    that did not build. Engine failures (no manager, no base image) raise."""
    await backend.prepare()  # checks that this engine is a Swarm manager
    base_ids: dict[str, str] = {}
    for base in sorted({function.base_image for function in project.functions.values()}):
        await backend.ensure_base_image(base, _task(progress, "base"))
        found = await backend.image_id(base)
        assert found is not None  # ensure_base_image made it
        base_ids[base] = found
        await backend.push_base_image(base, _task(progress, "base"))
    limit = asyncio.Semaphore(BUILD_PARALLELISM)
    failures: list[str] = []

    async def build(name: str) -> None:
        function = project.functions[name]
        async with limit:
            try:
                base_id = base_ids[function.base_image]
                target = await requirements_target(backend, base_id)
                request = await asyncio.to_thread(
                    plan_image,
                    project,
                    function,
                    base_id,
                    functools.partial(requirements.resolve, target=target),
                    interpreter=target.interpreter,
                )
                built = await backend.build_image(request, _task(progress, name))
            except FaasError as exc:
                failures.append(f"{name}: {exc}")
                progress(name, f"failed: {exc}", 1.0)
                return
        progress(name, f"{'built' if built else 'up to date:'} {request.tag}", 1.0)
        if project.gateway.warm_tasks and function.isolation == "container":
            warm_image = plan_warm_image(
                base_id, requirements_files(request.code), function.system_packages
            )
            warm_requests.setdefault(warm_image.tag, warm_image)

    warm_requests: dict[str, ImageRequest] = {}
    await asyncio.gather(*(build(name) for name in project.functions))
    # The warm services' images (runtime/supply/warm_tasks.py), one per kind: a gateway
    # inside the swarm takes them from the registry as it takes the functions' images.
    for tag, warm_image in sorted(warm_requests.items()):
        try:
            built = await backend.build_image(warm_image, _task(progress, "warm"))
        except FaasError as exc:
            progress("warm", f"failed, functions start on their own services: {exc}", 1.0)
            continue
        progress("warm", f"{'built' if built else 'up to date:'} {tag}", 1.0)
    return sorted(failures)


async def remove_gateway(project: Project) -> Removed:
    """Remove the gateway service, then the project's services, networks, secrets, volumes."""
    api, _ = connect()
    try:
        gateway_tasks = await asyncio.to_thread(_remove_service, api, project.name)
        backend = SwarmBackend(project.name)
        try:
            replicas = await backend.teardown()
        finally:
            await backend.close()
        volumes = await asyncio.to_thread(_remove_volumes, api, project.name)
        return Removed(gateway_tasks, replicas, volumes)
    finally:
        api.close()


# -- deploying, in a thread ------------------------------------------------------------


def _deploy(
    project: Project,
    spec_file: Path,
    options: GatewayOptions,
    admin_token: str,
    store: SecretStore,
    progress: DeployProgress,
) -> list[str]:
    api, _ = connect()
    try:
        tag = _build_gateway_image(api, project, spec_file, progress)
        pushed = project.cluster.registry is not None
        if project.cluster.registry is not None:
            tag = push_image(api, project.cluster.registry, tag, _task(progress, "gateway"))
        with engine_errors("creating the functions' overlay networks"):
            for function in project.functions:
                args = services.network_args(project.name, function)
                if not any(n["Name"] == args["name"] for n in api.networks(names=[args["name"]])):
                    api.create_network(**args)
            warm_tasks = project.gateway.warm_tasks > 0
            if warm_tasks:  # the warm services' network (warm.py), which the gateway joins
                args = warm.warm_network_args(project.name)
                if not any(n["Name"] == args["name"] for n in api.networks(names=[args["name"]])):
                    api.create_network(**args)
            progress("networks", f"{len(project.functions)} overlay network(s)", 1.0)
            secrets = _ensure_secrets(api, project, admin_token, store)
            swarm = api.info().get("Swarm") or {}
            wanted = gateway_image.service_args(
                project.name,
                tag,
                functions=list(project.functions),
                port=options.port,
                replicas=options.replicas,
                secrets=secrets,
                node_id=None if pushed else swarm.get("NodeID"),  # else only here
                publish_mode=options.publish_mode,
                variables=placeholder_values(project),
                warm=warm_tasks,
            )
            name = wanted["name"]
            existing = _service(api, name)
            if existing is None:
                api.create_service(**wanted)
                progress("service", f"created {name}", 1.0)
            else:
                api.update_service(existing["ID"], existing["Version"]["Index"], **wanted)
                progress("service", f"updated {name}", 1.0)
        return _wait_ready(api, name, tag, options, progress)
    finally:
        api.close()


def _build_gateway_image(
    api: APIClient, project: Project, spec_file: Path, progress: DeployProgress
) -> str:
    report = _task(progress, "gateway")
    report("resolving the gateway's dependencies (pip, on this host)", None)
    deps = gateway_image.resolve_gateway_requirements(requirements.resolve)
    base = DEFAULT_BASE_IMAGE
    with engine_errors(f"preparing base image {base}"):
        images.ensure_base_image(api, base, report)
        base_id = images.image_id(api, base)
    assert base_id is not None
    report("assembling the gateway image", None)
    request = gateway_image.plan_gateway_image(
        project, spec_file, base_id, deps, requirements.resolve
    )
    with engine_errors(f"building image {request.tag}"):
        built = images.build_function_image(api, request, report)
    report(f"{'built' if built else 'up to date:'} {request.tag}", 1.0)
    return request.tag


def _ensure_secrets(
    api: APIClient, project: Project, admin_token: str, store: SecretStore
) -> dict[str, tuple[str, str]]:
    """Path in the container -> Swarm (id, name): the admin token and the stored secrets."""
    values = {f"{gateway_image.STATE_DIR}/admin-token": ("admin-token", admin_token.encode())}
    for name in sorted(_gateway_secret_names(project, store)):
        with contextlib.suppress(SecretMissing):  # the gateway reports it, as `faas up` does
            values[f"{gateway_image.STATE_DIR}/secrets/{name}"] = (name, store.get(name))
    found: dict[str, tuple[str, str]] = {}
    for target, (name, content) in values.items():
        swarm_name = services.secret_name(project.name, name, content)
        existing = api.secrets(filters={"name": swarm_name})
        match = next((s for s in existing if s["Spec"]["Name"] == swarm_name), None)
        if match is None:
            match = api.create_secret(
                swarm_name, content, labels={containers.LABEL_PROJECT: project.name}
            )
        found[target] = (str(match["ID"]), swarm_name)
    return found


def _gateway_secret_names(project: Project, store: SecretStore) -> set[str]:
    """Every secret the gateway may read: the store's, and those functions.yaml names."""
    names = set(store.names())
    for function in project.functions.values():
        names.update(function.secrets)
        names.update(r.webhook_secret for r in function.routes if r.webhook_secret)
        if function.callback_secret:
            names.add(function.callback_secret)
    if project.gateway.callback_secret:
        names.add(project.gateway.callback_secret)
    if project.gateway.jwt is not None and project.gateway.jwt.secret:
        names.add(project.gateway.jwt.secret)
    return names


def _service(api: APIClient, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = api.inspect_service(name)
    except docker.errors.NotFound:
        return None
    return found


def _wait_ready(
    api: APIClient, name: str, image: str, options: GatewayOptions, progress: DeployProgress
) -> list[str]:
    """Until `replicas` tasks of the new image run and each answers GET /healthz on its
    node's address; returns those URLs (`http://ADDRESS:PORT`, one per node)."""
    deadline = time.monotonic() + options.ready_timeout
    urls: list[str] = []
    last_error = ""
    progress("gateway", "waiting for the gateway's task", 0.0)
    while time.monotonic() < deadline:
        tasks = api.tasks(filters={"service": name, "desired-state": "running"})
        current = [t for t in tasks if t["Spec"]["ContainerSpec"]["Image"] == image]
        running = [t for t in current if t["Status"]["State"] == "running"]
        failed = [
            task
            for task in api.tasks(filters={"service": name})
            if task["Status"]["State"] in ("failed", "rejected")
            and task["Spec"]["ContainerSpec"]["Image"] == image
        ]
        if failed:
            last_error = failed[-1]["Status"].get("Err") or failed[-1]["Status"]["State"]
        if len(failed) >= CRASH_LIMIT:
            break  # a crash loop: say so now rather than at the timeout
        if len(running) >= options.replicas:
            urls = sorted({_node_url(api, task["NodeID"], options.port) for task in running})
            progress("gateway", f"task(s) running; waiting for GET /healthz on {urls}", 0.5)
            if all(_healthy(url) for url in urls):
                progress("gateway", f"answering on {', '.join(urls)}", 1.0)
                return urls
        else:
            states = ", ".join(sorted(t["Status"]["State"] for t in current)) or "none yet"
            progress("gateway", f"tasks: {states}", 0.2)
        time.sleep(0.5)
    detail = f" (last task error: {last_error})" if last_error else ""
    logs = _service_logs(api, name)
    late = time.monotonic() >= deadline
    what = f"did not answer within {options.ready_timeout:.0f} s" if late else "kept failing"
    where = ", ".join(f"{url}/healthz" for url in urls) or f"port {options.port}"
    raise FaasError(
        f"the gateway {what} on {where}{detail}"
        + (f"; its last output:\n{logs}" if logs else "")
        + f"\n(`faas deploy --remove -f ... --project ...` removes it; "
        f"`docker service ps {name} --no-trunc` shows its tasks)"
    )


def _node_url(api: APIClient, node_id: str, port: int) -> str:
    """Where a gateway task on `node_id` answers: the address the node advertises."""
    address = str(api.inspect_node(node_id)["Status"].get("Addr") or "")
    if address in ("", "0.0.0.0") or address.startswith("127."):
        address = "127.0.0.1"
    return f"http://{address}:{port}"


def _healthy(url: str) -> bool:
    """GET /healthz at `url` answers 200 (no proxy is consulted)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2.0)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _service_logs(api: APIClient, name: str) -> str:
    with contextlib.suppress(Exception):
        raw = api.service_logs(name, stdout=True, stderr=True, tail=15)
        return b"".join(raw).decode(errors="replace").strip()
    return ""


# -- removing, in a thread -------------------------------------------------------------


def _remove_service(api: APIClient, project: str) -> int:
    """Remove the gateway service and wait for its containers; returns its running tasks."""
    label = f"{containers.LABEL_PROJECT}={project}"
    gateway_label = [label, f"{containers.LABEL_ROLE}={gateway_image.ROLE}"]
    with engine_errors(f"removing the gateway of project {project}"):
        name = gateway_image.service_name(project)
        service = _service(api, name)
        tasks = api.tasks(filters={"service": name}) if service else []
        if service is not None:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(service["ID"])
        # Its secrets and networks are in use until its containers are gone.
        _until(
            lambda: not api.containers(all=True, filters={"label": gateway_label}),
            gateway_image.STOP_GRACE + 15,
        )
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


def _remove_volumes(api: APIClient, project: str) -> int:
    """Once the project's containers are gone, remove its volumes; returns how many."""
    label = f"{containers.LABEL_PROJECT}={project}"
    with engine_errors(f"removing the volumes of project {project}"):
        _until(lambda: not api.containers(all=True, filters={"label": label}), REMOVE_TIMEOUT)
        volumes = 0
        deadline = time.monotonic() + REMOVE_TIMEOUT
        while True:
            for volume in api.volumes(filters={"label": label}).get("Volumes") or []:
                try:
                    api.remove_volume(volume["Name"])
                    volumes += 1
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:  # in use: its container is still going
                    continue
            if not api.volumes(filters={"label": label}).get("Volumes"):
                return volumes
            if time.monotonic() > deadline:
                raise FaasError(f"volumes of project {project} are still in use")
            time.sleep(0.5)


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def _task(progress: DeployProgress, task: str) -> ProgressCallback:
    def report(message: str, fraction: float | None) -> None:
        progress(task, message, fraction)

    return report
