"""`faas deploy`: the gateway itself as a Swarm service, so requests can enter on any node.

The command parses, calls runtime/backends/swarm/deploy.py (which builds the images,
creates or updates the service and waits for it; its docstring says how the deployed
gateway is built, what it is given and why) and prints the result.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from faas import state
from faas.cli_common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    errors,
    fail,
    file_option,
    load,
    project_option,
    refuse_debug,
)
from runtime.errors import EngineUnavailable, FaasError

DEFAULT_TIMEOUT = 180.0
"""runtime.backends.swarm.deploy.DEFAULT_TIMEOUT, without importing the Docker SDK here."""


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
    from faas.console import ProgressDisplay
    from runtime.backends.swarm import deploy as swarm
    from runtime.secrets import SecretStore

    logging_setup.configure("warning")
    loaded = load(spec_file, project)
    if not remove:
        refuse_debug(loaded, spec_file, "`faas deploy` runs it in the cluster")
    try:
        if remove:
            removed = asyncio.run(swarm.remove_gateway(loaded))
            errors.print(
                f"project {loaded.name}: removed the gateway ({removed.gateway_tasks} task(s)), "
                f"{removed.replicas} replica(s), the networks, secrets and "
                f"{removed.volumes} volume(s)",
                highlight=False,
            )
            return
        if publish_mode == "auto":
            publish_mode = swarm.default_publish_mode()
            if publish_mode == "host":
                errors.print(
                    "[yellow]warning:[/] this kernel has no IPVS, which the Swarm routing mesh "
                    f"needs: port {port} is published on the gateway's node only (mode host)",
                    highlight=False,
                )
        options = swarm.GatewayOptions(port, replicas, publish_mode, timeout)
        admin_token = state.admin_token(loaded.root, create=True)
        assert admin_token is not None
        store = SecretStore(state.state_dir(loaded.root))
        started = time.monotonic()
        with ProgressDisplay(f"Deploying project {loaded.name} to the swarm") as progress:
            urls = asyncio.run(
                swarm.deploy_gateway(
                    loaded, spec_file, options, admin_token=admin_token, secrets=store,
                    progress=progress,
                )
            )  # fmt: skip
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except FaasError as exc:
        fail(str(exc), EXIT_FAILED)
    elapsed = time.monotonic() - started
    where = (
        "every node of the swarm answers"
        if publish_mode == "ingress"
        else "the nodes that run a gateway task answer"
    )
    errors.print(
        f"[bold green]Gateway ready[/] on {', '.join(urls)} ({where} on port {port}) "
        f"in {elapsed:.1f} s",
        highlight=False,
    )
    for name in loaded.functions:
        errors.print(f"  {urls[0]}/function/{name}", highlight=False)
    errors.print(
        "  admin API (loopback inside the gateway): docker exec $(docker ps -q -f "
        f"label=faas.role=gateway -f label=faas.project={loaded.name} | head -1) "
        "python3 -m faas ls",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for url in urls:
        click.echo(url)
