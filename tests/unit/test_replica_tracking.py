"""No replica is ever untracked, and the warm pool never exceeds its size, whatever fails.

A `Platform` with the container supply (runtime/supply/containers.py) runs on an
in-memory engine and replica client whose every step can be
made to fail (the engine made a container but its answer was lost, no file
descriptors left, an import error, a timeout, a failing observer) or be held so that
the caller can be cancelled there. After each start, every container the engine
holds is tracked by exactly one pool, or is being removed; what nothing could know
about is found by the reconcile.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import pytest

from runtime import reconcile
from runtime import warm_pool as warm_module
from runtime.backends.base import (
    CreatedReplica,
    ImageRequest,
    Limits,
    ListedContainer,
    ProgressCallback,
    Replica,
    ReplicaSpec,
    ReplicaStatus,
    WarmSpec,
)
from runtime.backends.docker import engine as docker_engine
from runtime.backends.docker.profile import EngineProfile
from runtime.errors import (
    EngineUnavailable,
    FunctionUnavailable,
    ReplicaStartError,
    ReplicaUnreachable,
)
from runtime.interpreter import Interpreter
from runtime.observers import PoolObserver
from runtime.platform import Platform
from runtime.pool import FunctionPool
from runtime.reconcile import Reconciler, Removals, orphans
from runtime.replica_client import ReplicaClient
from runtime.requirements import default_interpreter
from runtime.spec import load_project_text
from runtime.supply import Recipe
from runtime.supply.containers import ContainerSupply
from runtime.warm_pool import WarmPool, to_start

T = TypeVar("T")

SPEC = """\
version: 1
project: demo
gateway: {{warm_pool: {warm}}}
defaults:
  scale: {{min: 0, max: 20}}
functions:
  cold:
    handler: functions/hello.py
{extra}"""

EMFILE = OSError(errno.EMFILE, "Too many open files")
WATCHDOG_MEMORY = 16 * 1024 * 1024
"""What the fake engine measures each warm watchdog at."""


# -- a scriptable engine and replica client -------------------------------------------


class Script:
    """Faults and holds for named steps: `fail(step, exc, ...)` makes the next calls of
    `step` raise (None: succeed); `hold(step)` parks calls there until released."""

    def __init__(self) -> None:
        self.faults: dict[str, collections.deque[BaseException | None]] = collections.defaultdict(
            collections.deque
        )
        self.holds: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)

    def fail(self, step: str, *faults: BaseException | None) -> None:
        self.faults[step].extend(faults)

    def hold(self, step: str) -> asyncio.Event:
        self.holds[step] = asyncio.Event()
        return self.holds[step]

    async def step(self, step: str) -> None:
        self.entered[step].set()
        held = self.holds.get(step)
        if held is not None:
            await held.wait()
        if self.faults[step]:
            fault = self.faults[step].popleft()
            if fault is not None:
                raise fault


@dataclass
class Box:
    """One container in the fake engine."""

    id: str
    name: str
    role: str
    function: str
    created: float
    running: bool = False
    owner: str | None = None
    assigned: bool = False


class Engine:
    """An in-memory container engine with the docker backend's verbs (and warm pool).

    It keeps the backend's promise that a cancelled create leaves nothing behind;
    `create_answer` faults model an engine that made the container but whose answer
    never reached the gateway (nobody can know its id: only the reconcile finds it).
    """

    project = "demo"
    kind: Literal["containers"] = "containers"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.boxes: dict[str, Box] = {}
        self.ids = (f"c{n:04d}" for n in itertools.count())
        self.most_unassigned = 0
        """The most warm watchdogs running with no function at any moment."""
        self.stops: list[str] = []

    # what the tests look at

    def alive(self) -> list[Box]:
        return list(self.boxes.values())

    def unassigned(self) -> int:
        """Running warm watchdogs with no function, as `docker ps` would count them."""
        return sum(
            1 for b in self.boxes.values() if b.role == "warm" and b.running and not b.assigned
        )

    def _changed(self) -> None:
        self.most_unassigned = max(self.most_unassigned, self.unassigned())

    def _make(self, role: str, function: str, owner: str | None = None) -> Box:
        box = Box(next(self.ids), "", role, function, time.time(), owner=owner)
        box.name = f"faas-demo-{function or 'warm'}-{box.id}"
        self.boxes[box.id] = box
        self._changed()
        return box

    async def _answer(self, step: str, box: Box) -> None:
        """The engine made `box`; its answer may be lost, or its caller cancelled."""
        try:
            await self.script.step(step)
        except asyncio.CancelledError:
            self._remove(box.id)  # the backend's promise for a cancelled create
            raise

    # the backend's verbs

    async def prepare(self) -> None: ...

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None: ...

    async def image_id(self, image: str) -> str | None:
        return "sha256:base"

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        return False

    async def interpreter(self, image_id: str) -> Interpreter:
        return default_interpreter()

    async def create(self, spec: ReplicaSpec) -> CreatedReplica:
        await self.script.step("create")
        sandbox = self._make("sandbox", spec.function)
        sandbox.running = True
        box = self._make("replica", spec.function)
        sandbox.owner = box.id
        await self._answer("create_answer", box)
        return CreatedReplica(box.id, box.name, spec.function, spec.token, address="10.0.0.1:80")

    async def create_warm(self, spec: WarmSpec, token: str) -> CreatedReplica:
        await self.script.step("create_warm")
        box = self._make("warm", "")
        await self._answer("create_warm_answer", box)
        return CreatedReplica(box.id, box.name, "", token)

    async def start(self, created: CreatedReplica) -> Replica:
        await self.script.step("start_request")
        box = self.boxes.get(created.id)
        if box is None:
            raise EngineUnavailable(f"no such container: {created.id}")
        box.running = True
        self._changed()
        await self.script.step("start")  # started, but the answer did not come back
        return Replica(created.id, created.name, created.function, "10.0.0.1:80", created.token)

    async def assign_warm(self, replica: Replica, spec: ReplicaSpec) -> Replica:
        await self.script.step("assign")
        box = self.boxes[replica.id]
        box.assigned, box.function = True, spec.function
        box.name = f"faas-demo-{spec.function}-{box.id}"
        self._changed()
        await self.script.step("assign_answer")
        return Replica(replica.id, box.name, spec.function, replica.address, replica.token)

    async def stop(self, replica_id: str, *, grace: float = 5.0) -> None:
        self.stops.append(replica_id)
        await self.script.step("stop")
        self._remove(replica_id)

    def _remove(self, replica_id: str) -> None:
        self.boxes.pop(replica_id, None)
        for box in list(self.boxes.values()):
            if box.role == "sandbox" and box.owner == replica_id:
                del self.boxes[box.id]

    async def memory_usage(self, container_id: str) -> int | None:
        return WATCHDOG_MEMORY if container_id in self.boxes else None

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        await self.script.step("status")
        box = self.boxes.get(replica_id)
        if box is None:
            return None
        return ReplicaStatus(box.id, box.name, box.function, box.running)

    async def replicas(self) -> list[ReplicaStatus]:
        return [
            ReplicaStatus(b.id, b.name, b.function, b.running)
            for b in self.boxes.values()
            if b.role == "replica" or b.assigned
        ]

    async def containers(self) -> list[ListedContainer]:
        await self.script.step("list")
        return [
            ListedContainer(
                b.id,
                b.name,
                "replica" if b.assigned else b.role,
                b.created,
                b.running,
                b.owner if b.role == "sandbox" else None,
            )
            for b in self.boxes.values()
        ]

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        return ""

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None: ...

    async def teardown(self) -> int:
        count = len(self.boxes)
        self.boxes.clear()
        return count

    async def close(self) -> None: ...


class Client:
    """The replica client's start verbs, scripted by the same `Script`."""

    script: Script

    def __init__(self, **_: object) -> None:
        self.max_answer = 0

    async def wait_ready(
        self,
        replica: Replica,
        *,
        deadline: float,
        is_alive: Callable[[Replica], Awaitable[None]],
    ) -> None:
        await is_alive(replica)
        await self.script.step("ready_warm" if not replica.function else "ready")

    async def init(self, replica: Replica, archive: bytes) -> None:
        await self.script.step("init")

    async def close(self) -> None: ...


# -- the platform under test --------------------------------------------------------


@dataclass
class Rig:
    platform: Platform
    engine: Engine
    script: Script

    @property
    def pool(self) -> FunctionPool:
        return self.platform.pools["cold"]

    @property
    def supply(self) -> ContainerSupply:
        return cast(ContainerSupply, self.platform.supply)

    def untracked(self) -> set[str]:
        """Containers in the engine that no pool tracks and that are not being removed
        (a network sandbox is its replica's)."""
        tracked = self.supply.tracked() | self.supply.removals.ids()
        return {
            box.id
            for box in self.engine.alive()
            if box.id not in tracked and (box.owner is None or box.owner not in tracked)
        }

    def assert_tracked_once(self) -> None:
        supply = self.supply
        owners = [supply.container_ids(p) for p in self.platform.pools.values()]
        owners.extend(warm.container_ids() for warm in supply.warm.values())
        owners.append(supply.removals.ids())
        for first, second in itertools.combinations(owners, 2):
            assert not first & second, "a container tracked twice"
        assert self.untracked() == set()

    @property
    def warm(self) -> WarmPool:
        """The one warm pool (every warm function here is of one kind)."""
        (warm,) = self.supply.warm.values()
        return warm

    def warm_full(self) -> bool:
        """The warm pool is measured and holds as many ready as it keeps."""
        if len(self.supply.warm) != 1:
            return False
        return self.warm.per_watchdog is not None and self.warm.ready == self.warm.size

    async def settle(self, until: Callable[[], object] = lambda: True) -> None:
        """Let background removals (and, with `until`, refills) finish."""
        for _ in range(2000):
            await self.supply.removals.wait()
            await asyncio.sleep(0.001)
            if not self.supply.removals.ids() and until():
                return
        raise AssertionError("the platform did not settle")

    async def close(self) -> None:
        await self.platform.shutdown()


def rig(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    warm: int = 0,
    warm_functions: int = 0,
) -> Rig:
    monkeypatch.setattr(reconcile, "REMOVE_BACKOFF", 0.0)
    monkeypatch.setattr(warm_module, "RETRY_DELAY", 0.01)
    (tmp_path / "functions").mkdir(exist_ok=True)
    (tmp_path / "functions" / "hello.py").write_text("def handle(event, context):\n    return 1\n")
    extra = "".join(f"  warm{n}:\n    handler: functions/hello.py\n" for n in range(warm_functions))
    project = load_project_text(
        SPEC.format(warm=warm, extra=extra), filename="functions.yaml", root=tmp_path
    )
    script = Script()
    Client.script = script
    engine = Engine(script)
    platform = Platform(project, engine, client=cast(ReplicaClient, Client()))
    for pool in platform.pools.values():
        platform._built(pool, ImageRequest(pool.name, "faas-function:test", b""))
    return Rig(platform, engine, script)


async def start_warm_pool(r: Rig, *, wait: bool = True) -> None:
    pools = list(r.platform.pools.values())
    for pool in pools:
        r.supply.use(pool, Recipe("faas-function:test", code={"app/hello.py": b"x"}))
        if not pool.name.startswith("warm"):
            r.supply._starts(pool).warm_code = None  # as for a function too large to send
    await r.supply.build(pools, {pools[0].spec.base_image: "sha256:base"}, lambda *_: None)
    await r.supply.start(pools, lambda *_: None)
    if wait:
        await r.settle(until=r.warm_full)


async def until(condition: Callable[[], object], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(test())


# -- pure decisions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ready", "starting", "handing", "removing", "wanted"),
    [
        (2, 0, 0, 0, 0, 2),  # empty: fill it
        (2, 1, 0, 0, 0, 1),
        (2, 0, 2, 0, 0, 0),  # both on their way
        (2, 1, 1, 0, 0, 0),
        (2, 0, 1, 1, 0, 0),  # one being given a function still counts
        (2, 0, 0, 0, 1, 1),  # a failed one keeps its place until it is gone
        (2, 0, 0, 0, 2, 0),
        (2, 0, 3, 0, 1, 0),  # never negative
        (2, 2, 0, 5, 0, 0),
        (0, 0, 0, 0, 0, 0),
        (5, 1, 1, 1, 1, 1),
    ],
)
def test_how_many_warm_watchdogs_a_refill_starts(
    size: int, ready: int, starting: int, handing: int, removing: int, wanted: int
) -> None:
    assert to_start(size, ready, starting, handing, removing) == wanted


def listed(
    id: str, age: float, role: str = "replica", owner: str | None = None, abandoned: bool = False
) -> ListedContainer:
    return ListedContainer(id, f"faas-demo-x-{id}", role, 1000.0 - age, True, owner, abandoned)


@pytest.mark.parametrize(
    ("container", "tracked", "orphan"),
    [
        (listed("a", 300), {"a"}, False),  # a pool's replica
        (listed("a", 300), set(), True),  # nobody's, and old: lost
        (listed("a", 5), set(), False),  # nobody's yet: its creation may be on its way back
        (listed("a", 60), set(), True),  # exactly the grace
        (listed("w", 300, "warm"), {"w"}, False),  # the warm pool's
        (listed("w", 300, "warm"), set(), True),
        (listed("s", 300, "sandbox", owner="a"), {"a"}, False),  # its replica is tracked
        (listed("s", 300, "sandbox", owner="a"), set(), True),  # its replica is gone
        (listed("s", 300, "sandbox"), {"a"}, True),  # no known replica: a failed create's
        (listed("s", 1, "sandbox"), set(), False),  # a replica being created next to it
        (listed("s", 1, "sandbox", abandoned=True), set(), True),  # its create failed
    ],
)
def test_which_listed_containers_are_orphans(
    container: ListedContainer, tracked: set[str], orphan: bool
) -> None:
    found = orphans([container], tracked, now=1000.0, grace=60.0)
    assert found == ([container] if orphan else [])


# -- cold starts on containers --------------------------------------------------------


CONTAINER_FAULTS: dict[str, tuple[str, BaseException]] = {
    "the engine refused the create": ("create", EngineUnavailable("creating: refused")),
    "the start failed": ("start_request", EngineUnavailable("starting: refused")),
    "started, but the answer was lost": ("start", EMFILE),
    "no file descriptors while waiting for ready": ("ready", EMFILE),
    "not ready in time": ("ready", ReplicaUnreachable("not ready in time")),
    "the handler failed to import": ("ready", FunctionUnavailable("import failed")),
    "the engine failed the liveness check": ("status", EngineUnavailable("inspect: EMFILE")),
    "an unexpected error": ("ready", RuntimeError("can't start new thread")),
}


@pytest.mark.parametrize("stop_failures", [0, 2], ids=["removed", "removal retried"])
@pytest.mark.parametrize("fault", list(CONTAINER_FAULTS))
def test_a_container_start_failing_at_any_step_leaves_nothing_untracked(
    fault: str, stop_failures: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        step, error = CONTAINER_FAULTS[fault]
        r.script.fail(step, error)
        r.script.fail("stop", *[EngineUnavailable("stopping: EMFILE")] * stop_failures)
        await r.supply.start_replica(r.pool)  # a failed start is logged, not raised
        assert r.pool.starting == 0
        await r.settle()
        r.assert_tracked_once()
        assert r.pool.replicas == []
        assert r.engine.alive() == []  # the failed replica and its sandbox are gone
        if isinstance(error, FunctionUnavailable):
            assert r.pool.error is not None
        await r.close()

    run(main)


def test_an_observer_that_fails_does_not_lose_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)

        class Broken(PoolObserver):
            def replica_started(self, *_: object) -> None:
                raise OSError(errno.EMFILE, "Too many open files")

            def cold_start(self, *_: object) -> None:
                raise OSError(errno.EMFILE, "Too many open files")

        r.platform.observe(Broken())
        await r.supply.start_replica(r.pool)
        (handle,) = r.pool.replicas
        assert r.engine.boxes[handle.replica.id].running
        await r.settle()
        r.assert_tracked_once()
        await r.close()

    run(main)


def test_a_created_container_whose_answer_was_lost_is_found_by_the_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        r.script.fail("create_answer", EMFILE)
        await r.supply.start_replica(r.pool)
        await r.settle()
        lost = r.untracked()  # nobody can know them but the engine
        assert sorted(r.engine.boxes[c].role for c in lost) == ["replica", "sandbox"]
        reconciler = Reconciler(r.engine, r.supply.tracked, r.supply.removals, grace=0.0)
        with caplog.at_level(logging.WARNING, logger="faas.reconcile"):
            found = await reconciler.sweep()
            await r.settle()
        assert {c.id for c in found} == lost
        assert r.engine.alive() == []
        r.assert_tracked_once()
        records = [r for r in caplog.records if "nothing tracks" in r.getMessage()]
        assert sorted(record.__dict__["role"] for record in records) == ["replica", "sandbox"]
        assert {record.__dict__["container"] for record in records} == {c.name for c in found}
        # a young one is left alone: its creation may still be on its way back
        r.script.fail("create_answer", EMFILE)
        await r.supply.start_replica(r.pool)
        assert await Reconciler(r.engine, r.supply.tracked, r.supply.removals)\
            .sweep() == []  # fmt: skip
        await r.close()

    run(main)


def test_a_removal_is_retried_until_the_engine_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        failures = reconcile.LOGGED_ATTEMPTS + 3
        r.script.fail("ready", EMFILE)
        r.script.fail("stop", *[EngineUnavailable("EMFILE")] * failures)
        removing = r.script.hold("stop")
        with caplog.at_level(logging.WARNING, logger="faas.reconcile"):
            await r.supply.start_replica(r.pool)
            for _ in range(failures):
                await r.script.entered["stop"].wait()
                r.script.entered["stop"].clear()
                # tracked all along: the reconcile leaves it to the removal
                assert r.untracked() == set()
                reconciler = Reconciler(r.engine, r.supply.tracked, r.supply.removals, grace=0.0)
                assert await reconciler.sweep() == []
                removing.set()
                await asyncio.sleep(0)
                removing.clear()
            removing.set()
            await r.settle()
        assert r.engine.alive() == []
        assert r.engine.stops.count(r.engine.stops[0]) == failures + 1
        # the first failures are logged one by one, then only now and then
        attempts = [r for r in caplog.records if "removing a container failed" in r.getMessage()]
        assert [a.__dict__["attempt"] for a in attempts] == [1, 2, 3, 4]
        r.assert_tracked_once()
        await r.close()

    run(main)


@pytest.mark.parametrize(
    "step", ["create", "create_answer", "start_request", "start", "ready", "stop"]
)
def test_a_container_start_cancelled_at_any_step_leaves_nothing_untracked(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        if step == "stop":  # cancelled while the failed start's container is removed
            r.script.fail("ready", EMFILE)
        release = r.script.hold(step)
        task = asyncio.get_running_loop().create_task(r.supply.start_replica(r.pool))
        await r.script.entered[step].wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        release.set()
        await r.settle()
        r.assert_tracked_once()
        assert r.pool.replicas == [] and r.pool.starting == 0
        assert r.engine.alive() == []
        await r.close()

    run(main)


def test_a_start_that_ends_after_its_function_was_removed_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        release = r.script.hold("ready")
        task = asyncio.get_running_loop().create_task(r.supply.start_replica(r.pool))
        await r.script.entered["ready"].wait()
        pool = r.platform.pools.pop("cold")  # as `apply` does for a removed function
        await r.supply.remove(pool)
        release.set()
        await task
        await r.settle()
        assert pool.replicas == []
        assert r.engine.alive() == []
        r.assert_tracked_once()
        await r.close()

    run(main)


def test_a_caller_going_away_does_not_orphan_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller waits in the queue; the start is the autoscaler's and completes."""

    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        release = r.script.hold("ready")
        scaler = r.platform.autoscaler
        loop_task = asyncio.get_running_loop().create_task(scaler.run())
        call = asyncio.get_running_loop().create_task(r.pool.acquire())
        await r.script.entered["ready"].wait()
        call.cancel()  # the caller disconnected
        await asyncio.gather(call, return_exceptions=True)
        release.set()
        await asyncio.sleep(0.05)
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await r.settle()
        r.assert_tracked_once()
        assert len(r.pool.replicas) == 1
        await r.close()

    run(main)


# -- warm starts and the warm pool --------------------------------------------------------


WARM_FAULTS: dict[str, tuple[str, BaseException]] = {
    "the update was refused": ("assign", EngineUnavailable("update: refused")),
    "renamed, but the answer was lost": ("assign_answer", EMFILE),
    "no file descriptors for the init": ("init", ReplicaUnreachable("replica: OSError")),
    "the handler failed to import": ("init", FunctionUnavailable("import failed")),
    "an unexpected error in the init": ("init", EMFILE),
}


@pytest.mark.parametrize("stop_failures", [0, 2], ids=["removed", "removal retried"])
@pytest.mark.parametrize("fault", list(WARM_FAULTS))
def test_a_warm_start_failing_at_any_step_leaves_nothing_untracked(
    fault: str, stop_failures: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch, warm=2, warm_functions=1)
        await start_warm_pool(r)
        pool = r.platform.pools["warm0"]
        assert r.warm.ready == 2
        step, error = WARM_FAULTS[fault]
        # both warm attempts fail the same way
        r.script.fail(step, error, error)
        r.script.fail("stop", *[EngineUnavailable("stopping: EMFILE")] * stop_failures)
        await r.supply.start_replica(pool)
        await r.settle(until=r.warm_full)
        r.assert_tracked_once()
        assert r.engine.most_unassigned <= 2
        assert r.warm.held <= 2
        if isinstance(error, FunctionUnavailable):
            assert pool.error is not None and pool.replicas == []
        else:  # two warm watchdogs failed: the start took a container of its own
            assert len(pool.replicas) == 1
        await r.close()

    run(main)


MAKE_STEPS = ["create_warm", "create_warm_answer", "start", "ready_warm"]


@pytest.mark.parametrize("step", ["assign", "assign_answer", "init"])
def test_a_warm_start_cancelled_while_it_gives_the_watchdog_a_function(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch, warm=1, warm_functions=1)
        pool = r.platform.pools["warm0"]
        await start_warm_pool(r)
        (taken,) = r.engine.alive()
        release = r.script.hold(step)
        task = asyncio.get_running_loop().create_task(r.supply.start_replica(pool))
        await r.script.entered[step].wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        release.set()
        await r.settle(until=r.warm_full)
        r.assert_tracked_once()
        assert pool.replicas == [] and pool.starting == 0
        # the taken watchdog is gone; its successor waits in the pool
        (successor,) = r.engine.alive()
        assert successor.id != taken.id and successor.role == "warm"
        assert r.engine.most_unassigned <= 1
        await r.close()

    run(main)


@pytest.mark.parametrize("step", MAKE_STEPS)
def test_a_start_cancelled_while_it_waits_for_a_watchdog_on_its_way(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch, warm=1, warm_functions=1)
        pool = r.platform.pools["warm0"]
        release = r.script.hold(step)
        await start_warm_pool(r, wait=False)
        warm = r.warm
        assert warm is not None
        task = asyncio.get_running_loop().create_task(r.supply.start_replica(pool))
        await until(lambda: warm._waiting, "the start waits for the watchdog")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        release.set()
        await r.settle(until=r.warm_full)
        r.assert_tracked_once()
        assert pool.replicas == [] and pool.starting == 0
        assert [b.role for b in r.engine.alive()] == ["warm"]  # back in the pool
        assert r.engine.most_unassigned <= 1
        await r.close()

    run(main)


@pytest.mark.parametrize("step", MAKE_STEPS)
def test_closing_the_warm_pool_while_it_makes_a_watchdog_leaves_nothing(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch, warm=2, warm_functions=1)
        release = r.script.hold(step)
        await start_warm_pool(r, wait=False)
        warm = r.warm
        assert warm is not None
        await r.script.entered[step].wait()
        await warm.close()
        release.set()
        await r.settle()
        assert r.engine.alive() == []  # before the engine teardown
        await r.close()

    run(main)


def test_the_warm_pool_never_exceeds_its_size_under_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many cold starts at once while warm watchdogs keep failing, removals fail, and
    starts give up waiting: the pool never holds more than its size."""

    async def main() -> None:
        monkeypatch.setattr(warm_module, "TAKE_WAIT", 0.005)
        r = rig(tmp_path, monkeypatch, warm=2, warm_functions=8)
        await start_warm_pool(r)
        warm = r.warm
        assert warm is not None
        r.script.fail("ready_warm", EMFILE, None, ReplicaStartError("exited"), None, EMFILE)
        r.script.fail("init", ReplicaUnreachable("EMFILE"), None, EMFILE)
        r.script.fail("stop", EngineUnavailable("EMFILE"), None, EngineUnavailable("EMFILE"))
        r.script.fail("create_warm_answer", None, EngineUnavailable("lost"))
        slow = r.script.hold("ready_warm")  # watchdogs on their way outlast the waits

        sizes: list[int] = []

        async def watch() -> None:
            while True:
                sizes.append(warm.held)
                await asyncio.sleep(0)

        watcher = asyncio.get_running_loop().create_task(watch())
        starts = [
            asyncio.get_running_loop().create_task(r.supply.start_replica(pool))
            for name, pool in r.platform.pools.items()
            if name.startswith("warm")
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        slow.set()
        await asyncio.gather(*starts)
        await r.settle(until=r.warm_full)  # after the pause that follows a failure
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

        assert max(sizes) <= 2
        assert r.engine.most_unassigned <= 2
        # the one whose creation's answer was lost is untracked: the reconcile's
        assert len(r.untracked()) <= 1
        await Reconciler(r.engine, r.supply.tracked, r.supply.removals, grace=0.0).sweep()
        await r.settle(until=r.warm_full)
        r.assert_tracked_once()
        started = sum(len(p.replicas) for p in r.platform.pools.values())
        assert started == 16  # every start got a replica, warm or its own container
        assert r.engine.unassigned() <= 2
        await r.close()

    run(main)


def test_a_failed_watchdog_keeps_its_place_until_it_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the engine cannot remove a failed watchdog, the pool does not replace it:
    the engine never runs more unassigned watchdogs than the pool's size."""

    async def main() -> None:
        r = rig(tmp_path, monkeypatch, warm=1, warm_functions=1)
        await start_warm_pool(r)
        warm = r.warm
        assert warm is not None
        (failed,) = r.engine.alive()
        r.script.fail("init", ReplicaUnreachable("EMFILE"), ReplicaUnreachable("EMFILE"))
        r.script.fail("stop", *[EngineUnavailable("EMFILE")] * 5)
        removing = r.script.hold("stop")
        task = asyncio.get_running_loop().create_task(
            r.supply.start_replica(r.platform.pools["warm0"])
        )
        await r.script.entered["stop"].wait()
        for _ in range(20):
            await asyncio.sleep(0.001)
            assert failed.id in r.supply.removals.ids()
            assert warm.held == 1 and r.engine.unassigned() <= 1  # not replaced yet
        removing.set()
        await task
        await r.settle(until=r.warm_full)
        assert failed.id not in r.engine.boxes
        assert r.engine.most_unassigned <= 1
        r.assert_tracked_once()
        await r.close()

    run(main)


def test_waiting_starts_do_not_grow_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starts that give up waiting used to leave their watchdog behind, ready: seven
    warm watchdogs for a pool of two."""

    async def main() -> None:
        monkeypatch.setattr(warm_module, "TAKE_WAIT", 0.001)
        r = rig(tmp_path, monkeypatch, warm=2, warm_functions=6)
        await start_warm_pool(r)
        slow = r.script.hold("ready_warm")
        starts = [
            asyncio.get_running_loop().create_task(r.supply.start_replica(pool))
            for name, pool in r.platform.pools.items()
            if name.startswith("warm")
        ]
        await asyncio.gather(*starts)  # 2 warm, 4 gave up waiting and took containers
        slow.set()
        await r.settle(until=r.warm_full)
        assert r.warm.ready == 2
        assert r.engine.most_unassigned <= 2
        r.assert_tracked_once()
        await r.close()

    run(main)


# -- the reconcile in the autoscaler's loop ------------------------------------------


def test_the_autoscaler_sweeps_orphans_off_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        scaler = r.platform.autoscaler
        r.supply.reconciler.grace = 0.0
        stray = r.engine._make("replica", "cold")  # e.g. left by an earlier run
        stray.running = True
        loop_task = asyncio.get_running_loop().create_task(scaler.run())
        for _ in range(200):
            if stray.id not in r.engine.boxes:
                break
            await asyncio.sleep(0.01)
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        assert stray.id not in r.engine.boxes
        await r.close()

    run(main)


def test_a_sweep_that_cannot_list_tries_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        r = rig(tmp_path, monkeypatch)
        r.script.fail("list", EngineUnavailable("listing: EMFILE"))
        await r.supply.sweep()  # logged, not raised
        await r.close()

    run(main)


def test_removals_retry_and_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "REMOVE_BACKOFF", 0.0)

    async def main() -> None:
        script = Script()
        engine = Engine(script)
        box = engine._make("replica", "f")
        removals = Removals(engine)
        script.fail("stop", EngineUnavailable("EMFILE"), EMFILE)
        settled: list[bool] = []
        task = removals.remove(box.id, then=lambda: settled.append(True))
        assert removals.remove(box.id) is task  # not removed twice
        assert removals.ids() == {box.id}
        await task
        assert settled == [True] and removals.ids() == set()
        assert engine.stops == [box.id] * 3 and engine.boxes == {}

    run(main)


# -- the docker backend keeps its promise for a cancelled create ---------------------


class HeldEngineAPI:
    """docker-py's low-level verbs the docker backend's create uses; create is held."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.removed: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        self.entered.set()
        self.release.wait(10)
        container = f"id-{len(self.created)}"
        self.created.append(container)
        return {"Id": container}

    def start(self, container: str) -> None: ...

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"NetworkSettings": {"Networks": {"faas-demo": {"IPAddress": "10.0.0.2"}}}}

    def remove_container(self, container: str, **_: Any) -> None:
        self.removed.append(container)

    def networks(self, **_: Any) -> list[Any]:
        return [{"Id": "net"}]

    def inspect_network(self, name: str) -> dict[str, Any]:
        return {"IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]}}

    def close(self) -> None: ...


@pytest.mark.parametrize("warm", [False, True], ids=["replica", "warm watchdog"])
def test_a_cancelled_create_is_removed_once_the_engine_answers(
    warm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.backends.docker import DockerBackend

    api = HeldEngineAPI()
    profile = EngineProfile("Docker Engine", "20.10")
    monkeypatch.setattr(docker_engine, "connect", lambda engine: (api, profile))

    async def main() -> None:
        backend = DockerBackend("demo", access="address")
        creating = (
            backend.create_warm(WarmSpec("img", Limits(64 * 1024 * 1024, 1.0, 64)), "t")
            if warm
            else backend.create(ReplicaSpec(function="f", image="img", token="t"))
        )
        task = asyncio.get_running_loop().create_task(creating)
        await asyncio.to_thread(api.entered.wait, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        api.release.set()
        made = 1 if warm else 2  # a replica has a network sandbox too
        # every container the engine made is removed once its answer comes back
        await until(lambda: len(api.removed) == made, "the cancelled creation removed")
        assert sorted(api.removed) == sorted(api.created)
        await asyncio.to_thread(backend._executor.shutdown, wait=True)
        await backend.close()

    run(main)


class FailingEngineAPI(HeldEngineAPI):
    """The engine makes the sandbox, then every call fails: no descriptors left."""

    def create_container(self, **kwargs: Any) -> dict[str, str]:
        if self.created:
            raise OSError(errno.EMFILE, "Too many open files")
        self.created.append("sandbox")
        return {"Id": "sandbox"}

    def remove_container(self, container: str, **_: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    def containers(self, **_: Any) -> list[dict[str, Any]]:
        labels = {"faas.project": "demo", "faas.function": "f", "faas.role": "sandbox"}
        return [
            {"Id": "sandbox", "Names": ["/faas-demo-f-1-net"], "Labels": labels,
             "State": "running", "Created": int(time.time())}
        ]  # fmt: skip


def test_a_sandbox_a_failed_create_could_not_remove_is_the_reconciles_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runtime.backends.docker import DockerBackend

    api = FailingEngineAPI()
    profile = EngineProfile("Docker Engine", "20.10")
    monkeypatch.setattr(docker_engine, "connect", lambda engine: (api, profile))

    async def main() -> None:
        backend = DockerBackend("demo", access="address")
        with pytest.raises(EngineUnavailable):
            await backend.create(ReplicaSpec(function="f", image="img", token="t"))
        (sandbox,) = await backend.containers()
        assert sandbox.role == "sandbox" and sandbox.abandoned and sandbox.owner is None
        # no grace: nobody will ever come back for it
        assert orphans([sandbox], set(), now=time.time(), grace=60.0) == [sandbox]
        await asyncio.to_thread(backend._executor.shutdown, wait=True)
        await backend.close()

    run(main)
