"""Prometheus metrics at /metrics.

Gauges are read from the platform when scraped (nothing to keep in sync);
counters and histograms are updated as calls finish, replicas start and the
autoscaler acts. Names follow Prometheus conventions: a `faas_` prefix,
base units (seconds), `_total` on counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.stats import FunctionStats
from runtime.observers import PoolObserver
from runtime.platform import Platform
from runtime.scaling.autoscaler import ScaleEvent
from runtime.supply.base import WarmStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
COLD_START_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2, 5, 10)


class PlatformCollector(Collector):
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def collect(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily(
            "faas_function_replicas",
            "Replicas of a function by state.",
            labels=["function", "state"],
        )
        queue = GaugeMetricFamily(
            "faas_function_queue_depth",
            "Calls waiting for a replica, including async and event backlog.",
            labels=["function"],
        )
        in_flight = GaugeMetricFamily(
            "faas_function_in_flight", "Calls being served by replicas.", labels=["function"]
        )
        available = GaugeMetricFamily(
            "faas_function_available",
            "1 when the function can serve (built and not failed), else 0.",
            labels=["function"],
        )
        for name, pool in self._platform.pools.items():
            replicas.add_metric([name, "ready"], pool.ready_count)
            replicas.add_metric([name, "starting"], pool.starting)
            replicas.add_metric([name, "draining"], len(pool.draining))
            queue.add_metric([name], pool.depth())
            in_flight.add_metric([name], pool.in_flight)
            available.add_metric([name], 0 if pool.error or pool.image is None else 1)
        yield from (replicas, queue, in_flight, available)
        dropped = CounterMetricFamily(
            "faas_replica_output_dropped_bytes",
            "Bytes of replica output dropped over the per-replica output limits.",
            labels=["function"],
        )
        for name, count in sorted(self._platform.logs.dropped_bytes.items()):
            dropped.add_metric([name], count)
        yield dropped
        warm = self._platform.supply.warm_status()
        if warm is not None:
            yield from _warm_metrics(warm)


def _warm_metrics(warm: WarmStatus) -> Iterator[GaugeMetricFamily]:
    ready = GaugeMetricFamily(
        "faas_warm_pool_ready",
        "Warm watchdogs ready for a cold start, per pool (a kind of function).",
        labels=["pool"],
    )
    target = GaugeMetricFamily(
        "faas_warm_pool_target",
        "Warm watchdogs a pool keeps now, from its recent cold starts and the memory budget.",
        labels=["pool"],
    )
    memory = GaugeMetricFamily(
        "faas_warm_pool_memory_bytes",
        "Memory held by a pool's warm watchdogs, as measured from their cgroups.",
        labels=["pool"],
    )
    for pool in warm.pools:
        ready.add_metric([pool.pool], pool.ready)
        target.add_metric([pool.pool], pool.target)
        memory.add_metric([pool.pool], pool.memory)
    yield from (ready, target, memory)
    yield GaugeMetricFamily(
        "faas_warm_pool_memory_budget_bytes",
        "Memory all warm pools may hold together (gateway.warm_pool_memory).",
        value=warm.budget,
    )


class Metrics:
    def __init__(self, platform: Platform) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(PlatformCollector(platform))
        self.invocations = Counter(
            "faas_invocations",
            "Calls answered, by function and HTTP status.",
            ["function", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "faas_invocation_duration_seconds",
            "Time from a call's arrival at the gateway to the end of its response.",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cold_starts = Histogram(
            "faas_cold_start_seconds",
            "Time from deciding to start a replica to its watchdog answering ready.",
            ["function"],
            buckets=COLD_START_BUCKETS,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "faas_first_byte_seconds",
            "Time from a call's arrival at the gateway to its answer's head leaving it "
            "(with the first chunk of a streamed answer).",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "faas_open_streams",
            "Streamed answers being relayed to callers now.",
            ["function"],
            registry=self.registry,
        )
        self.open_websockets = Gauge(
            "faas_open_websockets",
            "WebSockets open through the gateway now, each holding one replica slot.",
            ["function"],
            registry=self.registry,
        )
        self.scale_events = Counter(
            "faas_scale_events",
            "Autoscaler decisions that changed a function's replica count.",
            ["function", "direction"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._first_byte: dict[str, Histogram] = {}
        self.stats = FunctionStats()
        """Rates, errors and latencies over the last minute, for the dashboard."""
        # One observer for every function, those a functions.yaml reload adds included.
        platform.observe(_Observer(self))

    def observe_call(self, function: str, status: int, seconds: float) -> None:
        # once per call: the labelled children are looked up once per (function, status)
        children = self._children.get((function, status))
        if children is None:
            children = self._children[function, status] = (
                self.invocations.labels(function, str(status)),
                self.duration.labels(function),
            )
        children[0].inc()
        children[1].observe(seconds)
        self.stats.observe(function, status, seconds)

    def cold_start(self, function: str, seconds: float) -> None:
        self.cold_starts.labels(function).observe(seconds)

    def observe_first_byte(self, function: str, seconds: float) -> None:
        child = self._first_byte.get(function)  # once per call: looked up once per function
        if child is None:
            child = self._first_byte[function] = self.first_byte.labels(function)
        child.observe(seconds)

    def stream_opened(self, function: str, change: int) -> None:
        """A streamed answer began (+1) or ended (-1)."""
        self.open_streams.labels(function).inc(change)

    def scaled(self, event: ScaleEvent) -> None:
        self.scale_events.labels(
            event.function, "up" if event.after > event.before else "down"
        ).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Observer(PoolObserver):
    """What the platform reports that the metrics count."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def cold_start(self, function: str, seconds: float, phases: Mapping[str, float]) -> None:
        self._metrics.cold_start(function, seconds)

    def scaled(self, event: ScaleEvent) -> None:
        self._metrics.scaled(event)
