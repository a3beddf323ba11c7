"""A debugged function's port on the host's loopback, relayed to debugpy in its replica.

The gateway listens on 127.0.0.1 itself rather than having the engine publish the
replica's debug port: the port is bound (or refused) once at start-up, so it can be
printed and written into an editor's launch configuration, and it stays the same
when the replica is replaced (a new image, a functions.yaml change, a crash), where
a published port would move or collide with the one its predecessor still holds.
Each connection goes to the replica ready at the time, at the address the backend
reported (on the project network, or a port the engine published on 127.0.0.1), so
nothing beyond this host can reach a debugger and no other replica can either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping

from runtime.errors import FaasError
from runtime.pool import FunctionPool

log = logging.getLogger("faas.debug")

HOST = "127.0.0.1"
DEFAULT_PORT = 5678
"""debugpy's conventional port: the first debugged function's, then the next free ones."""
PORTS_TRIED = 100
CONNECT_TIMEOUT = 5.0
CHUNK = 64 * 1024


class DebugRelays:
    """One relay for each debugged function, kept in step with the functions served."""

    def __init__(self, first_port: int = DEFAULT_PORT) -> None:
        self.first_port = first_port
        self.relays: dict[str, DebugRelay] = {}

    def address(self, function: str) -> str | None:
        relay = self.relays.get(function)
        return relay.address if relay is not None else None

    async def sync(self, pools: Mapping[str, FunctionPool]) -> None:
        """Open a relay for each debugged function that has none, in name order (so
        the ports follow the names from `first_port`); close those of the others."""
        for name in [n for n in self.relays if n not in pools or not pools[n].spec.debug]:
            await self.relays.pop(name).close()
        for name, pool in sorted(pools.items()):
            if not pool.spec.debug or name in self.relays:
                continue
            taken = {relay.port for relay in self.relays.values()}
            relay = DebugRelay(name, _ready_debugger(pool))
            await relay.open(bind_debug_port(self.first_port, taken))
            self.relays[name] = relay
            log.info(
                f"debug: {name} listening on {relay.address} (attach with VS Code "
                '"Python: Remote Attach")',
                extra={"function": name},
            )

    async def close(self) -> None:
        await asyncio.gather(*(relay.close() for relay in self.relays.values()))
        self.relays.clear()


def _ready_debugger(pool: FunctionPool) -> Callable[[], str | None]:
    def target() -> str | None:
        found = (h.replica.debug_address for h in pool.replicas if h.replica.debug_address)
        return next(found, None)

    return target


class DebugRelay:
    """Relays connections to 127.0.0.1:`port` to the debug port `target()` names now."""

    def __init__(self, function: str, target: Callable[[], str | None]) -> None:
        self.function = function
        self._target = target
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def open(self, sock: socket.socket) -> None:
        """Serve on `sock`, a listening socket bound to the loopback (`bind_debug_port`)."""
        self._server = await asyncio.start_server(self._accepted, sock=sock)
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            # only `close` cancels it; ending it cancelled would have asyncio's stream
            # server log the cancellation as an error
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = self._target()
        if address is None:
            log.warning(
                "a debugger connected, but no replica is ready yet; attach again in a moment",
                extra={"function": self.function},
            )
            return
        host, _, port = address.rpartition(":")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except (OSError, TimeoutError) as exc:
            log.warning(
                "the replica's debugger did not answer",
                extra={"function": self.function, "error": str(exc) or type(exc).__name__},
            )
            return
        log.info("debugger attached", extra={"function": self.function})
        pipes = [
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        try:
            # either side gone (the editor detached, the replica stopped) ends the session
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            upstream_writer.close()
            log.info("debugger detached", extra={"function": self.function})


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until `source` ends or fails."""
    with contextlib.suppress(OSError):
        while chunk := await source.read(CHUNK):
            sink.write(chunk)
            await sink.drain()


def bind_debug_port(first: int, taken: set[int]) -> socket.socket:
    """A listening socket on the loopback: port `first`, else the next free one not in
    `taken`; `first` 0: any free port."""
    candidates = [0] if first == 0 else [p for p in range(first, first + PORTS_TRIED)]
    for port in candidates:
        if port in taken or port > 65535:
            continue
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart keeps its port
        try:
            sock.bind((HOST, port))
        except OSError:
            sock.close()
            continue
        sock.listen(16)
        sock.setblocking(False)
        return sock
    raise FaasError(f"no free port for a debugger on {HOST} from {first} to {first + PORTS_TRIED}")
