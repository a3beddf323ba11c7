"""docs/grafana-dashboard.json queries only metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from runtime.loghub import LogHub
from runtime.supply.base import WarmPoolStatus, WarmStatus

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


class _Pool:
    ready_count = 0
    draining: tuple[object, ...] = ()
    starting = 0
    in_flight = 0
    error = None
    image = "faas-function:x"

    def depth(self) -> int:
        return 0


class _Platform:
    """Just what Metrics reads: one function's pool, a supply with a warm pool, and the
    observer list to join."""

    def __init__(self) -> None:
        self.pools = {"f": _Pool()}
        pool = WarmPoolStatus("plain-abc123", 1, 2, 2, 12 << 20, (), ("hello",))
        status = WarmStatus(maximum=8, budget=512 << 20, pools=(pool,))
        self.supply = type("S", (), {"warm_status": lambda _: status})()
        self.logs = LogHub()
        self.observers: list[object] = []

    def observe(self, observer: object) -> None:
        self.observers.append(observer)


def exported_names() -> set[str]:
    metrics = Metrics(_Platform())  # type: ignore[arg-type]
    metrics.observe_call("f", 200, 0.01)
    metrics.cold_start("f", 0.2)
    metrics.scaled(type("E", (), {"function": "f", "before": 0, "after": 1})())  # type: ignore[arg-type]
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    return names


def test_every_queried_metric_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bfaas_[a-z_]+", target["expr"])
    }
    assert queried <= exported_names(), queried - exported_names()
    assert len(dashboard["panels"]) >= 6
