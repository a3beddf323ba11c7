"""Run the four target benchmarks side by side and write bench/results/REPORT.md with plots.

    python bench/report.py                    # short runs: about 5-8 minutes in all
    python bench/report.py --seconds 5 --rounds 3 --cold-runs 20   # longer, steadier
    python bench/report.py --only gateway cold   # a subset (watchdog, gateway, cold, many)

Runs, one after the other, in one process: watchdog vs functions-framework
(bench/watchdog_vs_ff.py), gateway overhead (bench/gateway_overhead.py, once
on asyncio's loop as `faas up` runs today, once on uvloop: --loops), cold
start (bench/cold_start.py) and 100 functions (bench/many_functions.py); each
keeps its own side-by-side alternation, so every ratio compares figures taken
under the same machine noise. Writes, into --out (default bench/results/):

- REPORT.md: the targets (measured, ratio, met or not), the conditions
  (machine, cores, versions, date, durations) and the raw figures;
- PNG plots of latency distributions: watchdog_vs_ff_latency.png,
  gateway_latency.png and gateway_latency_uvloop.png (wrk's latency
  percentiles, from bench/latency.lua) and cold_start.png (every cold start
  and baseline start);
- results.json: the same figures as data.

A benchmark that fails is reported as failed; the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cold_start
import gateway_overhead
import many_functions
import matplotlib
import watchdog_vs_ff
from common import REPO, Sample, median_sample

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BENCHMARKS = ("watchdog", "gateway", "cold", "many")
GATEWAY_LOOPS = {
    "gateway": "asyncio's own loop (FAAS_EVENT_LOOP=asyncio)",
    "gateway-uvloop": "uvloop, as `faas up` runs it",
}
"""The gateway benchmark per event loop (--loops): outcome key -> label."""
GATEWAY_P50_ADDED_MS = 1.0
GATEWAY_THROUGHPUT = 0.5
COLD_START_RATIO = 0.5
"""Issue 9: zero -> 200 through the gateway in less than half of Docker's own start -> 200."""
IDLE_RSS_MIB = 100.0


@dataclass
class Target:
    what: str
    target: str
    measured: str
    ratio: str
    met: bool | None  # None: not measured


@dataclass
class Outcome:
    name: str
    seconds: float
    result: Any = None
    error: str = ""


def timed(name: str, call: Callable[[], Any]) -> Outcome:
    print(f"\n=== {name} ===", flush=True)
    began = time.monotonic()
    try:
        result = call()
    except (Exception, SystemExit) as exc:  # one failure must not lose the other figures
        traceback.print_exc()
        return Outcome(name, time.monotonic() - began, error=f"{type(exc).__name__}: {exc}")
    return Outcome(name, time.monotonic() - began, result)


# ---------------------------------------------------------------- targets


def targets(outcomes: dict[str, Outcome]) -> list[Target]:
    rows: list[Target] = []
    wd = outcomes.get("watchdog")
    for kind, label in (("async", "ff --asgi"), ("sync", "ff (gunicorn)")) if wd else ():
        goal = watchdog_vs_ff.TARGETS[kind]
        what = f"watchdog vs functions-framework, {kind} hello, 16 conns req/s"
        if wd and wd.result:
            ratio = wd.result.ratio(kind)
            mine, theirs = wd.result.pair(kind)
            a, b = median_sample(mine.samples[16]), median_sample(theirs.samples[16])
            measured = f"{a.rps:,.0f} vs {b.rps:,.0f} req/s ({label})"
            rows.append(Target(what, f">= {goal:g}x", measured, f"{ratio:.2f}x", ratio >= goal))
        else:
            rows.append(Target(what, f">= {goal:g}x", "failed", "-", None))
    for key, loop in GATEWAY_LOOPS.items():
        gw = outcomes.get(key)
        if gw is None:
            continue
        if not gw.result:
            rows.append(Target(f"gateway overhead ({loop})", "-", "failed", "-", None))
            continue
        one, many = gw.result.row(1), gw.result.row(32)
        g1, d1 = median_sample(one.gateway), median_sample(one.direct)
        added = g1.p50_ms - d1.p50_ms
        rows.append(
            Target(
                f"gateway overhead, warm hello, 1 conn: p50 added ({loop})",
                f"<= {GATEWAY_P50_ADDED_MS:g} ms",
                f"{added:+.3f} ms ({g1.p50_ms:.3f} vs {d1.p50_ms:.3f} ms direct)",
                f"{added / GATEWAY_P50_ADDED_MS:.2f}x of the budget",
                added <= GATEWAY_P50_ADDED_MS,
            )
        )
        g32, d32 = median_sample(many.gateway), median_sample(many.direct)
        rows.append(
            Target(
                f"gateway throughput at 32 conns, of direct-to-replica ({loop})",
                f">= {GATEWAY_THROUGHPUT:g}x",
                f"{g32.rps:,.0f} vs {d32.rps:,.0f} req/s",
                f"{many.ratio:.2f}x",
                many.ratio >= GATEWAY_THROUGHPUT,
            )
        )
    cold = outcomes.get("cold")
    if cold and cold.result:
        r = cold.result
        ours, base = statistics.median(r.ours) * 1000, statistics.median(r.baseline) * 1000
        containers = statistics.median(r.containers) * 1000
        rows.append(
            Target(
                "cold start p50, zero -> 200 via gateway (warm pool, as `faas up` runs), "
                "vs Docker start -> 200; the function at zero holds "
                f"{r.held_at_zero} container(s)",
                f"< {COLD_START_RATIO:g}x",
                f"{ours:.0f} vs {base:.0f} ms",
                f"{r.ratio:.2f}x",
                r.ratio < COLD_START_RATIO and r.held_at_zero == 0,
            )
        )
        rows.append(
            Target(
                "cold start p50 with `warm_pool: 0` (a container of its own created and "
                "started then: nothing is made ahead for a function)",
                "-",
                f"{containers:.0f} vs {base:.0f} ms",
                f"{r.container_ratio:.2f}x",
                None,
            )
        )
    elif cold:
        rows.append(Target("cold start", "-", "failed", "-", None))
    many_ = outcomes.get("many")
    if many_ and many_.result:
        m = many_.result
        rows.append(
            Target(
                f"{m.functions} functions: gateway RSS with all idle",
                f"<= {IDLE_RSS_MIB:g} MiB",
                f"{m.idle_rss_mib:.1f} MiB (ready in {m.ready_s:.1f} s)",
                f"{m.idle_rss_mib / IDLE_RSS_MIB:.2f}x of the budget",
                m.idle_rss_mib <= IDLE_RSS_MIB,
            )
        )
        rows.append(
            Target(
                "adding a function while serving: images built",
                "0",
                str(m.added_builds),
                "-",
                m.added_builds == 0,
            )
        )
    elif many_:
        rows.append(Target("100 functions", "-", "failed", "-", None))
    return rows


# ---------------------------------------------------------------- conditions


def conditions(args: argparse.Namespace, started: datetime.datetime) -> list[tuple[str, str]]:
    def run(*command: str) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=REPO)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    versions = []
    for package in ("uvicorn", "starlette", "uvloop", "httptools", "aiohttp", "docker"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    dirty = " (with uncommitted changes)" if run("git", "status", "--porcelain") != "?" else ""
    return [
        ("date", started.strftime("%Y-%m-%d %H:%M %Z")),
        ("machine", f"{platform.node()}: {model}"),
        ("cores", f"{os.cpu_count()} (shared with whatever else runs: figures are side by side)"),
        ("memory", f"{int(memory) / 2**20:.1f} GiB"),
        ("kernel", platform.release()),
        ("python", platform.python_version()),
        ("docker engine", run("docker", "version", "--format", "{{.Server.Version}}")),
        ("wrk", run("wrk", "-v")),
        ("gateway stack", ", ".join(versions)),
        ("gateway event loops", ", ".join(args.loops)),
        ("commit", run("git", "rev-parse", "--short", "HEAD") + dirty),
        (
            "durations",
            f"wrk runs {args.seconds:g} s x {args.rounds} rounds per cell; "
            f"{args.cold_runs} cold starts; {args.functions} functions",
        ),
    ]


# ---------------------------------------------------------------- plots


def plot_cdf(ax: Any, label: str, sample: Sample, style: str = "-") -> None:
    if sample.cdf:
        ax.plot([ms for _, ms in sample.cdf], [p for p, _ in sample.cdf], style, label=label)


def finish_latency_axes(axes: Any, title: str, fig: Any, path: Path) -> None:
    """Log-scale latency CDFs side by side, labelled and saved."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("percent of requests at or below")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(outcomes: dict[str, Outcome], out: Path) -> list[str]:
    made = []
    wd = outcomes.get("watchdog")
    if wd and wd.result:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, kind in zip(axes, ("async", "sync"), strict=True):
            for server in wd.result.servers:
                if server.kind == kind:
                    plot_cdf(ax, f"{server.label}", median_sample(server.samples[16]))
            ax.set_title(f"{kind} hello, 16 connections")
        title = "watchdog vs functions-framework: latency distribution (wrk, median run)"
        finish_latency_axes(axes, title, fig, out / "watchdog_vs_ff_latency.png")
        made.append("watchdog_vs_ff_latency.png")
    for key, loop in GATEWAY_LOOPS.items():
        gw = outcomes.get(key)
        if not (gw and gw.result):
            continue
        fig, axes = plt.subplots(1, len(gw.result.rows), figsize=(11, 4.2), sharey=True)
        for ax, row in zip(axes, gw.result.rows, strict=True):
            plot_cdf(ax, "through the gateway", median_sample(row.gateway))
            plot_cdf(ax, "direct to the replica", median_sample(row.direct), "--")
            ax.set_title(f"warm hello, {row.connections} connection(s)")
        name = key.replace("gateway", "gateway_latency").replace("-", "_") + ".png"
        title = f"gateway overhead ({loop}): latency distribution (wrk, median run)"
        finish_latency_axes(axes, title, fig, out / name)
        made.append(name)
    cold = outcomes.get("cold")
    if cold and cold.result:
        fig, ax = plt.subplots(figsize=(7, 5))
        for label, values, style in (
            ("faas: zero -> 200 through the gateway, warm pool", cold.result.ours, "o-"),
            ("faas: the same, warm_pool: 0", cold.result.containers, "^-"),
            ("docker: start -> 200 of a pre-created container", cold.result.baseline, "s--"),
        ):
            ordered = sorted(v * 1000 for v in values)
            percent = [100 * (i + 1) / len(ordered) for i in range(len(ordered))]
            ax.plot(ordered, percent, style, label=label, drawstyle="steps-post")
        ax.set_xlabel("cold start (ms)")
        ax.set_ylabel("percent of starts at or below")
        ax.set_title(f"cold start, {cold.result.runs} runs each, alternating")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small")
        fig.tight_layout()
        fig.savefig(out / "cold_start.png", dpi=110)
        plt.close(fig)
        made.append("cold_start.png")
    return made


# ---------------------------------------------------------------- the report


def raw_figures(outcomes: dict[str, Outcome]) -> list[str]:
    lines: list[str] = []
    wd = outcomes.get("watchdog")
    if wd and wd.result:
        r = wd.result
        lines += ["### watchdog vs functions-framework", ""]
        lines += [f"ff ran on: {', '.join(f'{k} {v}' for k, v in r.versions.items())}", ""]
        lines += ["| server | handler | conns | req/s | p50 ms | p99 ms | req/s per round |"]
        lines += ["| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for connections in watchdog_vs_ff.CONNECTIONS:
            for server in r.servers:
                samples = server.samples[connections]
                m = median_sample(samples)
                rounds = " / ".join(f"{s.rps:,.0f}" for s in samples)
                lines.append(
                    f"| {server.label} | {server.kind} | {connections} | {m.rps:,.0f} | "
                    f"{m.p50_ms:.3f} | {m.p99_ms:.3f} | {rounds} |"
                )
        lines += ["", "Servers: " + "; ".join(f"{s.label} ({s.kind}): {s.mode}" for s in r.servers)]
        lines += [""]
    for key, loop in GATEWAY_LOOPS.items():
        gw = outcomes.get(key)
        if not (gw and gw.result):
            continue
        lines += [f"### gateway overhead ({loop})", ""]
        lines += ["| conns | path | req/s | p50 ms | p99 ms | req/s per round |"]
        lines += ["| ---: | --- | ---: | ---: | ---: | --- |"]
        for row in gw.result.rows:
            for label, samples in (("gateway", row.gateway), ("direct", row.direct)):
                m = median_sample(samples)
                rounds = " / ".join(f"{s.rps:,.0f}" for s in samples)
                lines.append(
                    f"| {row.connections} | {label} | {m.rps:,.0f} | {m.p50_ms:.3f} | "
                    f"{m.p99_ms:.3f} | {rounds} |"
                )
        lines += [""]
    cold = outcomes.get("cold")
    if cold and cold.result:
        r = cold.result
        lines += ["### cold start", "", f"image {r.image}", ""]
        lines += [
            "| run | warm pool (ms) | assign / init (ms) | `warm_pool: 0` (ms) "
            "| create / start / ready (ms) | docker start -> 200 (ms) |"
        ]
        lines += ["| ---: | ---: | --- | ---: | --- | ---: |"]
        for i, (ours, phase, plain, plain_phase, base) in enumerate(
            zip(r.ours, r.phases, r.containers, r.container_phases, r.baseline, strict=True),
            start=1,
        ):
            warm = " / ".join(f"{phase.get(k, 0):.0f}" for k in ("assign_ms", "init_ms"))
            cold_ = " / ".join(
                f"{plain_phase.get(k, 0):.0f}" for k in ("create_ms", "start_ms", "ready_ms")
            )
            lines.append(
                f"| {i} | {ours * 1000:.1f} | {warm} | {plain * 1000:.1f} | {cold_} "
                f"| {base * 1000:.1f} |"
            )
        lines += [
            "",
            f"Held at zero by the function: {r.held_at_zero} container(s). Held by the "
            f"project's warm pool, for all its functions: {r.warm_count} watchdog(s), "
            f"{r.warm_mib:.1f} MiB together.",
            "",
        ]
    many_ = outcomes.get("many")
    if many_ and many_.result:
        m = many_.result
        lines += ["### 100 functions", ""]
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [
            f"| functions | {m.functions} |",
            f"| `faas up` -> gateway ready (images cached) | {m.ready_s:.1f} s |",
            f"| images built at start | {m.images_built} |",
            f"| gateway RSS, all idle | {m.idle_rss_mib:.1f} MiB |",
            f"| gateway RSS, after calling each once (back at zero) | {m.after_rss_mib:.1f} MiB |",
            f"| containers of any function at zero | {m.held_by_functions} "
            f"({m.sandboxes} network sandboxes, {m.sandbox_mib:.1f} MiB) |",
            f"| the project's warm pool at zero | {m.warm} watchdog(s), {m.warm_mib:.1f} MiB |",
            f"| images built when adding one function while serving | {m.added_builds} |",
            "",
        ]
    return lines


def write_report(
    out: Path,
    args: argparse.Namespace,
    started: datetime.datetime,
    outcomes: dict[str, Outcome],
) -> str:
    rows = targets(outcomes)
    table = ["| target | goal | measured | ratio | met |", "| --- | --- | --- | --- | --- |"]
    for t in rows:
        if t.target == "-":
            met = "-"  # a figure without a goal
        else:
            met = "not measured" if t.met is None else ("yes" if t.met else "**no**")
        table.append(f"| {t.what} | {t.target} | {t.measured} | {t.ratio} | {met} |")
    images = plots(outcomes, out)
    lines = [
        "# Benchmark report",
        "",
        f"Written by `{' '.join(['python bench/report.py', *sys.argv[1:]])}`.",
        "Each benchmark alternates its two sides in one run, so a ratio compares",
        "figures taken under the same machine noise; the absolute figures move",
        "with whatever else the (shared) machine runs.",
        "",
        "## Targets",
        "",
        *table,
        "",
        "## Conditions",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in conditions(args, started)),
        "| time per benchmark | "
        + ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes.values())
        + " |",
        "",
    ]
    failed = [o for o in outcomes.values() if o.error]
    if failed:
        lines += ["## Failed", ""] + [f"- {o.name}: {o.error}" for o in failed] + [""]
    lines += ["## Latency distributions", ""]
    lines += [f"![{name}]({name})" for name in images] + [""]
    lines += ["## Raw figures", "", *raw_figures(outcomes)]
    (out / "REPORT.md").write_text("\n".join(lines))
    (out / "results.json").write_text(
        json.dumps({o.name: as_data(o) for o in outcomes.values()}, indent=1, default=str)
    )
    return "\n".join(table)


def as_data(outcome: Outcome) -> dict[str, Any]:
    data: dict[str, Any] = {"seconds": round(outcome.seconds, 1), "error": outcome.error}
    if outcome.result is not None and dataclasses.is_dataclass(outcome.result):
        data["result"] = dataclasses.asdict(outcome.result)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per cell (medians)")
    parser.add_argument("--cold-runs", type=int, default=10, help="cold starts (and baselines)")
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument(
        "--loops",
        nargs="+",
        choices=("asyncio", "uvloop"),
        default=["asyncio", "uvloop"],
        help="gateway overhead: the event loops to serve the gateway on, one run each",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    # Ctrl-C and SIGTERM must reach the `finally` blocks that remove containers
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().astimezone()
    runs: dict[str, Callable[[], Any]] = {
        "watchdog": lambda: watchdog_vs_ff.run(args.seconds, args.rounds),
        "gateway": lambda: gateway_overhead.run(args.seconds, args.rounds, (1, 32), False),
        "gateway-uvloop": lambda: gateway_overhead.run(args.seconds, args.rounds, (1, 32), True),
        "cold": lambda: cold_start.run(args.cold_runs),
        "many": lambda: many_functions.run(args.functions),
    }
    reports: dict[str, Callable[[Any], None]] = {
        "watchdog": watchdog_vs_ff.report,
        "gateway": gateway_overhead.report,
        "gateway-uvloop": gateway_overhead.report,
        "cold": cold_start.report,
        "many": many_functions.report,
    }
    outcomes: dict[str, Outcome] = {}
    selected = [name for name in BENCHMARKS if name in args.only]
    if "gateway" in selected:  # one run per event loop asked for
        loops = {"asyncio": "gateway", "uvloop": "gateway-uvloop"}
        at = selected.index("gateway")
        selected[at : at + 1] = [loops[loop] for loop in args.loops]
    for name in selected:
        outcomes[name] = timed(name, runs[name])
        if outcomes[name].result is not None:
            reports[name](outcomes[name].result)
    table = write_report(args.out, args, started, outcomes)
    print(f"\n{table}\n\nwrote {args.out / 'REPORT.md'}")


if __name__ == "__main__":
    main()
