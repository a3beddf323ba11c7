"""WebSocket round trips through the gateway versus directly to the replica, side by side.

Serves bench/projects/websocket (one warm replica of an echo function) and, in
alternating rounds, times one message sent and its echo received on an open socket:

- through the gateway: a WebSocket client (the `websockets` library) on
  ws://gateway/function/echo, i.e. caller -> gateway (RFC 6455) -> tunnel -> replica;
- direct: the replica speaks only the gateway's tunnel (runtime/watchdog/frames.py),
  not RFC 6455, so "direct" is that tunnel driven from a plain socket with the
  replica's address and token: the replica's own cost, without the gateway.

Prints p50/p99 round-trip times for both and the time the gateway adds.

    python bench/websocket.py [--messages 2000] [--rounds 3] [--size 64]
"""

from __future__ import annotations

import argparse
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import docker
from common import direct_address, gateway, replica_containers
from websockets.sync.client import connect

from runtime.watchdog import frames

SPEC = Path(__file__).resolve().parent / "projects" / "websocket" / "functions.yaml"


def through_gateway(url: str, messages: int, payload: str) -> list[float]:
    times: list[float] = []
    with connect(url.replace("http", "ws", 1) + "/function/echo", open_timeout=60) as ws:
        for _ in range(messages):
            started = time.perf_counter()
            ws.send(payload)
            if ws.recv(timeout=30) != payload:
                raise SystemExit("the gateway's echo differs")
            times.append(time.perf_counter() - started)
    return times


def read_frame(sock: socket.socket, decoder: frames.Decoder) -> frames.Frame:
    while (frame := decoder.next()) is None:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("the replica closed the tunnel")
        decoder.feed(data)
    return frame


def direct(address: str, token: str, messages: int, payload: str) -> list[float]:
    parts = urlsplit(address)
    sock = socket.create_connection((parts.hostname or "", parts.port or 8080), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    decoder = frames.Decoder(1 << 20)
    times: list[float] = []
    try:
        sock.sendall(
            f"GET / HTTP/1.1\r\nhost: replica\r\nx-faas-token: {token}\r\n"
            "x-faas-websocket: 1\r\nx-faas-max-message: 1048576\r\n\r\n".encode()
        )
        if read_frame(sock, decoder).kind != frames.ACCEPT:
            raise SystemExit("the replica did not accept the tunnel")
        frame = frames.encode(frames.TEXT, payload.encode())
        for _ in range(messages):
            started = time.perf_counter()
            sock.sendall(frame)
            echoed = read_frame(sock, decoder)
            times.append(time.perf_counter() - started)
            if echoed.payload != payload.encode():
                raise SystemExit("the replica's echo differs")
        sock.sendall(frames.encode_close(1000))
    finally:
        sock.close()
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="bytes per message")
    args = parser.parse_args()
    payload = "x" * args.size
    project = f"bench-{uuid.uuid4().hex[:6]}"
    client = docker.from_env()
    rtt: dict[str, list[float]] = {"gateway": [], "direct": []}
    with gateway(SPEC, project) as url:
        deadline = time.monotonic() + 120
        while not (found := replica_containers(client, project, "echo")):
            if time.monotonic() > deadline:
                raise SystemExit("no replica of echo")
            time.sleep(0.2)
        address, token = direct_address(client, found[0]["Id"])
        through_gateway(url, 50, payload)  # warm both paths
        direct(address, token, 50, payload)
        for round_ in range(1, args.rounds + 1):
            rtt["gateway"] += through_gateway(url, args.messages, payload)
            rtt["direct"] += direct(address, token, args.messages, payload)
            print(
                f"round {round_}: p50 gateway {percentile(rtt['gateway'], 0.5) * 1e3:.3f} ms"
                f" direct {percentile(rtt['direct'], 0.5) * 1e3:.3f} ms",
                flush=True,
            )
    print()
    print(f"WebSocket round trip, {args.size}-byte text messages ({len(rtt['gateway'])} each):")
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        g, d = percentile(rtt["gateway"], q) * 1e3, percentile(rtt["direct"], q) * 1e3
        print(f"  {name}  gateway {g:.3f} ms  direct (tunnel) {d:.3f} ms  added {g - d:+.3f} ms")


if __name__ == "__main__":
    main()
