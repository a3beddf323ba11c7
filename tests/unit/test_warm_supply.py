"""Warm pools per kind of function in the container supply (runtime/supply/containers.py).

A `Platform` built from a functions.yaml on the in-memory engine of
tests/unit/test_replica_tracking.py, its requirements "resolved" into small fake
packages (`deps/<pkg>/__init__.py`): functions with the same installed requirements
share a warm pool, each pool's watchdogs are made from its kind's image and
preload, a cold start takes a watchdog of its own kind, pools grow with demand and
shrink after the window, stay within the memory budget, open and close with the
functions that use them, and nothing is made for a function at zero.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from runtime import reconcile, requirements
from runtime import warm_pool as warm_module
from runtime.backends.base import (
    CreatedReplica,
    ImageRequest,
    ProgressCallback,
    ReplicaSpec,
    WarmSpec,
)
from runtime.platform import Platform
from runtime.pool import FunctionPool
from runtime.replica_client import ReplicaClient
from runtime.scaling import warm_sizing
from runtime.spec import Project, load_project_text
from runtime.supply.base import WarmPoolStatus
from runtime.supply.containers import WARM_MINIMUM, ContainerSupply
from runtime.warm_pool import WarmPool
from tests.unit.test_replica_tracking import (
    WATCHDOG_MEMORY,
    Client,
    Engine,
    Rig,
    Script,
    run,
    until,
)

MiB = 1024 * 1024

# -- an engine that knows which image each warm watchdog was made from ----------------


class KindEngine(Engine):
    """The in-memory engine, recording builds, creations and each warm watchdog's image;
    a warm watchdog measures at the size of the largest requirement its image holds
    (`sizes`: package -> bytes), else WATCHDOG_MEMORY."""

    def __init__(self, script: Script, sizes: Mapping[str, int] | None = None) -> None:
        super().__init__(script)
        self.sizes = dict(sizes or {})
        self.built: list[ImageRequest] = []
        self.warm_specs: list[WarmSpec] = []
        self.creates: list[ReplicaSpec] = []
        self.made_from: dict[str, WarmSpec] = {}
        """Warm watchdog's container id -> what it was made from."""
        self.packages: dict[str, set[str]] = {}
        """Warm image tag -> the top-level packages under deps/ in its build context."""
        self.most_memory = 0
        """The most memory unassigned running warm watchdogs held at any moment."""

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        self.built.append(request)
        if not request.function:
            names = context_names(request)
            self.packages[request.tag] = {
                n.split("/")[1] for n in names if n.startswith("deps/") and n.count("/") >= 2
            }
        return True

    async def create(self, spec: ReplicaSpec) -> CreatedReplica:
        self.creates.append(spec)
        return await super().create(spec)

    async def create_warm(self, spec: WarmSpec, token: str) -> CreatedReplica:
        self.warm_specs.append(spec)
        created = await super().create_warm(spec, token)
        self.made_from[created.id] = spec
        return created

    def image_of(self, container_id: str) -> str | None:
        made = self.made_from.get(container_id)
        return made.image if made is not None else None

    def size_of(self, image: str) -> int:
        sizes = [self.sizes.get(p, WATCHDOG_MEMORY) for p in self.packages.get(image, ())]
        return max(sizes, default=WATCHDOG_MEMORY)

    async def memory_usage(self, container_id: str) -> int | None:
        if container_id not in self.boxes:
            return None
        return self.size_of(self.image_of(container_id) or "")

    def idle(self, image: str | None = None) -> list[str]:
        """Running warm watchdogs with no function (of `image`, if given)."""
        return [
            b.id
            for b in self.boxes.values()
            if b.role == "warm" and b.running and not b.assigned
            if image is None or self.image_of(b.id) == image
        ]

    def idle_memory(self) -> int:
        return sum(self.size_of(self.image_of(box) or "") for box in self.idle())

    def _changed(self) -> None:
        super()._changed()
        self.most_memory = max(self.most_memory, self.idle_memory())

    def warm_images(self) -> list[ImageRequest]:
        return [r for r in self.built if not r.function]


def context_names(request: ImageRequest) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(request.context)) as archive:
        return archive.getnames()


# -- a project whose requirements resolve into fake packages ---------------------------


@dataclass(frozen=True)
class Fn:
    requirements: tuple[str, ...] = ()
    """Lines of its requirements file (package names); none: no requirements."""
    preload: str | None = None
    """`preload:` as written in functions.yaml; None: absent."""


def spec_text(functions: Mapping[str, Fn], warm: int, budget: str) -> str:
    lines = [
        "version: 1",
        "project: demo",
        f"gateway: {{warm_pool: {warm}, warm_pool_memory: {budget}}}",
        "defaults:",
        "  scale: {min: 0, max: 20}",
        "functions:",
    ]
    for name, fn in functions.items():
        lines += [f"  {name}:", f"    handler: functions/{name}.py"]
        if fn.requirements:
            lines.append(f"    requirements: reqs/{name}.txt")
        if fn.preload is not None:
            lines.append(f"    preload: {fn.preload}")
    return "\n".join(lines) + "\n"


def project(root: Path, functions: Mapping[str, Fn], warm: int, budget: str) -> Project:
    (root / "functions").mkdir(parents=True, exist_ok=True)
    (root / "reqs").mkdir(exist_ok=True)
    for name, fn in functions.items():
        (root / "functions" / f"{name}.py").write_text(
            "def handle(event, context):\n    return 1\n"
        )
        if fn.requirements:
            (root / "reqs" / f"{name}.txt").write_text("".join(f"{r}\n" for r in fn.requirements))
    text = spec_text(functions, warm, budget)
    return load_project_text(text, filename="functions.yaml", root=root)


def fake_resolve(into: Path) -> Callable[[Path], Path]:
    """`requirements.resolve` without pip: each named package installed as a small package
    with its metadata, in a directory per file content (so two files listing the same
    packages in another order install the same files in different directories)."""

    def resolve(requirements_file: Path, target: requirements.Target | None = None) -> Path:
        content = requirements_file.read_bytes()
        target = into / hashlib.sha256(content).hexdigest()[:12]
        # Made once per content and whole, as pip's result is (staged, then renamed):
        # never half-written while another function's build (another thread) reads it.
        if target.is_dir():
            return target
        into.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=into))
        for name in sorted({line.strip() for line in content.decode().splitlines()} - {""}):
            (staging / name).mkdir(parents=True, exist_ok=True)
            (staging / name / "__init__.py").write_text(f"NAME = {name!r}\n")
            (staging / name / "core.py").write_text("VALUE = 1\n")
            (staging / f"{name}-1.0.dist-info").mkdir(exist_ok=True)
            (staging / f"{name}-1.0.dist-info" / "METADATA").write_text(f"Name: {name}\n")
        try:
            staging.rename(target)
        except OSError:  # another thread made it first
            shutil.rmtree(staging)
        return target

    return resolve


@dataclass
class Kit:
    rig: Rig
    engine: KindEngine
    root: Path

    @property
    def platform(self) -> Platform:
        return self.rig.platform

    @property
    def supply(self) -> ContainerSupply:
        return self.rig.supply

    def pool(self, name: str) -> FunctionPool:
        return self.platform.pools[name]

    def status(self) -> dict[str, WarmPoolStatus]:
        """The warm pools `warm_status()` reports, by label."""
        status = self.supply.warm_status()
        assert status is not None
        return {p.pool: p for p in status.pools}

    def warm_of(self, function: str) -> WarmPool:
        """The warm pool `warm_status()` says `function` starts from."""
        (label,) = [s.pool for s in self.status().values() if function in s.functions]
        (warm,) = [w for w in self.supply.warm.values() if w.label == label]
        return warm

    def full(self) -> bool:
        """Every warm pool is measured and holds as many ready as it keeps."""
        return all(
            w.per_watchdog is not None and w.ready == w.size and w.held == w.size
            for w in self.supply.warm.values()
        )

    async def settle(self, until: Callable[[], object] | None = None) -> None:
        await self.rig.settle(until=until or self.full)

    async def start(self, function: str) -> str:
        """A cold start of `function`: the id of the container it got."""
        pool = self.pool(function)
        before = {h.replica.id for h in pool.replicas}
        await self.supply.start_replica(pool)
        (new,) = {h.replica.id for h in pool.replicas} - before
        return new

    async def apply(
        self, functions: Mapping[str, Fn], warm: int = 4, budget: str = "512Mi"
    ) -> None:
        await self.platform.apply(project(self.root, functions, warm, budget))


async def deployed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    functions: Mapping[str, Fn],
    *,
    warm: int = 4,
    budget: str = "512Mi",
    sizes: Mapping[str, int] | None = None,
    autoscaler: bool = False,
) -> Kit:
    """A platform deployed as `Platform.deploy` does it (builds through the real
    `plan_image`, the supply's build, start and prepare), without its autoscaler's loop
    unless `autoscaler` (then `deploy` itself); settled unless warm pools are off."""
    monkeypatch.setattr(reconcile, "REMOVE_BACKOFF", 0.0)
    monkeypatch.setattr(warm_module, "RETRY_DELAY", 0.01)
    monkeypatch.setattr(requirements, "resolve", fake_resolve(tmp_path / "resolved"))
    root = tmp_path / "project"
    script = Script()
    engine = KindEngine(script, sizes)
    client = Client()
    client.script = script
    made = Platform(
        project(root, functions, warm, budget), engine, client=cast(ReplicaClient, client)
    )
    kit = Kit(Rig(made, engine, script), engine, root)
    if autoscaler:
        await made.deploy()
    else:
        pools = list(made.pools.values())
        await made.build()
        await kit.supply.start(pools, lambda *_: None)
        await asyncio.gather(*(kit.supply.prepare(pool) for pool in pools))
    if warm:
        await kit.settle()
    return kit


PKG_AB = ("pkga", "pkgb")
KINDS = {
    "a": Fn(PKG_AB),
    "b": Fn(("pkgb", "pkga")),  # the same packages, listed in another order
    "c": Fn(("pkgc",)),
    "d": Fn(),
    "e": Fn(),
    "f": Fn(PKG_AB, preload="false"),
}


# -- 1. which functions share a pool ----------------------------------------------------


def test_functions_with_the_same_requirements_share_a_pool_and_others_get_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await deployed(tmp_path, monkeypatch, KINDS)
        pools = sorted((s.functions, s.preload, s.target, s.ready) for s in kit.status().values())
        assert pools == [
            (("a", "b"), PKG_AB, WARM_MINIMUM, WARM_MINIMUM),
            (("c",), ("pkgc",), WARM_MINIMUM, WARM_MINIMUM),
            (("d", "e"), (), WARM_MINIMUM, WARM_MINIMUM),
            (("f",), (), WARM_MINIMUM, WARM_MINIMUM),  # preload: false, a pool of its own
        ]
        assert len(kit.supply.warm) == 4
        labels = {name: kit.warm_of(name).label for name in KINDS}
        assert labels["a"] == labels["b"] and labels["d"] == labels["e"]
        assert len({labels["a"], labels["c"], labels["d"], labels["f"]}) == 4
        assert labels["d"].startswith("plain-")
        status = kit.supply.warm_status()
        assert status is not None and (status.maximum, status.budget) == (4, 512 * MiB)
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


# -- 2. what each pool's watchdogs are made of -------------------------------------------


def test_each_pools_watchdogs_are_made_from_its_kinds_image_and_preload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await deployed(tmp_path, monkeypatch, KINDS)
        engine = kit.engine
        for name in ("a", "c", "d", "f"):
            warm = kit.warm_of(name)
            # every watchdog it holds was made from its spec: its kind's image and preload
            assert warm.container_ids()
            assert {engine.made_from[c] for c in warm.container_ids()} == {warm.spec}, name
            assert warm.spec in engine.warm_specs
        assert kit.warm_of("a").spec.preload == PKG_AB
        assert kit.warm_of("c").spec.preload == ("pkgc",)
        assert kit.warm_of("d").spec.preload == kit.warm_of("f").spec.preload == ()
        # one warm image per set of requirements (preload: false holds the same files)
        images = {kit.warm_of(n).spec.image for n in ("a", "c", "d")}
        assert len(images) == 3
        assert kit.warm_of("f").spec.image == kit.warm_of("a").spec.image
        assert {r.tag for r in engine.warm_images()} == images
        contexts = {r.tag: set(context_names(r)) for r in engine.warm_images()}
        with_ab = contexts[kit.warm_of("a").spec.image]
        assert {"deps/pkga/__init__.py", "deps/pkga/core.py", "deps/pkgb/__init__.py"} <= with_ab
        assert "deps/pkgb-1.0.dist-info/METADATA" in with_ab
        assert not any(n.startswith("deps/pkgc") for n in with_ab)
        with_c = contexts[kit.warm_of("c").spec.image]
        assert "deps/pkgc/__init__.py" in with_c
        assert not any(n.startswith(("deps/pkga", "deps/pkgb")) for n in with_c)
        plain = contexts[kit.warm_of("d").spec.image]
        assert [n for n in plain if n.startswith("deps/")] == ["deps/.keep"]
        await kit.rig.close()

    run(main)


# -- 3. a cold start takes a watchdog of its own kind ------------------------------------


def test_a_cold_start_takes_a_watchdog_of_its_functions_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await deployed(tmp_path, monkeypatch, KINDS)
        engine = kit.engine
        for name in ["c", "a", "d", "f", "b", "e", "a", "c", "f"]:
            warm = kit.warm_of(name)
            others = {w.label: w.container_ids() for w in kit.supply.warm.values() if w is not warm}
            ready = warm.container_ids()
            replica = await kit.start(name)
            assert replica in ready, name  # one of its pool's ready watchdogs
            assert engine.image_of(replica) == warm.spec.image
            assert engine.boxes[replica].assigned
            assert engine.boxes[replica].function == name
            for w in kit.supply.warm.values():  # the other pools are untouched
                if w is not warm:
                    assert w.container_ids() == others[w.label], (name, w.label)
            await kit.settle()
        assert engine.creates == []  # every start was warm
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


# -- 4. demand raises a pool's target, the end of the window lowers it ------------------


def test_cold_starts_in_the_window_grow_their_pool_and_it_shrinks_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        functions = {"a": Fn(PKG_AB), "b": Fn(PKG_AB), "p": Fn()}
        kit = await deployed(tmp_path, monkeypatch, functions, warm=4)
        engine = kit.engine
        busy, quiet = kit.warm_of("a"), kit.warm_of("p")
        targets = []
        for name in ["a", "b", "a", "b", "a", "b"]:
            await kit.start(name)
            targets.append(busy.size)
        assert targets == [2, 2, 3, 4, 4, 4]  # the cold starts in the window, at most 4
        await kit.settle()
        assert kit.status()[busy.label].target == 4
        assert len(engine.idle(busy.spec.image)) == 4
        assert quiet.size == WARM_MINIMUM  # another kind's demand leaves it alone
        assert len(engine.idle(quiet.spec.image)) == WARM_MINIMUM
        surplus = set(engine.idle(busy.spec.image))
        assert engine.creates == []

        # the window passes with no cold start: back to the minimum
        monkeypatch.setattr(warm_sizing, "WINDOW", 0.002)
        await asyncio.sleep(0.005)
        await kit.supply.refresh()
        assert busy.size == WARM_MINIMUM
        await kit.settle()
        left = set(engine.idle(busy.spec.image))
        assert len(left) == WARM_MINIMUM and left < surplus  # the oldest removed, none made
        assert surplus - left <= set(engine.stops)
        assert kit.status()[busy.label].target == WARM_MINIMUM
        assert len(engine.idle(quiet.spec.image)) == WARM_MINIMUM
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


# -- 5. the memory budget ---------------------------------------------------------------


BUDGET = 64 * MiB
HEAVY = 24 * MiB
"""What a watchdog with `heavy` imported measures (a plain one: WATCHDOG_MEMORY, 16 MiB)."""


async def budgeted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kit:
    functions = {"h": Fn(("heavy",)), "p": Fn()}
    return await deployed(
        tmp_path, monkeypatch, functions, warm=4, budget="64Mi", sizes={"heavy": HEAVY}
    )


def test_within_the_budget_the_least_recently_needed_kind_gets_fewer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await budgeted(tmp_path, monkeypatch)
        engine = kit.engine
        heavy, plain = kit.warm_of("h"), kit.warm_of("p")
        assert (heavy.per_watchdog, plain.per_watchdog) == (HEAVY, WATCHDOG_MEMORY)
        assert engine.idle_memory() <= BUDGET

        def held() -> tuple[int, int]:
            return (len(engine.idle(heavy.spec.image)), len(engine.idle(plain.spec.image)))

        # heavy needed last: 2 x 24 MiB, then plain gets what is left: 1 x 16 MiB
        await kit.start("h")
        await kit.settle()
        assert (heavy.size, plain.size) == (2, 1) and held() == (2, 1)
        assert engine.idle_memory() <= BUDGET
        # plain needed last: 2 x 16 MiB, heavy gets what is left: 1 x 24 MiB
        await kit.start("p")
        await kit.settle()
        assert (heavy.size, plain.size) == (1, 2) and held() == (1, 2)
        assert engine.idle_memory() <= BUDGET
        await kit.start("h")
        await kit.settle()
        assert (heavy.size, plain.size) == (2, 1) and held() == (2, 1)
        assert engine.idle_memory() <= BUDGET
        assert engine.creates == []
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


def test_the_engine_never_holds_more_warm_memory_than_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await budgeted(tmp_path, monkeypatch)
        engine = kit.engine
        engine.most_memory = engine.idle_memory()  # from here on, both kinds are measured
        for name in ["h", "p", "h", "p", "p", "h"]:
            await kit.start(name)
            await kit.settle()
        await kit.rig.close()
        assert engine.most_memory <= BUDGET, f"{engine.most_memory / MiB} MiB"

    run(main)


def test_a_slow_removal_does_not_let_the_pools_pass_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await budgeted(tmp_path, monkeypatch)
        engine = kit.engine
        heavy, plain = kit.warm_of("h"), kit.warm_of("p")
        await kit.start("p")  # plain needed last: plain 2, heavy 1
        await kit.settle()
        assert (heavy.size, plain.size) == (1, 2)
        engine.most_memory = engine.idle_memory()
        removing = kit.rig.script.hold("stop")  # the engine takes its time to remove
        await kit.start("h")  # heavy needed last: the plan is heavy 2, plain 1
        # heavy replaces the watchdog it gave away, but grows no further while the
        # watchdog plain gave up still holds its memory
        await until(lambda: heavy.ready == 1, "heavy refilled")
        for _ in range(5):
            await asyncio.sleep(0.001)
        assert (heavy.size, plain.size) == (1, 1)
        removing.set()
        await until(lambda: heavy.ready == 2, "heavy grown into the memory freed")
        await kit.settle()
        await kit.rig.close()
        assert engine.most_memory <= BUDGET, f"{engine.most_memory / MiB} MiB"

    run(main)


# -- 6. pools close with their last function and open for a new kind --------------------


def test_a_kinds_pool_closes_with_its_last_function_and_a_new_kind_gets_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        functions = {"a": Fn(PKG_AB), "b": Fn(PKG_AB), "p": Fn()}
        kit = await deployed(tmp_path, monkeypatch, functions)
        engine = kit.engine
        shared = kit.warm_of("a")
        image = shared.spec.image

        await kit.apply({"b": Fn(PKG_AB), "p": Fn()})  # a removed; b still uses the pool
        await kit.settle()
        assert kit.warm_of("b") is shared and len(engine.idle(image)) == WARM_MINIMUM

        watchdogs = set(engine.idle(image))
        await kit.apply({"p": Fn()})  # the last function of its kind removed
        await kit.settle(until=lambda: not engine.idle(image) and kit.full())
        assert shared not in kit.supply.warm.values()
        assert shared.label not in kit.status()
        assert [s.functions for s in kit.status().values()] == [("p",)]
        assert watchdogs <= set(engine.stops)
        assert all(engine.image_of(b.id) != image for b in engine.alive())

        builds = len(engine.warm_images())
        await kit.apply({"p": Fn(), "n": Fn(("pkgn",))})  # a new kind
        await kit.settle()
        (request,) = engine.warm_images()[builds:]
        assert "deps/pkgn/__init__.py" in context_names(request)
        fresh = kit.warm_of("n")
        assert fresh.spec.image == request.tag and fresh.spec.preload == ("pkgn",)
        assert kit.status()[fresh.label].functions == ("n",)
        assert len(engine.idle(request.tag)) == WARM_MINIMUM
        ready = fresh.container_ids()
        replica = await kit.start("n")
        assert replica in ready and engine.image_of(replica) == request.tag
        assert engine.creates == []  # its first cold start was warm
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


def test_removing_a_kinds_last_function_from_the_supply_closes_its_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await deployed(tmp_path, monkeypatch, {"c": Fn(("pkgc",)), "p": Fn()})
        engine = kit.engine
        closing = kit.warm_of("c")
        await kit.supply.remove(kit.platform.pools.pop("c"))
        await kit.settle(until=lambda: not engine.idle(closing.spec.image))
        assert closing not in kit.supply.warm.values()
        assert [s.functions for s in kit.status().values()] == [("p",)]
        assert [engine.image_of(b.id) for b in engine.alive()] == [
            kit.warm_of("p").spec.image
        ] * WARM_MINIMUM
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


# -- 7. warm pools off ---------------------------------------------------------------------


def test_with_warm_pool_zero_there_are_no_pools_and_starts_take_containers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await deployed(tmp_path, monkeypatch, KINDS, warm=0)
        engine = kit.engine
        assert engine.warm_images() == []
        assert len(engine.built) == len(KINDS)  # the functions' own images only
        assert kit.supply.warm == {} and kit.supply.warm_status() is None
        assert engine.alive() == []
        replica = await kit.start("a")
        await kit.start("d")
        assert [s.function for s in engine.creates] == ["a", "d"]
        assert engine.boxes[replica].role == "replica"
        assert engine.warm_specs == [] and kit.supply.warm == {}
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)


# -- 8. nothing is made for a function at zero --------------------------------------------


def test_deploy_makes_only_warm_watchdogs_for_functions_at_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        kit = await deployed(tmp_path, monkeypatch, KINDS, autoscaler=True)
        engine = kit.engine
        await asyncio.sleep(0.005)  # the autoscaler's first rounds
        await kit.settle()
        assert engine.creates == []
        assert {b.role for b in engine.alive()} == {"warm"}
        assert not any(b.assigned for b in engine.alive())
        assert len(engine.alive()) == sum(w.size for w in kit.supply.warm.values())
        assert all(p.replicas == [] and p.starting == 0 for p in kit.platform.pools.values())
        kit.rig.assert_tracked_once()
        await kit.rig.close()

    run(main)
