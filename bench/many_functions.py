"""A project of 100 functions: time to ready, gateway memory at rest, images built.

Generates a project of N functions sharing one handler directory, then:
1. `faas up` with a warm image cache: seconds until the gateway answers and
   every function is deployed; the gateway's resident memory (RSS) once all
   N are idle, and again after each has been called once and gone back to zero;
   what the engine holds while all are at zero: containers of any function
   (none when they start warm) and the project's warm watchdogs, with memory.
2. adds one function to functions.yaml while serving: how many images that builds.

    python bench/many_functions.py [--functions 100]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
from common import (
    ADMIN_ANY_PORT,
    REPO,
    admin_headers,
    admin_url,
    free_port,
    wait_until_serving,
)

HANDLER = 'def handle(event, context):\n    return f"hello from {context.function_name}\\n"\n'


def write_project(root: Path, count: int) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "hello.py").write_text(HANDLER)
    entries = "".join(
        f"  fn{i:03d}:\n    handler: functions/hello.py\n    scale: {{idle_timeout: 2s}}\n"
        for i in range(count)
    )
    spec = root / "functions.yaml"
    spec.write_text(f"version: 1\ndefaults:\n  auth: none\n  memory: 64MiB\nfunctions:\n{entries}")
    return spec


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def images_built(since: float) -> int:
    client = docker.from_env()
    return sum(
        1
        for image in client.images.list(filters={"label": "faas.function"})
        if image.attrs["Created"] and _epoch(image.attrs["Created"]) >= since
    )


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()


def role_memory_mib(project: str, role: str) -> tuple[int, float]:
    """(count, MiB) of the project's running containers with `faas.role=role`."""
    client = docker.from_env()
    found = client.api.containers(
        filters={"label": [f"faas.project={project}", f"faas.role={role}"]}
    )
    total = 0.0
    for container in found:
        stats = client.api.stats(container["Id"], stream=False)
        total += stats.get("memory_stats", {}).get("usage", 0) / 2**20
    return len(found), total


def held_by_functions(project: str) -> int:
    """Containers, running or only created, labelled with one of the project's functions."""
    found = docker.from_env().api.containers(all=True, filters={"label": f"faas.project={project}"})
    return sum(1 for c in found if "faas.function" in (c.get("Labels") or {}))


@dataclass
class Result:
    functions: int
    ready_s: float
    """`faas up` -> the gateway answers, every function deployed (images cached)."""
    images_built: int
    idle_rss_mib: float
    after_rss_mib: float
    """Gateway RSS after each function was called once and went back to zero."""
    held_by_functions: int
    """Containers of any function (replicas, or network sandboxes) at zero: none expected."""
    sandboxes: int
    sandbox_mib: float
    warm: int
    warm_mib: float
    """The project's warm watchdogs at zero, shared by every function."""
    added_builds: int
    """Images built when one more function was added while serving."""


def run(functions: int = 100) -> Result:
    project = f"bench-many-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as directory:
        spec = write_project(Path(directory) / "project", functions)
        port = free_port()
        began = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "faas", "up", "-f", str(spec), "--project", project,
             "--port", str(port), *ADMIN_ANY_PORT, "--log-level", "warning"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(process, url, "faas up did not come up", timeout=600)
            ready = time.time() - began
            built = images_built(began)
            time.sleep(20)  # let the warm pools settle
            idle_rss = rss_mib(process.pid)
            held = held_by_functions(project)
            sandboxes, sandbox_mib = role_memory_mib(project, "sandbox")
            warm, warm_mib = role_memory_mib(project, "warm")
            with httpx.Client(base_url=url, timeout=60) as client:
                for i in range(functions):
                    assert client.get(f"/function/fn{i:03d}").status_code == 200
            headers = admin_headers(spec)
            listing = f"{admin_url(url, spec)}/system/functions"
            while any(
                f["replicas"] for f in httpx.get(listing, headers=headers).json()["functions"]
            ):
                time.sleep(1)
            after_rss = rss_mib(process.pid)
            added_at = time.time()
            text = spec.read_text()
            spec.write_text(text + "  extra:\n    handler: functions/hello.py\n")
            deadline = time.time() + 60
            while httpx.get(f"{url}/function/extra", timeout=30).status_code != 200:
                if time.time() > deadline:
                    raise SystemExit("the added function never answered")
                time.sleep(0.2)
            added_builds = images_built(added_at)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(120)
        shutil.rmtree(Path(directory) / "project", ignore_errors=True)
    return Result(
        functions, ready, built, idle_rss, after_rss, held, sandboxes, sandbox_mib, warm,
        warm_mib, added_builds,
    )  # fmt: skip


def report(result: Result) -> None:
    print(f"{result.functions} functions (one shared handler directory), images cached")
    print(
        f"faas up -> gateway ready:            {result.ready_s:6.1f} s   "
        f"images built: {result.images_built}"
    )
    print(f"gateway RSS, all idle:               {result.idle_rss_mib:6.1f} MiB (target <= 100)")
    print(f"gateway RSS, after calling each once: {result.after_rss_mib:6.1f} MiB")
    print(
        f"held at zero: {result.held_by_functions} container(s) of any function "
        f"({result.sandboxes} network sandboxes, {result.sandbox_mib:.1f} MiB); "
        f"the project's warm pool: {result.warm} watchdog(s), {result.warm_mib:.1f} MiB"
    )
    print(f"adding one function while serving built {result.added_builds} image(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=100)
    args = parser.parse_args()
    report(run(args.functions))


if __name__ == "__main__":
    main()
