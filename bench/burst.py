"""Burst from zero: 1,000 calls at concurrency 100 to a 50 ms handler that holds no replica.

Prints errors (target 0), time to drain and peak replicas; writes replicas,
queue depth and in-flight calls over time as CSV and a PNG plot under
bench/results/. Then, side by side in the same run, the ideal at max replicas:
the same burst again once the function holds all 10 replicas (its minimum set
to its maximum through the admin API), so this machine's own limits (the load
generator and the gateway on two cores) count on both sides. Target: from zero
within 1.5x of that. The arithmetic ideal (1,000 x 50 ms over 100 slots, 0.5 s)
is printed too. Runs `--rounds` times (a fresh gateway each), medians compared.

    python bench/burst.py [--requests 1000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import statistics
import time
import uuid

import aiohttp
import httpx
from common import REPO, admin_headers, admin_url, function_info, gateway

SPEC = REPO / "bench" / "projects" / "burst" / "functions.yaml"
HANDLER_SECONDS, MAX_REPLICAS, SLOTS = 0.05, 10, 10
"""sleep50's time, and its `scale.max` and `target_concurrency` (functions.yaml)."""
RESULTS = REPO / "bench" / "results"


async def sample(
    session: aiohttp.ClientSession, began: float, rows: list[dict[str, float]], stop: asyncio.Event
) -> None:
    """Reads /system/functions on the admin listener (the session's base URL)."""
    while not stop.is_set():
        async with session.get("/system/functions") as response:
            functions = (await response.json())["functions"]
        info = next(f for f in functions if f["name"] == "sleep50")
        rows.append(
            {
                "t": round(time.perf_counter() - began, 3),
                "ready": info["replicas"],
                "starting": info["starting"],
                "queue": info["queue_depth"],
                "in_flight": info["in_flight"],
            }
        )
        await asyncio.sleep(0.1)


async def burst(
    url: str, requests: int, concurrency: int
) -> tuple[collections.Counter[str], float, list[dict[str, float]]]:
    """aiohttp as the load generator: httpx's pool costs too much CPU at 100 connections."""
    outcomes: collections.Counter[str] = collections.Counter()
    rows: list[dict[str, float]] = []
    remaining = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency + 2)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = admin_headers(SPEC)  # the sampler reads /system/functions
    async with (
        aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(admin_url(url, SPEC), timeout=timeout, headers=headers) as admin,
    ):

        async def worker() -> None:
            for _ in remaining:
                try:
                    async with session.get("/function/sleep50") as response:
                        await response.read()
                        outcomes[str(response.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcomes[type(exc).__name__] += 1

        stop = asyncio.Event()
        began = time.perf_counter()
        sampler = asyncio.create_task(sample(admin, began, rows, stop))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        drained = time.perf_counter() - began
        await asyncio.sleep(0.3)
        stop.set()
        await sampler
    return outcomes, drained, rows


def plot(rows: list[dict[str, float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 5))
    top.step(t, [r["ready"] for r in rows], where="post", label="ready")
    top.step(t, [r["starting"] for r in rows], where="post", label="starting")
    top.set_ylabel("replicas")
    top.legend()
    bottom.plot(t, [r["queue"] for r in rows], label="queued")
    bottom.plot(t, [r["in_flight"] for r in rows], label="in flight")
    bottom.set_ylabel("calls")
    bottom.set_xlabel("seconds since the burst began")
    bottom.legend()
    figure.suptitle("1,000 calls at concurrency 100 to a 50 ms function at zero")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def at_max_replicas(url: str) -> int:
    """Hold the function at its maximum (scale.min = max) and wait until every replica is
    ready: the reference burst runs on all of them."""
    admin = admin_url(url, SPEC)
    body = {"min": MAX_REPLICAS, "max": MAX_REPLICAS}
    httpx.post(
        f"{admin}/system/functions/sleep50/scale", json=body, headers=admin_headers(SPEC)
    ).raise_for_status()
    deadline = time.monotonic() + 60
    while (ready := int(function_info(url, "sleep50", SPEC)["replicas"])) < MAX_REPLICAS:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {ready} of {MAX_REPLICAS} replicas after 60 s")
        time.sleep(0.2)
    time.sleep(1.0)  # the warm pools refill: the reference sees a quiet engine too
    return ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    cold: list[float] = []
    warm: list[float] = []
    for round_ in range(1, args.rounds + 1):
        with gateway(SPEC, f"bench-burst-{uuid.uuid4().hex[:6]}") as url:
            time.sleep(3.0)  # the warm pool made, as a project at rest has it
            assert function_info(url, "sleep50", SPEC)["replicas"] == 0
            outcomes, drained, rows = asyncio.run(burst(url, args.requests, args.concurrency))
            at_max = at_max_replicas(url)
            again, warm_drained, _ = asyncio.run(burst(url, args.requests, args.concurrency))
        errors = sum(count for outcome, count in outcomes.items() if outcome != "200")
        errors += sum(count for outcome, count in again.items() if outcome != "200")
        peak = max(r["ready"] for r in rows)
        print(
            f"round {round_}: from zero {dict(outcomes)} drained in {drained:.2f} s "
            f"(peak {peak} replicas); on {at_max} replicas {dict(again)} drained in "
            f"{warm_drained:.2f} s; errors {errors}"
        )
        cold.append(drained)
        warm.append(warm_drained)
    ideal = args.requests * HANDLER_SECONDS / (MAX_REPLICAS * SLOTS)
    cold_p50, warm_p50 = statistics.median(cold), statistics.median(warm)
    print(
        f"{args.requests} calls at concurrency {args.concurrency}, median of {args.rounds}: "
        f"from zero {cold_p50:.2f} s, at max replicas {warm_p50:.2f} s: "
        f"{cold_p50 / warm_p50:.2f}x (target: <= 1.5x); "
        f"{cold_p50 / ideal:.2f}x of the arithmetic ideal, {ideal:.2f} s"
    )
    csv_path, png_path = RESULTS / "burst.csv", RESULTS / "burst.png"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, str(png_path))
    print(f"wrote {csv_path.relative_to(REPO)} and {png_path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
