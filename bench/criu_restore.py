"""Checkpoint/restore (CRIU) next to a plain start, for the same container, same run.

The question: could a function at zero be restored from a checkpoint taken
once it was warm, faster than it starts? Both sides run the same minimal
standard-library HTTP server in the same image on the same bridge network:

- start: a pre-created container, `start` -> first HTTP 200;
- restore: a container checkpointed after its first answer, `start --checkpoint`
  -> first HTTP 200.

Docker exposes checkpoints only when the daemon runs with `--experimental`
(and `criu` is installed: Debian's package). Runs alternate, so both see the
same machine noise. Also reports what a checkpoint holds on disk.

Seen here (kernel 6.18, Debian's CRIU 3.17.1): the dump itself fails, "vdso:
Unexpected rt vDSO area bounds": that CRIU does not know this kernel's vDSO
layout, so a restore could not be measured on this machine.

    python bench/criu_restore.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import docker
import httpx
from cold_start import MINIMAL_SERVER, wait_for_200
from common import REPO

IMAGE = "python:3.11-slim-bookworm"
CHECKPOINT = "warm"
RUNC_TASKS = "/var/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby"


def address_of(api: docker.APIClient, container: str, network: str) -> str:
    attrs = api.inspect_container(container)
    return str(attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def create(api: docker.APIClient, network: str, name: str) -> str:
    created = api.create_container(
        IMAGE,
        command=["python3", "-c", MINIMAL_SERVER],
        host_config=api.create_host_config(network_mode=network),
        labels={"faas.bench": "criu"},
        name=name,
    )
    return str(created["Id"])


def timed_start(
    api: docker.APIClient, http: httpx.Client, container: str, network: str, checkpoint: bool
) -> float:
    began = time.perf_counter()
    if checkpoint:
        # docker-py has no checkpoint verbs; the CLI talks to the same engine.
        subprocess.run(
            ["docker", "start", "--checkpoint", CHECKPOINT, container],
            check=True,
            capture_output=True,
        )
    else:
        api.start(container)
    wait_for_200(http, f"http://{address_of(api, container, network)}:8080/")
    return time.perf_counter() - began


def why_criu_failed(container: str, stderr: str) -> str:
    """CRIU's own first error line, from the dump log runc leaves beside the task."""
    log = Path(RUNC_TASKS) / container / "criu-dump.log"
    try:
        errors = [line for line in log.read_text().splitlines() if "Error" in line]
    except OSError:
        errors = []
    return errors[0].strip() if errors else stderr.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    client = docker.from_env()
    api = client.api
    if not api.info().get("ExperimentalBuild"):
        raise SystemExit(
            "docker checkpoints need an experimental daemon: restart dockerd with "
            "--experimental (and install criu), then run this again"
        )
    network = f"faas-bench-criu-{uuid.uuid4().hex[:6]}"
    api.create_network(network, driver="bridge", labels={"faas.bench": "criu"})
    suffix = uuid.uuid4().hex[:6]
    plain = create(api, network, f"faas-bench-criu-plain-{suffix}")
    restored = create(api, network, f"faas-bench-criu-restored-{suffix}")
    results: dict[str, list[float]] = {"start": [], "restore": []}
    try:
        with httpx.Client(timeout=2, trust_env=False) as http:
            timed_start(api, http, restored, network, checkpoint=False)
            made = subprocess.run(
                ["docker", "checkpoint", "create", restored, CHECKPOINT],
                capture_output=True,
                text=True,
            )
            if made.returncode != 0:
                raise SystemExit(f"checkpoint failed: {why_criu_failed(restored, made.stderr)}")
            checkpoint_dir = (
                Path("/var/lib/docker/containers") / restored / "checkpoints" / CHECKPOINT
            )
            size = sum(f.stat().st_size for f in checkpoint_dir.rglob("*") if f.is_file())
            for run in range(args.runs):
                order = [False, True] if run % 2 == 0 else [True, False]
                for use_checkpoint in order:
                    container = restored if use_checkpoint else plain
                    seconds = timed_start(api, http, container, network, use_checkpoint)
                    results["restore" if use_checkpoint else "start"].append(seconds * 1000)
                    api.kill(container)
                    api.wait(container)
    finally:
        for container in (plain, restored):
            api.remove_container(container, force=True)
        api.remove_network(network)
    start, restore = (statistics.median(results[k]) for k in ("start", "restore"))
    print(f"{'':24}{'p50 ms':>10}{'min ms':>10}{'max ms':>10}")
    for key in ("start", "restore"):
        values = results[key]
        print(f"{key:24}{statistics.median(values):10.1f}{min(values):10.1f}{max(values):10.1f}")
    print(f"restore / start p50: {restore / start:.2f}x")
    print(f"checkpoint on disk: {size / 1024 / 1024:.1f} MiB (held per function at zero)")
    out = REPO / "bench" / "results" / "criu_restore.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"ms": results, "checkpoint_bytes": size}, indent=2))


if __name__ == "__main__":
    main()
