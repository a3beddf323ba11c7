"""`faas deploy`: the gateway itself as a Swarm service, so requests can enter on any node.

`faas deploy` builds the function images and a gateway image
(runtime/backends/swarm/gateway_image.py), creates each function's overlay
network, then a service `faas-<project>-gateway` running `faas up --backend
swarm` with `FAAS_SWARM_ADDRESS=overlay`: attached to every function's overlay
network, it reaches their tasks by overlay address. Its port is published
through the routing mesh, so every node of the swarm answers on it and hands
the connection to a gateway task, wherever that runs.

The gateway creates, scales and removes the function services itself, so it
gets the engine's API: the Docker socket is bind-mounted into it. Whoever
controls that socket controls the engine (root on the node, and through Swarm,
every service of the cluster), so the gateway service is exactly as privileged
as the engine: its tasks run only on manager nodes (a worker's engine cannot
manage services anyway), and anything that could take over the gateway process
(a bug in it, a malicious dependency) could take over the node. Function
replicas never get the socket; they stay as hardened as with `faas up`.

State: the admin token is made on the host (`.faas/admin-token`, as for
`faas up`) and handed to the gateway as a Swarm secret (mounted at
/srv/.faas/admin-token, mode 0400), as are the project's stored secrets (at
/srv/.faas/secrets/). The rest of the gateway's `.faas/` (durable queue, API
keys, callback key) lives in a volume per task slot, on the task's node, so
it survives a restart of the task there. The admin API has a listener of its
own on loopback (`gateway.admin_host`, `admin_port`), inside the gateway's
container: `docker exec <container> python3 -m faas ls` talks to it.

Limits: the gateway image is not pushed anywhere, so gateway tasks are pinned
to the node that built it; with the default SQLite queue each gateway task
keeps its own queue (use `cluster.queue: nats` for several replicas sharing
work); `gateway.tls` is refused (terminate TLS in front of the published port).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from faas import state
from faas.cli_common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    errors,
    fail,
    file_option,
    load,
    project_option,
)
from runtime.errors import EngineUnavailable, FaasError
from runtime.spec import Project

DEFAULT_TIMEOUT = 180.0
REMOVE_TIMEOUT = 60.0
CRASH_LIMIT = 3
"""Failed gateway tasks of the new image after which waiting stops."""
ProgressFn = Callable[[str, str, float | None], None]
"""(task, message, fraction done or None), as faas.console.ProgressDisplay takes."""


@click.command()
@file_option
@project_option
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port every node of the swarm answers on (the routing mesh).",
)
@click.option(
    "--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Gateway tasks."
)
@click.option(
    "--remove",
    is_flag=True,
    help="Remove the deployed gateway, then the project's services, networks, secrets, volumes.",
)
@click.option(
    "--publish-mode",
    type=click.Choice(["auto", "ingress", "host"]),
    default="auto",
    show_default=True,
    help="ingress: the routing mesh, every node answers; host: only nodes running a gateway "
    "task. auto: ingress when this host's kernel has IPVS (the mesh needs it), else host.",
)
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the gateway to answer.",
)
@click.option(
    "--backend",
    type=click.Choice(["swarm"]),
    default="swarm",
    show_default=True,
    help="Where the deployed gateway and its replicas run: Swarm is the one backend that "
    "can run the gateway as a service.",
)
def deploy(
    spec_file: Path,
    project: str | None,
    port: int,
    replicas: int,
    remove: bool,
    publish_mode: str,
    timeout: float,
    backend: str,
) -> None:
    """Run the gateway as a Docker Swarm service, published on every node.

    Builds the function images and a gateway image (reused while nothing
    changes), then starts the service `faas-<project>-gateway` and waits until
    it answers. Run it on a Swarm manager. The gateway gets the Docker socket:
    it is as privileged as the engine (see README, "Running on more than one
    machine").

    \b
    Examples:
      faas deploy --backend swarm      build, deploy, print the URL
      faas deploy --port 9000 --replicas 2
      faas deploy --remove             remove the gateway and every function service
    """
    from faas import logging_setup

    logging_setup.configure("warning")
    loaded = load(spec_file, project)
    try:
        if remove:
            removed = remove_gateway(loaded)
            errors.print(
                f"project {loaded.name}: removed the gateway ({removed.gateway_tasks} task(s)), "
                f"{removed.replicas} replica(s), the networks, secrets and "
                f"{removed.volumes} volume(s)",
                highlight=False,
            )
            return
        from faas.console import ProgressDisplay
        from runtime.backends.swarm.gateway_image import default_publish_mode

        if publish_mode == "auto":
            publish_mode = default_publish_mode()
            if publish_mode == "host":
                errors.print(
                    "[yellow]warning:[/] this kernel has no IPVS, which the Swarm routing mesh "
                    f"needs: port {port} is published on the gateway's node only (mode host)",
                    highlight=False,
                )
        started = time.monotonic()
        with ProgressDisplay(f"Deploying project {loaded.name} to the swarm") as progress:
            url = asyncio.run(
                deploy_gateway(
                    loaded, spec_file, port=port, replicas=replicas, progress=progress,
                    publish_mode=publish_mode, ready_timeout=timeout,
                )
            )  # fmt: skip
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except FaasError as exc:
        fail(str(exc), EXIT_FAILED)
    elapsed = time.monotonic() - started
    errors.print(
        f"[bold green]Gateway ready[/] on {url} "
        f"({'every node of the swarm' if publish_mode == 'ingress' else 'this node'}, "
        f"port {port}) in {elapsed:.1f} s",
        highlight=False,
    )
    for name in loaded.functions:
        errors.print(f"  {url}/function/{name}", highlight=False)
    errors.print(
        "  admin API (loopback inside the gateway): docker exec $(docker ps -q -f "
        f"label=faas.role=gateway -f label=faas.project={loaded.name} | head -1) "
        "python3 -m faas ls",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    click.echo(url)


async def deploy_gateway(
    project: Project,
    spec_file: Path,
    *,
    port: int,
    replicas: int,
    progress: ProgressFn,
    publish_mode: str = "ingress",
    ready_timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Build, create or update the gateway service, wait until it answers; returns its URL."""
    from runtime.backends import create_backend
    from runtime.platform import Platform

    backend = create_backend("swarm", project.name, registry=project.cluster.registry)
    platform = Platform(project, backend)
    try:
        await platform.build(progress)  # also checks that this engine is a Swarm manager
        failures = [f"{n}: {p.error}" for n, p in platform.pools.items() if p.error]
    finally:
        # Not platform.shutdown(): that tears down the project's services.
        await platform.client.close()
        await backend.close()
    if failures:
        raise FaasError("some functions did not build:\n  " + "\n  ".join(failures))
    return await asyncio.to_thread(
        _deploy, project, spec_file, port, replicas, publish_mode, progress, ready_timeout
    )


def _deploy(
    project: Project,
    spec_file: Path,
    port: int,
    replicas: int,
    publish_mode: str,
    progress: ProgressFn,
    timeout: float,
) -> str:
    from runtime import requirements
    from runtime.backends.base import ImageRequest
    from runtime.backends.docker import images
    from runtime.backends.docker.engine import connect, engine_errors
    from runtime.backends.swarm import gateway_image, services
    from runtime.spec import DEFAULT_BASE_IMAGE

    api = connect()
    try:
        progress("gateway", "resolving the gateway's dependencies (pip, on this host)", None)
        deps = gateway_image.resolve_gateway_requirements(requirements.resolve)
        base = DEFAULT_BASE_IMAGE
        with engine_errors(f"preparing base image {base}"):
            images.ensure_base_image(api, base, lambda m, f: progress("gateway", m, f))
            base_id = images.image_id(api, base)
        assert base_id is not None
        progress("gateway", "assembling the gateway image", None)
        request: ImageRequest = gateway_image.plan_gateway_image(
            project, spec_file, base_id, deps, requirements.resolve
        )
        with engine_errors(f"building image {request.tag}"):
            built = images.build_function_image(
                api, request, lambda m, f: progress("gateway", m, f)
            )
        progress("gateway", f"{'built' if built else 'up to date:'} {request.tag}", 1.0)

        with engine_errors("creating the functions' overlay networks"):
            for function in project.functions:
                args = services.network_args(project.name, function)
                if not any(n["Name"] == args["name"] for n in api.networks(names=[args["name"]])):
                    api.create_network(**args)
            progress("networks", f"{len(project.functions)} overlay network(s)", 1.0)
            secrets = _secrets(api, project)
            swarm = api.info().get("Swarm") or {}
            wanted = gateway_image.service_args(
                project.name,
                request.tag,
                functions=list(project.functions),
                port=port,
                replicas=replicas,
                secrets=secrets,
                node_id=swarm.get("NodeID"),  # its image is on this node only
                publish_mode=publish_mode,
            )
            wanted["task_template"]["ContainerSpec"]["Env"].append(f"FAAS_PROJECT={project.name}")
            name = wanted["name"]
            existing = _service(api, name)
            if existing is None:
                api.create_service(**wanted)
                progress("service", f"created {name}", 1.0)
            else:
                api.update_service(existing["ID"], existing["Version"]["Index"], **wanted)
                progress("service", f"updated {name}", 1.0)
        return _wait_ready(api, name, request.tag, replicas, port, progress, timeout)
    finally:
        api.close()


def _secrets(api: Any, project: Project) -> dict[str, tuple[str, str]]:
    """Path in the container -> Swarm (id, name): the admin token and the stored secrets."""
    from runtime.backends.docker import containers
    from runtime.backends.swarm import gateway_image, services
    from runtime.secrets import SecretMissing, SecretStore

    token = state.admin_token(project.root, create=True)
    assert token is not None
    values = {f"{gateway_image.STATE_DIR}/admin-token": ("admin-token", token.encode())}
    store = SecretStore(state.state_dir(project.root))
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
    for name in sorted(names):
        with contextlib.suppress(SecretMissing):  # the gateway reports it, as `faas up` does
            values[f"{gateway_image.STATE_DIR}/secrets/{name}"] = (name, store.get(name))
    found: dict[str, tuple[str, str]] = {}
    for target, (name, content) in values.items():
        swarm_name = services.secret_name(project.name, name, content)
        existing = [s for s in api.secrets(filters={"name": swarm_name})]
        match = next((s for s in existing if s["Spec"]["Name"] == swarm_name), None)
        if match is None:
            match = api.create_secret(
                swarm_name, content, labels={containers.LABEL_PROJECT: project.name}
            )
        found[target] = (str(match["ID"]), swarm_name)
    return found


def _service(api: Any, name: str) -> dict[str, Any] | None:
    import docker.errors

    try:
        found: dict[str, Any] = api.inspect_service(name)
    except docker.errors.NotFound:
        return None
    return found


def _wait_ready(
    api: Any,
    name: str,
    image: str,
    replicas: int,
    port: int,
    progress: ProgressFn,
    timeout: float,
) -> str:
    """Until `replicas` tasks of the new image run and /healthz answers through the mesh."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    last_error = ""
    progress("gateway", "waiting for the gateway's task", 0.0)
    with httpx.Client(trust_env=False, timeout=2.0) as client:
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
            if len(running) >= replicas:
                progress("gateway", "task running; waiting for GET /healthz", 0.5)
                try:
                    if client.get(url + "/healthz").status_code == 200:
                        progress("gateway", f"answering on {url}", 1.0)
                        return url
                except httpx.HTTPError:
                    pass
            else:
                states = ", ".join(sorted(t["Status"]["State"] for t in current)) or "none yet"
                progress("gateway", f"tasks: {states}", 0.2)
            time.sleep(0.5)
    detail = f" (last task error: {last_error})" if last_error else ""
    logs = _service_logs(api, name)
    late = time.monotonic() >= deadline
    what = f"did not answer within {timeout:.0f} s" if late else "kept failing"
    raise FaasError(
        f"the gateway {what} on {url}/healthz{detail}"
        + (f"; its last output:\n{logs}" if logs else "")
        + f"\n(`faas deploy --remove -f ... --project ...` removes it; "
        f"`docker service ps {name} --no-trunc` shows its tasks)"
    )


def _service_logs(api: Any, name: str) -> str:
    with contextlib.suppress(Exception):
        raw = api.service_logs(name, stdout=True, stderr=True, tail=15)
        return b"".join(raw).decode(errors="replace").strip()
    return ""


@dataclass(frozen=True)
class Removed:
    gateway_tasks: int
    replicas: int
    volumes: int


def remove_gateway(project: Project) -> Removed:
    """Remove the gateway service, then the project's services, networks, secrets, volumes."""
    import docker.errors

    from runtime.backends import create_backend
    from runtime.backends.docker import containers
    from runtime.backends.docker.engine import connect, engine_errors
    from runtime.backends.swarm import gateway_image

    label = f"{containers.LABEL_PROJECT}={project.name}"
    gateway_label = [label, f"{containers.LABEL_ROLE}={gateway_image.ROLE}"]
    api = connect()
    try:
        with engine_errors(f"removing the gateway of project {project.name}"):
            name = gateway_image.service_name(project.name)
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
        gateway_tasks = sum(1 for t in tasks if t["Status"]["State"] == "running")

        async def teardown() -> int:
            backend = create_backend("swarm", project.name)
            try:
                return await backend.teardown()
            finally:
                await backend.close()

        replicas = asyncio.run(teardown())
        with engine_errors(f"removing the volumes of project {project.name}"):
            _until(lambda: not api.containers(all=True, filters={"label": label}), REMOVE_TIMEOUT)
            volumes = 0
            deadline = time.monotonic() + REMOVE_TIMEOUT
            while True:
                left = api.volumes(filters={"label": label}).get("Volumes") or []
                for volume in left:
                    try:
                        api.remove_volume(volume["Name"])
                        volumes += 1
                    except docker.errors.NotFound:
                        pass
                    except docker.errors.APIError:  # in use: its container is still going
                        continue
                if not api.volumes(filters={"label": label}).get("Volumes"):
                    break
                if time.monotonic() > deadline:
                    raise FaasError(f"volumes of project {project.name} are still in use")
                time.sleep(0.5)
        return Removed(gateway_tasks, replicas, volumes)
    finally:
        api.close()


def _until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False
