"""`faas deploy` on a real multi-node swarm: Docker engines in containers (nodes.py).

The tests share one cluster (three managers, two workers) and run in this order:
the examples on the workers; the test project with two gateways on two managers;
a manager restarting with events stored; a worker killed under load, last, since
the cluster has one worker less afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import yaml

from tests.cluster.harness import (
    PROJECT_DIR,
    Deployed,
    Recorder,
    deploy,
    healthy,
    project_leftovers,
    remove,
)
from tests.cluster.nodes import Cluster, Node
from tests.conftest import REPO, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(600)]

CALLS = 500
EVENTS = 1000
CALL_SECONDS = 1.0
EVENT_SECONDS = 0.2
LEFTOVER_WAIT = 30.0


def tasks_of(cluster: Cluster, service: str) -> list[dict[str, Any]]:
    """The service's tasks that are meant to run, with the node each is on."""
    with contextlib.closing(cluster.manager.engine()) as engine:
        nodes = {node.id: node.attrs["Description"]["Hostname"] for node in engine.nodes.list()}
        found = engine.api.tasks(filters={"service": service, "desired-state": "running"})
    return [{**task, "node": nodes.get(task.get("NodeID", ""), "?")} for task in found]


def project_tasks(cluster: Cluster, project: str) -> list[dict[str, Any]]:
    """The tasks of every service of `project` but its gateway's."""
    with contextlib.closing(cluster.manager.engine()) as engine:
        found = engine.api.services(filters={"label": f"faas.project={project}"})
        names = [s["Spec"]["Name"] for s in found if not s["Spec"]["Name"].endswith("-gateway")]
    return [task for name in names for task in tasks_of(cluster, name)]


def replicas_of(cluster: Cluster, service: str) -> int:
    with contextlib.closing(cluster.manager.engine()) as engine:
        spec = engine.api.inspect_service(service)["Spec"]
    return int(spec["Mode"]["Replicated"]["Replicas"])


def worker_images(node: Node) -> list[str]:
    """The repository digests of the images a node holds: what it pulled."""
    with contextlib.closing(node.engine()) as engine:
        return [digest for image in engine.images.list() for digest in image.attrs["RepoDigests"]]


def serving_gateways(cluster: Cluster, project: str) -> list[str]:
    """Where the project's gateway tasks answer now (they move when a manager restarts)."""
    running = tasks_of(cluster, f"faas-{project}-gateway")
    names = sorted({task["node"] for task in running if task["Status"]["State"] == "running"})
    urls = [cluster.node(name).gateway_url for name in names]
    return [url for url in urls if healthy(url)]


def assert_nothing_left(cluster: Cluster, project: str) -> None:
    """Once `faas deploy --remove` returns, the manager holds nothing of the project; the
    other nodes' agents stop and remove their containers and networks within seconds."""
    manager = project_leftovers(cluster.manager, project)
    assert manager == [], manager
    live = [node for node in cluster.nodes if node.name not in cluster.killed]

    def left() -> dict[str, list[str]]:
        return {n.name: found for n in live if (found := project_leftovers(n, project))}

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not left(), LEFTOVER_WAIT, "the nodes to remove the project")
    assert left() == {}


def get(url: str, timeout: float = 30) -> httpx.Response:
    return httpx.get(url, timeout=timeout, trust_env=False)


@pytest.fixture(scope="module")
def project(
    cluster: Cluster, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """tests/cluster/project deployed with two gateway tasks, removed at the end."""
    root = tmp_path_factory.mktemp("cluster") / "project"
    deployed = deploy(
        cluster, PROJECT_DIR, root, "cluster", "--replicas", "2",
        REGISTRY=cluster.registry, NATS_URL=cluster.nats_url, SINK_URL=recorder.url,
    )  # fmt: skip
    yield deployed
    remove(cluster, deployed)
    assert_nothing_left(cluster, deployed.project)


def test_examples_run_on_workers_from_images_they_pulled(cluster: Cluster, tmp_path: Path) -> None:
    root = tmp_path / "examples"
    root.mkdir()
    shutil.copytree(REPO / "functions", root / "functions")
    spec = yaml.safe_load((REPO / "functions.yaml").read_text())
    spec["gateway"]["host"] = "0.0.0.0"
    spec["cluster"] = {"backend": "swarm", "registry": "${REGISTRY}",
                       "placement": ["node.role==worker"]}  # fmt: skip
    (root / "functions.yaml").write_text(yaml.safe_dump(spec))
    deployed = deploy(cluster, root, tmp_path / "deployed", "examples", REGISTRY=cluster.registry)
    try:
        (url,) = deployed.urls
        assert url.startswith("http://") and url.endswith(":18080")
        hello = get(f"{url}/hello")
        assert (hello.status_code, hello.text) == (200, "Hello, world!\n")
        echo = httpx.post(f"{url}/echo", json={"n": 1}, timeout=30, trust_env=False)
        assert echo.status_code == 200 and echo.json()["json"] == {"n": 1}

        # Every task that can run function code (the functions' own, the warm services',
        # the holder's) runs on a worker, from the registry's image
        # pinned by digest, which that worker pulled.
        workers = {node.name for node in cluster.by_role("worker")}
        tasks = project_tasks(cluster, "examples")
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        roles = {t["Spec"]["ContainerSpec"]["Labels"].get("faas.role", "function") for t in running}
        assert "warm" in roles, roles  # the calls were served by claimed warm tasks
        assert {task["node"] for task in running} <= workers, running
        for task in running:
            image = task["Spec"]["ContainerSpec"]["Image"]
            assert image.startswith(f"{cluster.registry}/faas-") and "@sha256:" in image
            repository, _, digest = image.partition("@")
            pulled = worker_images(cluster.node(task["node"]))
            assert f"{repository.rpartition(':')[0]}@{digest}" in pulled
        # The gateway image is in the registry too: its task runs on any manager.
        (gateway,) = tasks_of(cluster, "faas-examples-gateway")
        assert cluster.node(gateway["node"]).role == "manager"
    finally:
        remove(cluster, deployed)
    assert_nothing_left(cluster, "examples")


def test_two_gateways_on_two_managers_share_one_queue(
    cluster: Cluster, project: Deployed, recorder: Recorder
) -> None:
    assert len(project.urls) == 2
    gateway_nodes = [task["node"] for task in tasks_of(cluster, "faas-cluster-gateway")]
    assert len(set(gateway_nodes)) == 2
    assert {cluster.node(name).role for name in gateway_nodes} == {"manager"}
    first, second = project.urls
    for url in project.urls:
        assert get(f"{url}/hello").text == "Hello from the cluster\n"
    # Events published to either gateway are taken from the shared streams by both.
    for index in range(40):
        url = project.urls[index % 2]
        published = httpx.post(f"{url}/events/jobs", json={"key": f"share-{index}",
                               "seconds": 0.05}, timeout=10, trust_env=False)  # fmt: skip
        assert published.status_code == 202, published.text
    wait_for(lambda: len({r.key for r in recorder.of("finish", "share-")}) == 40, 60,
             "all 40 events to be handled")  # fmt: skip
    workers = {node.address for node in cluster.by_role("worker")}
    assert {run.node for run in recorder.of("finish", "share-")} <= workers
    assert second != first


def test_a_manager_restarting_loses_no_stored_event(
    cluster: Cluster, project: Deployed, recorder: Recorder
) -> None:
    """Events stored in NATS outlive the gateway that took them and the manager it ran on."""
    gateway_nodes = [task["node"] for task in tasks_of(cluster, "faas-cluster-gateway")]
    # Not the first manager: the registry runs there, and a restart would stop it.
    restarted = cluster.node(next(n for n in gateway_nodes if n != cluster.manager.name))
    survivor = next(url for url in project.urls if restarted.address not in url)
    for index in range(100):
        published = httpx.post(f"{survivor}/events/jobs", json={"key": f"stored-{index}",
                               "seconds": 0.2}, timeout=10, trust_env=False)  # fmt: skip
        assert published.status_code == 202, published.text
    cluster.restart(restarted)
    wait_for(lambda: len({r.key for r in recorder.of("finish", "stored-")}) == 100, 120,
             "all 100 stored events to be handled")  # fmt: skip
    # Swarm runs two gateway tasks again, on two managers, and both answer.
    wait_for(lambda: len(serving_gateways(cluster, "cluster")) == 2, 120,
             "two gateways to answer again")  # fmt: skip


async def _load(urls: list[str]) -> tuple[dict[str, int], set[str]]:
    """CALLS calls (each CALL_SECONDS long) and EVENTS events, spread over both gateways,
    all at once; returns each call's status by key and the keys of the accepted events.
    aiohttp rather than httpx: the generator must not starve on this 2-core machine."""
    statuses: dict[str, int] = {}
    published: set[str] = set()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(url: str, payload: dict[str, Any]) -> int:
            async with session.post(url, json=payload) as response:
                await response.read()
                return response.status

        async def call(index: int) -> None:
            key = f"call-{index}"
            payload = {"key": key, "seconds": CALL_SECONDS}
            statuses[key] = await post(f"{urls[index % 2]}/work", payload)

        async def publish(index: int) -> None:
            key = f"event-{index}"
            payload = {"key": key, "seconds": EVENT_SECONDS}
            if await post(f"{urls[index % 2]}/events/jobs", payload) == 202:
                published.add(key)

        await asyncio.gather(*(publish(i) for i in range(EVENTS)), *(call(i) for i in range(CALLS)))
    return statuses, published


def test_a_worker_killed_under_load_loses_nothing(
    cluster: Cluster, project: Deployed, recorder: Recorder
) -> None:
    urls = wait_for(lambda: serving_gateways(cluster, "cluster"), 60, "the gateways")
    assert len(urls) == 2
    loop = asyncio.new_event_loop()
    load = loop.create_task(_load(urls))
    # Once calls run on both workers, kill one of them, calls and deliveries in flight.
    workers = cluster.by_role("worker")

    def busy_on_both() -> bool:
        started = {run.node for run in recorder.of("start", "call-")}
        return {node.address for node in workers} <= started

    loop.run_until_complete(asyncio.sleep(0))
    deadline = time.monotonic() + 60
    while not busy_on_both() and time.monotonic() < deadline:
        loop.run_until_complete(asyncio.sleep(0.1))
    assert busy_on_both(), "calls did not start on both workers"
    victim = workers[0]
    killed_at = time.time()
    cluster.kill(victim)
    statuses, published = loop.run_until_complete(load)
    loop.close()

    starts = collections.Counter(run.key for run in recorder.of("start", "call-"))
    started_on = {run.key: run.node for run in recorder.of("start", "call-")}
    finishes = {run.key for run in recorder.of("finish", "call-")}
    failed = {key for key, status in statuses.items() if status != 200}
    assert len(statuses) == CALLS
    assert set(statuses.values()) <= {200, 502}, collections.Counter(statuses.values())
    # A call runs at most once: none started twice, none that answered 502 finished.
    assert max(starts.values()) == 1, [key for key, n in starts.items() if n > 1]
    assert not failed & finishes
    # The 502s are calls sent to the lost node: each started there or nowhere.
    assert failed, "no call was running on the killed node"
    assert {started_on.get(key, victim.address) for key in failed} == {victim.address}
    assert {key for key, status in statuses.items() if status == 200} <= finishes
    # Every event was delivered to completion at least once.
    assert len(published) == EVENTS
    wait_for(lambda: {r.key for r in recorder.of("finish", "event-")} >= published, 180,
             "every event to be handled")  # fmt: skip
    # Swarm moved the work to the surviving worker, then everything scales back to zero.
    survivor = workers[1].address
    assert any(r.node == survivor and r.at > killed_at for r in recorder.of("start"))
    for function in ("work", "consume"):
        wait_for(lambda f=function: replicas_of(cluster, f"faas-cluster-{f}") == 0, 120,
                 f"{function} to return to zero")  # fmt: skip
    for url in urls:
        assert healthy(url)
    deliveries = collections.Counter(r.key for r in recorder.of("finish", "event-"))
    print(
        f"\nworker {victim.name} killed: {len(failed)} of {CALLS} calls answered 502 "
        f"({len(failed & set(started_on))} had started there); events delivered "
        f"{sum(deliveries.values())} times for {EVENTS} published"
    )
