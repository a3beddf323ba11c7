"""The kubernetes backend: replicas are the addresses a headless Service's name resolves to."""

from __future__ import annotations

import asyncio

import pytest

from runtime.backends import create_backend
from runtime.backends.base import ReplicaSpec
from runtime.backends.kubernetes import KubernetesBackend, service_host, tasks_from
from runtime.errors import EngineUnavailable
from runtime.replica_client import ReplicaClient
from runtime.scaling.coordination import Follower
from runtime.supply import supply_for
from runtime.supply.services import ServiceSupply


def test_tasks_follow_the_dns_answer_and_keep_their_first_sighting() -> None:
    seen: dict[str, float] = {}
    first = tasks_from({"hello": ["10.0.0.2", "10.0.0.1"]}, seen, "tok", now=100.0)
    assert [(t.id, t.address, t.created_at) for t in first] == [
        ("hello/10.0.0.2", "10.0.0.2:8080", 100.0),
        ("hello/10.0.0.1", "10.0.0.1:8080", 100.0),
    ]
    assert all(t.running and t.token == "tok" for t in first)
    later = tasks_from({"hello": ["10.0.0.1", "10.0.0.3"]}, seen, "tok", now=105.0)
    assert [(t.id, t.created_at) for t in later] == [
        ("hello/10.0.0.1", 100.0),
        ("hello/10.0.0.3", 105.0),
    ]
    assert set(seen) == {"hello/10.0.0.1", "hello/10.0.0.3"}  # the gone pod is forgotten


def test_the_service_name_is_the_cluster_dns_name() -> None:
    assert service_host("hello", "shop") == "hello.shop.svc.cluster.local"


def spec(function: str) -> ReplicaSpec:
    return ReplicaSpec(function=function, image="unused", token="unused")


def test_backend_lists_pods_counts_them_and_never_scales(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAAS_NAMESPACE", "shop")
    monkeypatch.setenv("FAAS_REPLICA_TOKEN", "secret")
    answers = {"hello.shop.svc.cluster.local": ["10.1.0.7"], "echo.shop.svc.cluster.local": []}
    backend = KubernetesBackend("shop", resolver=lambda name: answers.get(name, []))
    # a service supply that only follows: KEDA sets the counts
    supply = supply_for(backend, ReplicaClient())
    assert isinstance(supply, ServiceSupply) and isinstance(supply.coordination, Follower)

    async def run() -> None:
        await backend.prepare()
        await backend.ensure_service(spec("hello"))
        await backend.ensure_service(spec("echo"))
        (task,) = await backend.tasks()
        assert (task.function, task.address, task.token) == ("hello", "10.1.0.7:8080", "secret")
        assert await backend.desired_replicas() == {"hello": 1, "echo": 0}
        status = await backend.status(task.id)
        assert status is not None and status.running
        answers["hello.shop.svc.cluster.local"] = []
        assert await backend.tasks() == []
        assert await backend.status(task.id) is None
        await backend.set_replicas("hello", 3)  # KEDA's to decide: nothing changes
        assert await backend.desired_replicas() == {"hello": 0, "echo": 0}
        assert await backend.teardown() == 0

    asyncio.run(run())


def test_without_the_replica_token_the_gateway_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FAAS_REPLICA_TOKEN", raising=False)
    backend = create_backend("kubernetes", "shop")
    with pytest.raises(EngineUnavailable, match="FAAS_REPLICA_TOKEN"):
        asyncio.run(backend.prepare())
