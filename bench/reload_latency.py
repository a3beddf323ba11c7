"""Save-to-live latency in development, for both ways a change reaches replicas.

- code edit: the watchdog re-imports the handler inside the running replica;
- environment edit in functions.yaml: the replica is replaced (start a new one,
  then drain the old), which is what a re-import saves us from.

Each run saves a file and polls the function every 5 ms until the new answer
shows; the two kinds alternate. A thread keeps calling the function throughout
and counts failed calls (target: 0).

    python bench/reload_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from common import REPO, gateway

SOURCE = REPO / "bench" / "projects" / "reload"


def save(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    temporary.replace(path)


def until(client: httpx.Client, expected: str, timeout: float = 30) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if client.get("/function/greet").text == expected:
            return time.perf_counter() - began
        time.sleep(0.005)
    raise SystemExit(f"never saw {expected!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "project"
        shutil.copytree(SOURCE, root)
        code, spec = root / "functions" / "greet.py", root / "functions.yaml"
        failures: list[int] = []
        calls = 0
        stop = threading.Event()
        with gateway(spec, f"bench-reload-{uuid.uuid4().hex[:6]}") as url:
            client = httpx.Client(base_url=url, timeout=30, trust_env=False)
            until(client, "hello v0\n")

            def background() -> None:
                nonlocal calls
                with httpx.Client(base_url=url, timeout=30, trust_env=False) as other:
                    while not stop.is_set():
                        status = other.get("/function/greet").status_code
                        calls += 1
                        if status != 200:
                            failures.append(status)

            thread = threading.Thread(target=background)
            thread.start()
            reloads: list[float] = []
            rolls: list[float] = []
            greeting, version = "hello", 0
            try:
                for _ in range(args.runs):
                    version += 1
                    save(
                        code,
                        code.read_text().replace(
                            f"VERSION = {version - 1}", f"VERSION = {version}"
                        ),
                    )
                    reloads.append(until(client, f"{greeting} v{version}\n"))
                    time.sleep(0.3)
                    new = f"hi{version}"
                    save(
                        spec, spec.read_text().replace(f"GREETING: {greeting}", f"GREETING: {new}")
                    )
                    greeting = new
                    rolls.append(until(client, f"{greeting} v{version}\n"))
                    time.sleep(0.3)
            finally:
                stop.set()
                thread.join(30)
                client.close()
    print(f"{args.runs} runs each, alternating; {calls} background calls, {len(failures)} failed")
    for label, samples in (("code edit (re-import)", reloads), ("env edit (new replica)", rolls)):
        print(
            f"{label:<24} p50 {statistics.median(samples) * 1000:7.1f} ms   "
            f"max {max(samples) * 1000:7.1f} ms"
        )
    ratio = statistics.median(rolls) / statistics.median(reloads)
    print(f"ratio new replica / re-import (p50): {ratio:.1f}x")


if __name__ == "__main__":
    main()
