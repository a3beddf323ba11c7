"""`faas up` as a lifecycle: startup (bind, deploy), main loop (serve), shutdown (clean up).

Signals are handled here for the whole lifetime, not only while uvicorn
serves: Ctrl-C or SIGTERM during an image build or while serving both end in
the same shutdown, which removes every container and network of the project.
A second Ctrl-C makes uvicorn drop open connections at once; the clean-up
still runs.

Two listeners, each its own uvicorn server on one event loop: the functions'
(`gateway.host:port`) and the admin API's (`gateway.admin_host:admin_port`),
so that which socket took a connection is what makes it an admin connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from faas import state
from faas.cluster import open_shared
from faas.console import ProgressDisplay
from faas.reload import DevReloader
from faas.terminal import ReplicaPrinter
from gateway.app import ALL_METHODS, Security, create_gateway
from gateway.keys import KeyStore
from gateway.limits import admin_limits, function_limits, raise_descriptor_limit
from gateway.protocol import GatewayProtocol, protocol_for
from runtime.backends import checked_backend
from runtime.debug_relay import DEFAULT_PORT as DEFAULT_DEBUG_PORT
from runtime.errors import FaasError
from runtime.events.service import EventService
from runtime.loghub import HubHandler, redact_log_records
from runtime.platform import Platform
from runtime.secrets import SecretStore
from runtime.spec import DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE, Project
from runtime.supply import shares_replicas

log = logging.getLogger("faas.up")


class GatewayServer(uvicorn.Server):
    before_shutdown: Callable[[], Awaitable[None]] | None = None
    """Run before uvicorn's own shutdown: open WebSockets close with 1001, not its 1012."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # serve_platform owns signal handling

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.before_shutdown is not None:
            await self.before_shutdown()
        await super().shutdown(sockets)


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


def largest_message(project: Project) -> int:
    """The WebSocket server's message limit: the largest `max_message_size` of a
    `websocket: true` function (each socket is held to its own function's below it), so
    no client makes the gateway buffer more than a function could take. The server reads
    it for each new connection: a reload that raises it applies to sockets opened after."""
    sizes = [f.max_message_size for f in project.functions.values() if f.websocket]
    return min(MAX_MESSAGE_SIZE, max(sizes, default=DEFAULT_MAX_MESSAGE_SIZE))


def listener(
    app: Any, protocol: type[GatewayProtocol], project: Project, *, websockets: bool = False
) -> GatewayServer:
    """One uvicorn server for one listener: `protocol` carries its limits; `websockets`:
    it takes WebSocket upgrades (else an Upgrade is served as a plain request)."""
    tls = project.gateway.tls
    return GatewayServer(
        uvicorn.Config(
            app,
            http=protocol,
            ws="websockets-sansio" if websockets else "none",  # gateway/websocket.py
            ws_max_size=largest_message(project),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            server_header=False,
            ssl_certfile=str(project.root / tls.cert_file) if tls else None,
            ssl_keyfile=str(project.root / tls.key_file) if tls else None,
        )
    )


async def serve_platform(
    project: Project,
    *,
    host: str,
    port: int,
    admin_port: int | None = None,
    backend_name: str = "docker",
    dev: bool = False,
    on_ready: Callable[[Platform, str, str], None] | None = None,
    adjust: Callable[[Project], Project] | None = None,
    debug_port: int = DEFAULT_DEBUG_PORT,
) -> None:
    """Serve `project` until SIGINT/SIGTERM; `dev` mounts code and reloads on every save.

    `on_ready(platform, url, admin_url)` once both listeners are bound and deployed;
    `adjust` is applied to each functions.yaml loaded while serving (what the command
    line changed), and may raise SpecError; `debug_port`: the first debugger port.
    """
    state_dir = state.state_dir(project.root)
    token = state.admin_token(project.root, create=True)
    assert token is not None
    security = Security(KeyStore(state_dir), SecretStore(state_dir), token)
    tls = project.gateway.tls
    descriptors = raise_descriptor_limit()
    admin_host = project.gateway.admin_host
    sock = bind(host, port)
    try:
        admin_sock = bind(
            admin_host, project.gateway.admin_port if admin_port is None else admin_port
        )
    except FaasError:
        sock.close()
        raise
    actual_port = sock.getsockname()[1]
    actual_admin_port = admin_sock.getsockname()[1]
    try:
        backend = await checked_backend(project, backend_name)
    except FaasError:
        sock.close()
        admin_sock.close()
        raise
    shared = await open_shared(
        project,
        actual_port,
        coordinate=shares_replicas(backend),
        local_demand=lambda: {
            name: platform.supply.local_demand(pool) for name, pool in platform.pools.items()
        },
    )
    platform = Platform(
        project,
        backend,
        security.secrets,
        dev=dev,
        coordination=shared.coordination,
        debug_port=debug_port,
    )
    platform.logs.echo = ReplicaPrinter()
    hub_handler = HubHandler(platform.logs)
    logging.getLogger("faas").addHandler(hub_handler)
    redact_log_records(platform.redact)  # secret values never reach the gateway's log
    stopping = asyncio.Event()
    events = EventService(platform, state_dir, security.secrets, queue=shared.queue)
    gateway = create_gateway(platform, security, events)
    protocol = protocol_for(
        function_limits(project.gateway, descriptors),
        gateway.function_fast_path,
        frozenset(ALL_METHODS),
    )
    admin_protocol = protocol_for(admin_limits(project.gateway))
    servers = (
        listener(gateway.functions, protocol, project, websockets=True),
        listener(gateway.admin, admin_protocol, project),
    )
    servers[0].before_shutdown = gateway.sockets.close_all

    def reconfigure(new: Project) -> None:
        gateway.reconfigure(new)
        servers[0].config.ws_max_size = largest_message(new)
        protocol.limits = function_limits(new.gateway, descriptors)
        admin_protocol.limits = admin_limits(new.gateway)

    def request_stop() -> None:
        for server in servers:
            if stopping.is_set():
                server.force_exit = True
            server.should_exit = True
        stopping.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    watching: asyncio.Task[None] | None = None
    try:
        with ProgressDisplay(f"Deploying project {project.name}") as progress:
            if not await _until_stopped(platform.deploy(progress), stopping):
                return
        await events.start()  # after deploy: queued work and cron go to built functions
        running = state.GatewayState(
            os.getpid(),
            host,
            actual_port,
            project.name,
            tls is not None,
            admin_host,
            actual_admin_port,
        )
        state.write(project.root, running)
        if on_ready is not None:
            on_ready(platform, running.url, running.admin_url)
        if dev:
            reloader = DevReloader(platform, reconfigure, _log_progress, project.name, adjust)
            watching = asyncio.create_task(reloader.run(stopping))
        if not stopping.is_set():
            await _serve_all([(servers[0], sock), (servers[1], admin_sock)])  # until stopped
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        log.info("shutting down: removing replicas and network", extra={"project": project.name})
        for server in servers:
            server.should_exit = True
        sock.close()
        admin_sock.close()
        await events.close()  # before the platform: deliveries in flight stay leased, not failed
        await shared.close()  # the scaling lease goes at once to another gateway, if any
        # Other gateways keep serving a shared project's services: `faas down` removes them.
        await platform.shutdown(remove_replicas=shared.coordination is None)
        state.clear(project.root, project.name, os.getpid())
        logging.getLogger("faas").removeHandler(hub_handler)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve_all(listeners: list[tuple[GatewayServer, socket.socket]]) -> None:
    """Serve each listener; when one server ends (stopped, or failed), end the others too."""
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in listeners]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server, _ in listeners:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        task.result()  # a server that failed says why


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
