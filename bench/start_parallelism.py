"""How many container starts to hand the engine at once in a burst (CONCURRENT_STARTS).

For each parallelism k (--levels), N containers (--count) of python:3.11-slim-bookworm
with the replica hardening (runtime/backends/docker/containers.py `_hardening`: read-only,
tmpfs /tmp, no capabilities, no-new-privileges, 128 MiB, 0.5 CPU, pids limit, user
10001) on a bridge network of our own without inter-container traffic, each running a
tiny http.server on 8080, are started with at most k `start` calls in flight (as the
backend's semaphore does); each is polled from the host at its address every 5 ms until
it answers 200. Two variants: "start" creates the containers ahead (untimed), as the warm
path would; "create+start" times the creates too (all issued at once, unbounded like the
backend's), as a burst from zero on the ordinary path does. Levels rotate within each of
--rounds rounds so machine noise hits all alike.

Per level, median over rounds of: first ready and last ready (the burst's makespan), both
from the moment the burst began, and the p50 of each container's own start call issued ->
ready (excluding its wait for a slot). `/k=2` is the makespan as a ratio of k=2's (the
fixed value today). The recommended parallelism is the smallest k whose makespan is within
5% of the best, in both variants: lower is better where makespans tie, since fewer starts
at once make the first replicas of a burst ready sooner.

    python bench/start_parallelism.py [--levels 1,2,3,4,6,8] [--rounds 3] [--count 10]
                                      [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors

from runtime.backends.base import DEFAULT_PIDS, Limits
from runtime.backends.docker.containers import (
    REPLICA_PORT,
    REPLICA_USER,
    EngineOptions,
    _hardening,
)

IMAGE = "python:3.11-slim-bookworm"
PREFIX = "faas-bench-par-"
LABEL = "faas.bench"
LIMITS = Limits(128 * 1024 * 1024, 0.5, DEFAULT_PIDS)
POLL = 0.005
READY_TIMEOUT = 60.0
WITHIN = 1.05
SETTLE = 0.5
"""Seconds of quiet before each timed burst, after the last one's removals and the creates."""
VARIANTS = ("start", "create+start")
SERVER = f"""
import http.server as h
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args): pass
h.HTTPServer(("", {REPLICA_PORT}), H).serve_forever()
"""
Sample = dict[str, float]
"""One burst: first_ready, last_ready, p50 (seconds)."""


class Bench:
    def __init__(self, count: int) -> None:
        self.api = docker.APIClient(version="auto", max_pool_size=count + 4)
        self.tag = secrets.token_hex(3)
        self.network = PREFIX + self.tag
        self.count = count
        self.pool = ThreadPoolExecutor(max_workers=count)
        self.stop = threading.Event()
        self.api.create_network(
            self.network,
            driver="bridge",
            options={"com.docker.network.bridge.enable_icc": "false"},
            labels={LABEL: self.tag},
        )

    def create(self, index: int) -> str:
        host_config = self.api.create_host_config(
            **_hardening(LIMITS, "container", EngineOptions()), network_mode=self.network
        )
        return self.api.create_container(
            IMAGE,
            ["python3", "-c", SERVER],
            name=f"{self.network}-{index}-{secrets.token_hex(2)}",
            user=REPLICA_USER,
            labels={LABEL: self.tag},
            host_config=host_config,
            use_config_proxy=False,
        )["Id"]

    def wait_ready(self, container: str) -> None:
        attrs = self.api.inspect_container(container)
        address = (attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"], REPLICA_PORT)
        deadline = time.perf_counter() + READY_TIMEOUT
        while not self.stop.is_set() and time.perf_counter() < deadline:
            try:
                with socket.create_connection(address, timeout=0.5) as conn:
                    conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if conn.recv(64).split(b"\r\n")[0].split(b" ")[1:2] == [b"200"]:
                        return
            except OSError:
                pass
            time.sleep(POLL)
        raise RuntimeError(f"{attrs['Name']} not ready within {READY_TIMEOUT:g}s")

    def burst(self, k: int, timed_create: bool) -> Sample:
        made = [] if timed_create else list(self.pool.map(self.create, range(self.count)))
        slots = threading.Semaphore(k)

        def one(index: int) -> tuple[float, float]:
            container = self.create(index) if timed_create else made[index]
            if timed_create:
                made.append(container)
            with slots:
                issued = time.perf_counter()
                self.api.start(container)
            self.wait_ready(container)
            return issued, time.perf_counter()

        try:
            time.sleep(SETTLE)
            began = time.perf_counter()
            times = list(self.pool.map(one, range(self.count)))
        except BaseException:
            self.stop.set()  # the other threads' polls give up, so removing waits for none
            raise
        finally:
            self.remove(made)
        readies = [ready - began for _, ready in times]
        return {
            "first_ready": min(readies),
            "last_ready": max(readies),
            "p50": statistics.median(ready - issued for issued, ready in times),
        }

    def remove(self, made: list[str]) -> None:
        def rm(container: str) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(container, force=True, v=True)

        list(self.pool.map(rm, made))

    def close(self) -> None:
        """Everything labelled with our tag, also what a thread made after we stopped."""
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        leftover = self.api.containers(all=True, filters={"label": f"{LABEL}={self.tag}"})
        for container in leftover:
            self.api.remove_container(container["Id"], force=True, v=True)
        self.api.remove_network(self.network)
        self.api.close()


def run(args: argparse.Namespace) -> dict[str, dict[int, list[Sample]]]:
    raw: dict[str, dict[int, list[Sample]]] = {v: {k: [] for k in args.levels} for v in VARIANTS}
    bench = Bench(args.count)
    try:
        for r in range(args.rounds):
            shift = r % len(args.levels)
            for k in args.levels[shift:] + args.levels[:shift]:
                for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                    raw[variant][k].append(bench.burst(k, variant == "create+start"))
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
    finally:
        bench.close()
    return raw


def report(raw: dict[str, dict[int, list[Sample]]], levels: list[int]) -> int:
    """Prints a table per variant; returns the recommended parallelism."""
    reference = 2 if 2 in levels else levels[0]
    picks = []
    for variant, by_level in raw.items():
        med = {
            k: {m: statistics.median(s[m] for s in samples) for m in samples[0]}
            for k, samples in by_level.items()
        }
        print(f"\n{variant} (median of {len(by_level[levels[0]])} rounds, ms)")
        print(
            f"{'k':>3} {'first ready':>12} {'last ready':>11} {'p50 start->ready':>17}"
            f" {f'/k={reference}':>7}"
        )
        for k in levels:
            m = med[k]
            print(
                f"{k:>3} {m['first_ready'] * 1000:>12.0f} {m['last_ready'] * 1000:>11.0f}"
                f" {m['p50'] * 1000:>17.0f} {m['last_ready'] / med[reference]['last_ready']:>6.2f}x"
            )
        best = min(m["last_ready"] for m in med.values())
        pick = min(k for k in levels if med[k]["last_ready"] <= best * WITHIN)
        print(f"smallest k with a makespan within 5% of the best ({best * 1000:.0f} ms): {pick}")
        picks.append(pick)
    return max(picks)


def levels(value: str) -> list[int]:
    found = sorted({int(v) for v in value.split(",") if v.strip()})
    if not found or found[0] < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, e.g. 1,2,4")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--levels", type=levels, default=[1, 2, 3, 4, 6, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=10, help="containers per burst")
    parser.add_argument("--json", type=Path, help="write the raw numbers (seconds) here")
    args = parser.parse_args()
    began, load = time.monotonic(), os.getloadavg()[0]
    raw = run(args)
    if args.json:
        args.json.write_text(
            json.dumps({v: {str(k): s for k, s in r.items()} for v, r in raw.items()})
        )
    print(f"\ncpus {os.cpu_count()}; {args.count} containers per burst; {IMAGE}")
    recommended = report(raw, args.levels)
    print(
        f"wall time {time.monotonic() - began:.0f} s; load average (1 min)"
        f" {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    print(f"recommended parallelism: {recommended}")


if __name__ == "__main__":
    main()
