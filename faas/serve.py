"""`faas up` as a lifecycle: startup (bind, deploy), main loop (serve), shutdown (clean up).

Signals are handled here for the whole lifetime, not only while uvicorn
serves: Ctrl-C or SIGTERM during an image build or while serving both end in
the same shutdown, which removes every container and network of the project.
A second Ctrl-C makes uvicorn drop open connections at once; the clean-up
still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from faas import state
from faas.cluster import open_shared
from faas.console import ProgressDisplay
from faas.reload import DevReloader
from faas.terminal import ReplicaPrinter
from gateway.app import ALL_METHODS, Security, create_app
from gateway.keys import KeyStore
from gateway.protocol import protocol_for
from runtime.backends import create_backend
from runtime.backends.base import is_service_backend
from runtime.errors import FaasError
from runtime.events.service import EventService
from runtime.logs import HubHandler
from runtime.platform import Platform
from runtime.secrets import SecretStore
from runtime.spec import Project

log = logging.getLogger("faas.up")


class GatewayServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # serve_platform owns signal handling


EVENT_LOOP_ENV = "FAAS_EVENT_LOOP"


def run(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)`, on uvloop when it is installed (uvicorn[standard] brings it).

    The gateway is one process on one core, so its event loop is on every call's path:
    uvloop's C transports took ~10-20% off the gateway's CPU per proxied call, and
    throughput at 32 connections went from 0.42x to 0.56x of direct-to-replica
    (bench/gateway_overhead.py). FAAS_EVENT_LOOP=asyncio keeps asyncio's own loop.
    """
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if os.environ.get(EVENT_LOOP_ENV) == "asyncio":
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # protocol says TCP, and without it keep-alive responses stall ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FaasError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve_platform(
    project: Project,
    *,
    host: str,
    port: int,
    backend_name: str = "docker",
    dev: bool = False,
    on_ready: Callable[[Platform, str], None] | None = None,
) -> None:
    """Serve `project` until SIGINT/SIGTERM; `dev` mounts code and reloads on every save."""
    state_dir = state.state_dir(project.root)
    token = state.admin_token(project.root, create=True)
    assert token is not None
    security = Security(KeyStore(state_dir), SecretStore(state_dir), token)
    tls = project.gateway.tls
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    backend = create_backend(backend_name, project.name, registry=project.cluster.registry)
    shared = await open_shared(
        project,
        actual_port,
        coordinate=is_service_backend(backend),
        local_demand=lambda: {name: pool.local_demand() for name, pool in platform.pools.items()},
    )
    platform = Platform(
        project, backend, security.secrets, dev=dev, coordination=shared.coordination
    )
    platform.logs.echo = ReplicaPrinter()
    hub_handler = HubHandler(platform.logs)
    logging.getLogger("faas").addHandler(hub_handler)
    stopping = asyncio.Event()
    events = EventService(platform, state_dir, security.secrets, queue=shared.queue)
    app = create_app(platform, security, events)
    protocol = protocol_for(
        app.state.function_app, frozenset(ALL_METHODS), project.gateway.max_header_size
    )
    server = GatewayServer(
        uvicorn.Config(
            app,
            http=protocol,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            server_header=False,
            ssl_certfile=str(project.root / tls.cert_file) if tls else None,
            ssl_keyfile=str(project.root / tls.key_file) if tls else None,
        )
    )

    def request_stop() -> None:
        if stopping.is_set():
            server.force_exit = True
        stopping.set()
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    watching: asyncio.Task[None] | None = None
    try:
        with ProgressDisplay(f"Deploying project {project.name}") as progress:
            if not await _until_stopped(platform.deploy(progress), stopping):
                return
        await events.start()  # after deploy: queued work and cron go to built functions
        url = f"{'https' if tls else 'http'}://{host}:{actual_port}"
        state.write(
            project.root,
            state.GatewayState(os.getpid(), host, actual_port, project.name, tls is not None),
        )
        if on_ready is not None:
            on_ready(platform, url)
        if dev:
            reloader = DevReloader(platform, app.state.reconfigure, _log_progress, project.name)
            watching = asyncio.create_task(reloader.run(stopping))
        if not stopping.is_set():
            await server.serve(sockets=[sock])  # returns once request_stop sets should_exit
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        log.info("shutting down: removing replicas and network", extra={"project": project.name})
        server.should_exit = True
        sock.close()
        await events.close()  # before the platform: deliveries in flight stay leased, not failed
        await shared.close()  # the scaling lease goes at once to another gateway, if any
        # Other gateways keep serving a shared project's services: `faas down` removes them.
        await platform.shutdown(remove_replicas=shared.coordination is None)
        state.clear(project.root, project.name, os.getpid())
        logging.getLogger("faas").removeHandler(hub_handler)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _log_progress(task: str, message: str, fraction: float | None) -> None:
    """Progress of rebuilds while serving: milestones as log lines, next to the reload log."""
    if fraction is None or fraction in (0.0, 1.0):
        log.info(message, extra={"task": task})


async def _until_stopped(work: Coroutine[Any, Any, None], stopping: asyncio.Event) -> bool:
    """Run `work` until it ends or a stop is requested (then cancel it); True if it ended."""
    task = asyncio.create_task(work)
    waiter = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()
        return not stopping.is_set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
