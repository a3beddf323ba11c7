"""Streamed answers through the gateway versus directly from the replica, side by side.

Serves bench/projects/streaming (one warm replica of each function) and, in
alternating rounds:

- time to first byte of a Server-Sent Events answer: the time from sending the
  request to receiving the first event's bytes, over a kept-alive connection,
  through the gateway and to the replica itself (its address and token);
- throughput of a 1 GiB streamed answer, read by curl into /dev/null.

Prints p50/p99 TTFB and MB/s for both paths and the gateway/direct figures
(targets: TTFB p50 at most +1 ms, throughput at least 0.8x).

    python bench/streaming.py [--calls 400] [--rounds 3] [--mib 1024]
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import docker
from common import direct_address, gateway, replica_containers

SPEC = Path(__file__).resolve().parent / "projects" / "streaming" / "functions.yaml"


def first_byte_times(url: str, path: str, headers: dict[str, str], calls: int) -> list[float]:
    """Seconds from each request to its first body bytes, on one kept-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    times: list[float] = []
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(calls):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            first = response.read1(65536)
            times.append(time.perf_counter() - started)
            rest = response.read()
            if response.status != 200 or b"data:" not in first + rest:
                raise SystemExit(f"{url}{path}: {response.status} {first + rest!r}")
    finally:
        conn.close()
    return times


def throughput(url: str, headers: dict[str, str], mib: int) -> float:
    """MB/s of one streamed answer of `mib` MiB, read by curl."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run(
        [*command, f"{url}?mib={mib}"], capture_output=True, text=True, check=True, timeout=600
    ).stdout.split()
    speed, size = float(out[0]), int(float(out[1]))
    if size != mib << 20:
        raise SystemExit(f"{url}: got {size} bytes of {mib << 20}")
    return speed / 1e6


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is not installed")
    project = f"bench-{uuid.uuid4().hex[:6]}"
    client = docker.from_env()
    ttfb: dict[str, list[float]] = {"gateway": [], "direct": []}
    speed: dict[str, list[float]] = {"gateway": [], "direct": []}
    with gateway(SPEC, project) as url:
        direct: dict[str, tuple[str, str]] = {}
        for name in ("events", "bulk"):
            deadline = time.monotonic() + 120
            while not (found := replica_containers(client, project, name)):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no replica of {name}")
                time.sleep(0.2)
            direct[name] = direct_address(client, found[0]["Id"])
        for round_ in range(1, args.rounds + 1):
            for path in ("gateway", "direct"):
                if path == "gateway":
                    events, bulk, headers = url, f"{url}/function/bulk", {}
                    ev_path = "/function/events"
                else:
                    events, token = direct["events"]
                    bulk_url, bulk_token = direct["bulk"]
                    bulk, ev_path = bulk_url.rstrip("/") + "/", "/"
                    headers = {"X-Faas-Token": token}
                first_byte_times(events, ev_path, headers, 20)  # warm the connection
                ttfb[path] += first_byte_times(events, ev_path, headers, args.calls)
                bulk_headers = {} if path == "gateway" else {"X-Faas-Token": bulk_token}
                speed[path].append(throughput(bulk, bulk_headers, args.mib))
            print(
                f"round {round_}: ttfb p50 gateway {percentile(ttfb['gateway'], 0.5) * 1e3:.2f} ms"
                f" direct {percentile(ttfb['direct'], 0.5) * 1e3:.2f} ms;"
                f" {args.mib} MiB gateway {speed['gateway'][-1]:.0f} MB/s"
                f" direct {speed['direct'][-1]:.0f} MB/s",
                flush=True,
            )
    g50, d50 = percentile(ttfb["gateway"], 0.5) * 1e3, percentile(ttfb["direct"], 0.5) * 1e3
    g99, d99 = percentile(ttfb["gateway"], 0.99) * 1e3, percentile(ttfb["direct"], 0.99) * 1e3
    gs, ds = statistics.median(speed["gateway"]), statistics.median(speed["direct"])
    print()
    print(f"time to first byte, SSE ({len(ttfb['gateway'])} calls each):")
    print(f"  p50  gateway {g50:.2f} ms  direct {d50:.2f} ms  added {g50 - d50:+.2f} ms"
          f"  (target <= +1 ms: {'PASS' if g50 - d50 <= 1 else 'MISS'})")  # fmt: skip
    print(f"  p99  gateway {g99:.2f} ms  direct {d99:.2f} ms  added {g99 - d99:+.2f} ms")
    print(f"streamed {args.mib} MiB, median of {args.rounds}:")
    print(f"  gateway {gs:.0f} MB/s  direct {ds:.0f} MB/s  ratio {gs / ds:.2f}x"
          f"  (target >= 0.8x: {'PASS' if gs / ds >= 0.8 else 'MISS'})")  # fmt: skip


if __name__ == "__main__":
    main()
