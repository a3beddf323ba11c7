"""An engine-less platform for unit tests: a backend that builds nothing, a replica client
that answers from memory, and the in-memory supply (runtime/supply/memory.py).

As httpcore's mock backend drives its connection pool, these drive the pool,
`Platform.invoke` and the autoscaler: no Docker, no sockets, microseconds a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, cast

from runtime.backends.base import AnyBackend, ImageRequest, ProgressCallback, Replica, ReplicaStatus
from runtime.errors import ImageBuildError, ReplicaUnreachable
from runtime.interpreter import Interpreter
from runtime.invocation import Invocation, InvocationResult
from runtime.platform import Platform
from runtime.replica_client import ReplicaClient
from runtime.requirements import default_interpreter
from runtime.spec import Project, load_project_text
from runtime.supply.memory import MemorySupply


class NoEngine:
    """The verbs every backend shares, doing nothing: images "exist" already."""

    project = "demo"
    kind: Literal["containers"] = "containers"

    async def prepare(self) -> None: ...

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None: ...

    async def image_id(self, image: str) -> str | None:
        return "sha256:base"

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        return False

    async def interpreter(self, image_id: str) -> Interpreter:
        return default_interpreter()

    async def build_wheel(
        self, image_id: str, sdist: str, inputs: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        raise ImageBuildError("the fake engine builds nothing")

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        return None

    async def logs(self, replica_id: str, *, tail: int = 50) -> str:
        return ""

    def follow_logs(self, replica_id: str, on_line: Callable[[str], None]) -> None: ...

    async def teardown(self) -> int:
        return 0

    async def close(self) -> None: ...


class Body:
    def __init__(self, content: bytes) -> None:
        self._content: bytes | None = content

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        if self._content is None:
            raise StopAsyncIteration
        content, self._content = self._content, None
        return content

    @property
    def at_end(self) -> bool:
        return self._content is None


class FakeReplicas:
    """The replica client's verbs: every call is answered 200 with the replica's name,
    except on replicas made unreachable (`unreachable[name] = sent`)."""

    def __init__(self) -> None:
        self.max_answer = 0
        self.sent: list[tuple[str, str]] = []
        """(replica name, call id) for every call handed to `send`, in order."""
        self.unreachable: dict[str, bool] = {}
        """Replica name -> whether the call counts as sent when it fails there."""

    async def send(
        self,
        replica: Replica,
        invocation: Invocation,
        time_limit: float,
        stream_limit: float | None = None,
        *,
        stream_body: bool = False,
    ) -> InvocationResult:
        self.sent.append((replica.name, invocation.call_id))
        await asyncio.sleep(0)  # an answer takes at least a turn of the loop
        if replica.name in self.unreachable:
            sent = self.unreachable[replica.name]
            raise ReplicaUnreachable(f"{invocation.function} could not be reached", sent=sent)

        async def close() -> None:
            pass

        body = Body(replica.name.encode())
        return InvocationResult(200, [], body, close, replica=replica.name)

    async def reload(self, replica: Replica) -> None: ...

    async def close(self) -> None: ...


SPEC = """\
version: 1
project: demo
functions:
{functions}"""


def project(tmp_path: Path, *names: str, scale: str = "{min: 0, max: 4}") -> Project:
    """A project of functions `names` (each `return 1`), all with `scale`."""
    (tmp_path / "functions").mkdir(exist_ok=True)
    (tmp_path / "functions" / "hello.py").write_text("def handle(event, context):\n    return 1\n")
    functions = "".join(
        f"  {name}:\n    handler: functions/hello.py\n    scale: {scale}\n" for name in names
    )
    return load_project_text(
        SPEC.format(functions=functions), filename="functions.yaml", root=tmp_path
    )


def platform(loaded: Project) -> tuple[Platform, MemorySupply, FakeReplicas]:
    """A platform on the in-memory supply; not deployed (no autoscaler loop yet)."""
    supply, replicas = MemorySupply(), FakeReplicas()
    engine = cast(AnyBackend, NoEngine())  # what the supply would need, it never asks for
    made = Platform(loaded, engine, supply=supply, client=cast(ReplicaClient, replicas))
    return made, supply, replicas


def built(made: Platform) -> None:
    """Every function's image "built", without `deploy` (and its autoscaler loop)."""
    for pool in made.pools.values():
        made._built(pool, ImageRequest(pool.name, f"faas-function:{pool.name}", b""))


def call(function: str, call_id: str = "c") -> Invocation:
    return Invocation(function, "POST", "/", b"", [], b"{}", call_id)
