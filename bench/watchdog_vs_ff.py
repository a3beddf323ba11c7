"""Our watchdog versus Google's functions-framework on the same hello handler, side by side.

Four servers, each in its own container from the same base image with the same
limits (1 CPU, pinned to core 1, 256 MiB, read-only root, as our replicas run):

    watchdog       async  `python3 -m faas_watchdog`, image from runtime.images.plan_image
    ff --asgi      async  `python3 -m functions_framework --target handle --source
                          /app/main_async.py --asgi`: gunicorn with one uvicorn worker
    watchdog       sync   as above, the handler run in the watchdog's thread pool
    ff (gunicorn)  sync   `python3 -m functions_framework --target handle --source
                          /app/main_sync.py`: its production default, gunicorn gthread

functions-framework runs with its defaults (no WORKERS/THREADS set: 1 worker; gthread
with 4 x os.cpu_count() threads). Its ASGI mode needs nothing beyond its own
dependencies; by default that means uvicorn on asyncio with h11. To measure it with
uvloop and httptools, add them: `--ff-requirements functions-framework==3.10.2
'uvicorn[standard]'`.

wrk, pinned to core 0 (`taskset -c 0 wrk -t1 ...`), loads each at 1 and 16 keep-alive
connections. Runs alternate (ours then theirs, swapped every round), and the table
shows medians of the rounds, then the ours/ff throughput ratios at 16 connections
next to the targets (async >= 1.5x, sync >= 2x).

    python bench/watchdog_vs_ff.py [--seconds 5] [--rounds 3]

Needs a Docker engine holding the base image python:3.11-slim-bookworm, wrk and
taskset on the host (Debian packages `wrk`, `util-linux`), and 2 cores. Network: only
PyPI, and only at the start, to resolve functions-framework for the image's platform
with runtime.requirements.resolve (cached under ~/.cache/faas/deps afterwards, so
later runs need none). No Python packages beyond the project's own.

Every container and image it creates is labelled faas.bench=watchdog_vs_ff; the
containers are removed at the end, also on error or Ctrl-C. Images stay, so the
next run skips the builds; remove them with
`docker rmi $(docker images -q --filter label=faas.bench=watchdog_vs_ff)`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import secrets
import shutil
import signal
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors
import httpx
from common import Sample, median_sample, wrk
from docker.api.client import APIClient

from runtime import requirements
from runtime.backends.docker.engine import connect
from runtime.images import plan_image
from runtime.spec import load_project

REPO = Path(__file__).resolve().parents[1]
PROJECT_DIR = REPO / "bench" / "projects" / "ffbench"
BASE_IMAGE = "python:3.11-slim-bookworm"
FF_REQUIREMENT = "functions-framework==3.10.2"  # the newest on PyPI when this was written
LABEL_KEY, LABEL_VALUE = "faas.bench", "watchdog_vs_ff"
LABELS = {LABEL_KEY: LABEL_VALUE}
SERVER_CPU = "1"  # cpuset of every server container
CLIENT_CPU = "0"  # where wrk runs
CONNECTIONS = (1, 16)
PORT = 8080
EXPECTED_BODY = b"Hello, world!\n"
SHOWN = (
    "functions-framework", "gunicorn", "uvicorn", "uvicorn-worker", "starlette", "flask",
    "uvloop", "httptools",
)  # fmt: skip
TARGETS = {"async": 1.5, "sync": 2.0}  # ours/ff requests/s at 16 connections

FF_DOCKERFILE = """\
FROM {base}
COPY deps/ /opt/ff/deps/
COPY app/ /app/
RUN python3 -m compileall -q /opt/ff /app
ENV PYTHONPATH=/opt/ff/deps PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
WORKDIR /app
USER 10001:10001
EXPOSE {port}
"""


@dataclass
class Server:
    label: str  # as shown in the table
    slug: str  # in container names
    kind: str  # "async" or "sync"
    image: str
    command: list[str] | None = None  # None: the image's own (our watchdog)
    environment: dict[str, str] = field(default_factory=dict)
    mode: str = ""  # how it serves, as listed at the start
    url: str = ""
    samples: dict[int, list[Sample]] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return self.command is None


# ---------------------------------------------------------------- images


def build(api: APIClient, tag: str, context: bytes) -> None:
    """Build `tag` from a tar context unless it exists; labelled as this benchmark's."""
    try:
        api.inspect_image(tag)
        return
    except docker.errors.ImageNotFound:
        pass
    output: list[str] = []
    events = api.build(
        fileobj=io.BytesIO(context),
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
        decode=True,
        labels=LABELS,
        use_config_proxy=False,
    )
    for event in events:
        if "error" in event:
            raise SystemExit(f"building {tag} failed: {event['error']}\n" + "".join(output[-20:]))
        output.append(event.get("stream", ""))


def tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(files):
            info = tarfile.TarInfo(name)  # mtime 0: the same files give the same bytes
            info.size = len(files[name])
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def watchdog_images(api: APIClient, base_id: str) -> dict[str, str]:
    """Our two images, planned exactly as `faas up` plans them; returns kind -> tag."""
    project = load_project(PROJECT_DIR)
    tags = {}
    for kind in ("async", "sync"):
        request = plan_image(
            project, project.functions[f"hello-{kind}"], base_id, requirements.resolve
        )
        tag = request.tag.replace("faas-", "faas-bench-", 1)  # keep clear of the platform's
        build(api, tag, request.context)
        tags[kind] = tag
    return tags


def ff_image(api: APIClient, base_id: str, wanted: list[str]) -> tuple[str, dict[str, str]]:
    """The functions-framework image: resolved deps + both handlers; returns tag, versions."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements_file = Path(tmp) / "requirements.txt"
        requirements_file.write_text("".join(f"{line}\n" for line in wanted))
        deps = requirements.resolve(requirements_file)
    files = {
        f"deps/{path.relative_to(deps).as_posix()}": path.read_bytes()
        for path in sorted(deps.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    for handler in sorted((PROJECT_DIR / "ff").glob("*.py")):
        files[f"app/{handler.name}"] = handler.read_bytes()
    files["Dockerfile"] = FF_DOCKERFILE.format(base=base_id, port=PORT).encode()
    context = tar(files)
    tag = f"faas-bench-ff:{hashlib.sha256(context).hexdigest()[:16]}"
    build(api, tag, context)
    versions = {}
    for info in deps.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        versions[name.lower().replace("_", "-")] = version
    return tag, versions


# ---------------------------------------------------------------- containers


def start(api: APIClient, server: Server) -> None:
    host_config = api.create_host_config(
        cpuset_cpus=SERVER_CPU,
        nano_cpus=1_000_000_000,
        mem_limit="256m",
        memswap_limit="256m",
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=256,
        network_mode="bridge",
    )
    container = api.create_container(
        server.image,
        command=server.command,
        environment=server.environment,
        user="10001:10001",
        labels=LABELS,
        host_config=host_config,
        name=f"faas-bench-{server.slug}-{server.kind}-{secrets.token_hex(3)}",
        use_config_proxy=False,
    )
    api.start(container["Id"])
    address = api.inspect_container(container["Id"])["NetworkSettings"]["Networks"]["bridge"][
        "IPAddress"
    ]
    server.url = f"http://{address}:{PORT}/"


def remove_containers(api: APIClient) -> None:
    for container in api.containers(all=True, filters={"label": f"{LABEL_KEY}={LABEL_VALUE}"}):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container["Id"], force=True, v=True)


def wait_until_serving(server: Server, headers: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            try:
                response = http.get(server.url, headers=headers)
                if response.status_code == 200 and response.content == EXPECTED_BODY:
                    return
                last = f"{response.status_code} {response.content[:200]!r}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
    raise SystemExit(f"{server.label} ({server.kind}) at {server.url} never served: {last}")


# ---------------------------------------------------------------- load


def schedule(servers: list[Server], rounds: int) -> Iterator[tuple[int, int, Server]]:
    """Round by round: each connection count, each handler kind, ours/ff swapped per round."""
    for round_index in range(rounds):
        for connections in CONNECTIONS:
            for kind in ("async", "sync"):
                pair = sorted(
                    (s for s in servers if s.kind == kind),
                    key=lambda s: s.ours,  # ours first,
                    reverse=round_index % 2 == 0,  # then theirs first, and so on
                )
                for server in pair:
                    yield round_index, connections, server


# ---------------------------------------------------------------- main


@dataclass
class Result:
    seconds: float
    rounds: int
    servers: list[Server]
    versions: dict[str, str]
    """Versions of what functions-framework ran on (SHOWN)."""

    def ratio(self, kind: str, connections: int = max(CONNECTIONS)) -> float:
        """Ours / ff requests/s (medians) for one handler kind."""
        mine, theirs = self.pair(kind)
        return (
            median_sample(mine.samples[connections]).rps
            / median_sample(theirs.samples[connections]).rps
        )

    def pair(self, kind: str) -> tuple[Server, Server]:
        mine, theirs = sorted((s for s in self.servers if s.kind == kind), key=lambda s: not s.ours)
        return mine, theirs


def run(
    seconds: float = 5, rounds: int = 3, ff_requirements: tuple[str, ...] = (FF_REQUIREMENT,)
) -> Result:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install wrk util-linux)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: one for the servers, one for wrk")
    api, _ = connect()
    try:
        base_id = str(api.inspect_image(BASE_IMAGE)["Id"])
    except docker.errors.ImageNotFound:
        raise SystemExit(f"base image {BASE_IMAGE} missing: run scripts/up once") from None
    print(f"resolving {' '.join(ff_requirements)} and building images ...", flush=True)
    ff_tag, versions = ff_image(api, base_id, list(ff_requirements))
    ours = watchdog_images(api, base_id)

    token = secrets.token_hex(16)
    headers = {"X-Faas-Token": token}  # sent to both servers, so requests are the same size

    def ff(file: str, *extra: str) -> list[str]:
        return ["python3", "-m", "functions_framework", "--target", "handle",
                "--source", f"/app/{file}", "--port", str(PORT), *extra]  # fmt: skip

    env = {"FAAS_TOKEN": token, "FAAS_FUNCTION_NAME": "hello", "FAAS_PORT": str(PORT)}
    # the handler is given per replica, as the platform does (images are shared)
    async_env = {**env, "FAAS_HANDLER_FILE": "functions/hello_async.py"}
    sync_env = {**env, "FAAS_HANDLER_FILE": "functions/hello_sync.py"}
    servers = [
        Server("watchdog", "watchdog", "async", ours["async"], environment=async_env,
               mode="asyncio; handler on the loop"),
        Server("ff --asgi", "ff-asgi", "async", ff_tag, ff("main_async.py", "--asgi"),
               mode="gunicorn, 1 uvicorn worker; handler on its loop"),
        Server("watchdog", "watchdog", "sync", ours["sync"], environment=sync_env,
               mode="asyncio; handler in a pool of 16 threads"),
        Server("ff (gunicorn)", "ff-gunicorn", "sync", ff_tag, ff("main_sync.py"),
               mode="gunicorn, 1 gthread worker of 4 x os.cpu_count() threads"),
    ]  # fmt: skip
    try:
        for server in servers:
            start(api, server)
        for server in servers:
            wait_until_serving(server, headers)
            wrk(server.url, 16, 1, headers, cpu=CLIENT_CPU)  # warm up: threads, lazy imports
        shown = ", ".join(f"{name} {versions[name]}" for name in SHOWN if name in versions)
        print(f"ff: {shown}")
        for server in servers:
            command = " ".join(server.command or ["python3", "-m", "faas_watchdog"])
            print(f"  {server.label:<13} {server.kind:<5} {server.image}: {server.mode}")
            print(f"  {'':<19} $ {command}")
        print(
            f"servers on cpuset {SERVER_CPU} (1 CPU, 256 MiB each), wrk -t1 on cpu {CLIENT_CPU}; "
            f"{rounds} rounds x {seconds:g}s per cell, alternating",
            flush=True,
        )
        runs = rounds * len(CONNECTIONS) * len(servers)
        for done, (round_index, connections, server) in enumerate(
            schedule(servers, rounds), start=1
        ):
            sample = wrk(server.url, connections, seconds, headers, cpu=CLIENT_CPU, strict=True)
            server.samples.setdefault(connections, []).append(sample)
            print(
                f"  [{done:>2}/{runs}] round {round_index + 1} {server.label:<13} "
                f"{server.kind:<5} c={connections:<2} {sample.rps:>8.0f} req/s",
                flush=True,
            )
    finally:
        remove_containers(api)
        api.close()
    return Result(seconds, rounds, servers, {n: versions[n] for n in SHOWN if n in versions})


def report(result: Result) -> None:
    servers = result.servers
    print()
    print(
        f"{'server':<14} {'handler':<7} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f"   per round: req/s | p99 ms   (medians of {result.rounds} rounds)"
    )
    for connections in CONNECTIONS:
        for server in servers:
            samples = server.samples[connections]
            m = median_sample(samples)
            rounds = "/".join(f"{s.rps:.0f}" for s in samples)
            rounds += " | " + "/".join(f"{s.p99_ms:.2f}" for s in samples)
            print(
                f"{server.label:<14} {server.kind:<7} {connections:>5} {m.rps:>9.0f} "
                f"{m.p50_ms:>8.3f} {m.p99_ms:>8.3f}   {rounds}"
            )
    print()
    top = max(CONNECTIONS)
    print(f"ours/ff at {top} connections (medians):")
    for kind, target in TARGETS.items():
        mine, theirs = result.pair(kind)
        a, b = median_sample(mine.samples[top]), median_sample(theirs.samples[top])
        ratio = a.rps / b.rps
        verdict = "met" if ratio >= target else "MISSED"
        print(
            f"  {kind:<5} watchdog / {theirs.label:<13}  req/s {ratio:5.2f}x "
            f"(target >= {target:g}x: {verdict});  "
            f"p50 {a.p50_ms / b.p50_ms:4.2f}x, p99 {a.p99_ms / b.p99_ms:4.2f}x ff's"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell (medians shown)")
    parser.add_argument(
        "--ff-requirements",
        nargs="+",
        default=[FF_REQUIREMENT],
        help=f"what to install for ff (default {FF_REQUIREMENT}; e.g. add 'uvicorn[standard]')",
    )
    args = parser.parse_args()
    # Ctrl-C and SIGTERM must reach the `finally` that removes the containers (SIGINT
    # even when a non-interactive shell started us in the background, ignoring it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report(run(args.seconds, args.rounds, tuple(args.ff_requirements)))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted; containers removed") from None
