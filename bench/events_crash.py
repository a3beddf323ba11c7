"""Durable events under a crash: publish, kill -9 the gateway mid-delivery, restart, count.

Phases, in one run on one machine (ratios side by side, not absolute rates):

1. Baseline: 1,000 direct calls (POST /function/sink) at 32 connections.
2. Throughput: 1,000 events published at 32 connections (accepted/s), and
   the time from the first publish until the handler has seen every one
   (delivered/s).
3. Crash: 1,000 events whose handler takes 50 ms; once a quarter are seen,
   the gateway gets SIGKILL; `faas down` removes the orphaned containers;
   `faas up` again. Every accepted event must be seen at least once;
   duplicates (deliveries under way at the kill, run again) are counted; the
   queue must settle empty (nothing pending, leased or dead).

The handler reports each event to a small HTTP server in a process of its
own (so its work does not slow the load generator), listening only on the
project network's bridge address (see projects/events/functions/sink.py).

    .venv/bin/python bench/events_crash.py [--events 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import docker
import httpx
from aiohttp import web
from common import ADMIN_ANY_PORT, REPO, admin_url, free_port, wait_until_serving

HANDLER = Path(__file__).parent / "projects" / "events" / "functions" / "sink.py"
CONCURRENCY = 32

SPEC = """\
version: 1
project: evbench
gateway: {{events_auth: none}}
defaults: {{auth: none, memory: 128MiB, cpus: 1, timeout: 10s}}
functions:
  sink:
    handler: functions/sink.py
    events: ["bench.>"]
    environment: {{REPORT_PORT: "{port}"}}
    retry: {{max_attempts: 10, backoff: 200ms, max_backoff: 2s}}
    scale: {{min: 0, max: 2, target_concurrency: 8, idle_timeout: 5m}}
"""


def report_server(address: str, port: int, control: int) -> None:
    """In its own process: count what the handler reports, per topic and event id.

    Reports arrive on the bridge address; the counts are read on loopback, which
    outlives the bridge (`faas down` removes the network and its address).
    """
    seen: dict[str, dict[str, int]] = {}

    async def record(request: web.Request) -> web.Response:
        report = await request.json()
        by_id = seen.setdefault(report["topic"], {})
        by_id[report["id"]] = by_id.get(report["id"], 0) + 1
        return web.Response(status=204)

    async def summary(request: web.Request) -> web.Response:
        return web.json_response(seen)

    async def serve() -> None:
        app = web.Application()
        app.add_routes([web.post("/seen", record), web.get("/summary", summary)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port, backlog=1024).start()
        await web.TCPSite(runner, "127.0.0.1", control).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


class Reports:
    """The report servers (one per bridge address the project network had) and their counts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.servers: dict[str, tuple[multiprocessing.Process, int]] = {}

    def listen(self, address: str) -> None:
        if address in self.servers:
            return
        control = free_port()
        process = multiprocessing.Process(
            target=report_server, args=(address, self.port, control), daemon=True
        )
        process.start()
        self.servers[address] = (process, control)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://{address}:{self.port}/summary", timeout=1, trust_env=False)
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the report server on {address}:{self.port} did not start")
            time.sleep(0.05)

    def counts(self, topic: str) -> dict[str, int]:
        merged: dict[str, int] = {}
        for _, control in self.servers.values():
            answer = httpx.get(f"http://127.0.0.1:{control}/summary", timeout=10, trust_env=False)
            for event_id, runs in answer.json().get(topic, {}).items():
                merged[event_id] = merged.get(event_id, 0) + runs
        return merged

    def wait(self, topic: str, ids: set[str], at_least: int, timeout: float) -> float:
        began = time.perf_counter()
        while len(ids & self.counts(topic).keys()) < at_least:
            if time.perf_counter() - began > timeout:
                seen = len(ids & self.counts(topic).keys())
                raise SystemExit(f"{topic}: only {seen}/{at_least} seen after {timeout}s")
            time.sleep(0.02)
        return time.perf_counter() - began

    def close(self) -> None:
        for process, _ in self.servers.values():
            process.terminate()
            process.join(5)


class Gateway:
    def __init__(self, spec: Path, project: str, log: Path) -> None:
        self.spec, self.project = spec, project
        self.url = f"http://127.0.0.1:{free_port()}"
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "faas", "up", "-f", str(spec), "--project", project,
                 "--port", self.url.rsplit(":", 1)[1], *ADMIN_ANY_PORT, "--log-level", "warning",
                 "--no-reload"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until_serving(self.process, self.url, f"faas up did not come up; see {log}")

    def queue(self, function: str) -> dict[str, int]:
        token = (self.spec.parent / ".faas" / "admin-token").read_text().strip()
        answer = httpx.get(
            f"{admin_url(self.url, self.spec)}/system/queue",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return answer.json()["functions"][function]  # type: ignore[no-any-return]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)


def bridge_address(client: docker.DockerClient, project: str) -> str:
    network = client.networks.get(f"faas-{project}")
    return str(network.attrs["IPAM"]["Config"][0]["Gateway"])


def faas_down(spec: Path, project: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "faas", "down", "-f", str(spec), "--project", project],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"faas down failed: {result.stderr}")
    return result.stderr.strip().splitlines()[-1]


async def post_all(url: str, path: str, bodies: list[bytes]) -> tuple[float, list[str]]:
    """POST each body at CONCURRENCY connections: (seconds, event ids of the 202s)."""
    pending = list(reversed(bodies))
    ids: list[str] = []
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def worker() -> None:
            while pending:
                body = pending.pop()
                headers = {"content-type": "application/json"}
                async with session.post(path.format(n=len(pending)), data=body,
                                        headers=headers) as response:  # fmt: skip
                    answer: Any = await response.read()
                    if response.status not in (200, 202):
                        raise SystemExit(f"{path}: {response.status} {answer!r}")
                    if response.status == 202:
                        ids.append(json.loads(answer)["event_id"])

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - began, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    count = parser.parse_args().events
    client = docker.from_env()
    workdir = Path(tempfile.mkdtemp(prefix="faas-evbench-"))
    (workdir / "functions").mkdir()
    shutil.copy(HANDLER, workdir / "functions" / "sink.py")
    reports = Reports(free_port())
    spec = workdir / "functions.yaml"
    spec.write_text(SPEC.format(port=reports.port))
    project = f"evbench-{int(time.time()) % 100000}"
    log = workdir / "gateway.log"
    gateway: Gateway | None = None
    try:
        gateway = Gateway(spec, project, log)
        reports.listen(bridge_address(client, project))
        asyncio.run(post_all(gateway.url, "/function/sink?id=warm", [b"{}"]))
        reports.wait("direct", {"warm"}, 1, 30)

        direct_s, _ = asyncio.run(post_all(gateway.url, "/function/sink?id=d{n}", [b"{}"] * count))
        reports.wait("direct", {f"d{n}" for n in range(count)}, count, 60)

        began = time.perf_counter()
        publish_s, quick = asyncio.run(
            post_all(gateway.url, "/events/bench.quick", [b'{"sleep": 0}'] * count)
        )
        reports.wait("bench.quick", set(quick), count, 120)
        deliver_s = time.perf_counter() - began

        _, slow = asyncio.run(
            post_all(gateway.url, "/events/bench.slow", [b'{"sleep": 0.05}'] * count)
        )
        batch = set(slow)
        reports.wait("bench.slow", batch, count // 4, 120)
        gateway.kill()
        at_kill = len(batch & reports.counts("bench.slow").keys())
        orphans = faas_down(spec, project)
        restart_began = time.perf_counter()
        gateway = Gateway(spec, project, log)
        reports.listen(bridge_address(client, project))
        reports.wait("bench.slow", batch, count, 300)
        recovered_s = time.perf_counter() - restart_began
        deadline = time.monotonic() + 60
        while True:  # redeliveries still under way settle; then nothing may be left
            queue = gateway.queue("sink")
            if not (queue.get("pending") or queue.get("leased")) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        runs = reports.counts("bench.slow")
    finally:
        if gateway is not None:
            gateway.stop()
        faas_down(spec, project)
        reports.close()
    limbo = {k: v for k, v in queue.items() if k in ("pending", "leased", "dead") and v}
    distinct = len(batch & runs.keys())
    duplicates = sum(runs[i] - 1 for i in batch if i in runs)
    direct_rate = count / direct_s

    print(f"events_crash: {count} events, {CONCURRENCY} connections, one machine, side by side")
    print(
        f"  direct calls       {direct_rate:8.0f} calls/s   (POST /function/sink, handler included)"
    )
    print(f"  publish accepted   {count / publish_s:8.0f} events/s  "
          f"({count / publish_s / direct_rate:.2f}x direct calls)")  # fmt: skip
    print(f"  delivered          {count / deliver_s:8.0f} events/s  "
          f"(publish to last seen; {count / deliver_s / direct_rate:.2f}x direct)")  # fmt: skip
    print(f"  crash: SIGKILL with {at_kill}/{count} seen; {orphans}")
    print(f"  after restart      all {count} seen {recovered_s:.1f}s after `faas up` began")
    print(f"  distinct seen      {distinct}/{count}")
    print(f"  duplicates         {duplicates} (handler runs: {sum(runs.values())})")
    print(f"  queue after        {json.dumps(queue)}; in limbo: {limbo or 'nothing'}")
    if distinct != count or limbo:
        raise SystemExit("FAILED: an event was lost or left in limbo")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
