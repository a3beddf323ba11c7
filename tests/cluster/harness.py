"""What the multi-node tests (and bench/cluster.py) do with a cluster: deploy a project
with `faas deploy`, record what its functions ran and where, look for leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.cluster.nodes import GATEWAY_PORT, Cluster, Node

PROJECT_DIR = Path(__file__).resolve().parent / "project"
REPO = PROJECT_DIR.parents[2]


class DeployFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Run:
    phase: str
    """start or finish"""
    key: str
    attempt: int
    node: str
    """The address the report came from: the node whose task ran it (Swarm's egress
    masquerades as the node)."""
    at: float
    """When it arrived (epoch seconds)."""
    run: str = ""
    """One run of the handler: a report it sent twice has the same."""


class Recorder:
    """Where every run of tests/cluster/project's `record.py` reports its start and
    finish: tests/cluster/recorder.py on the host's address in the cluster network."""

    def __init__(self, address: str, directory: Path) -> None:
        self._file = directory / "runs.jsonl"
        self._file.touch()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.recorder", address, str(self._file)],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self.url = f"http://{address}:{port}/"

    @property
    def runs(self) -> list[Run]:
        """Every report, each (run, phase) once: the first that arrived."""
        lines = self._file.read_text().splitlines()
        found: dict[tuple[str, str, str], Run] = {}
        for line in lines:
            if line.endswith("}"):
                run = Run(**json.loads(line))
                found.setdefault((run.run or str(len(found)), run.key, run.phase), run)
        return list(found.values())

    def of(self, phase: str, prefix: str = "") -> list[Run]:
        return [r for r in self.runs if r.phase == phase and r.key.startswith(prefix)]

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()


def faas_on(cluster: Cluster, *args: str, cwd: Path, timeout: float) -> str:
    """Run the faas CLI against the cluster's first manager; its stdout (DeployFailed)."""
    env = {**os.environ, "DOCKER_HOST": cluster.manager.docker_host, "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "faas", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise DeployFailed(
            f"faas {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return done.stdout


@dataclass
class Deployed:
    root: Path
    project: str
    urls: list[str]


def deploy(
    cluster: Cluster, source: Path, destination: Path, project: str, *args: str, **env: str
) -> Deployed:
    """Copy a project, deploy it with `faas deploy` (variables from `env`), return its URLs."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(".faas", "tests"))
    lines = [f"{name}={value}" for name, value in env.items()]
    (destination / ".env").write_text("\n".join(lines) + "\n")
    out = faas_on(
        cluster, "deploy", "--project", project, "--port", str(GATEWAY_PORT),
        "--publish-mode", "host", *args, cwd=destination, timeout=600,
    )  # fmt: skip
    urls = [line for line in out.splitlines() if line.startswith("http://")]
    return Deployed(destination, project, urls)


def remove(cluster: Cluster, deployed: Deployed) -> None:
    faas_on(cluster, "deploy", "--remove", "--project", deployed.project, cwd=deployed.root,
            timeout=180)  # fmt: skip


def project_leftovers(node: Node, project: str) -> list[str]:
    """What project `project` still has on `node`'s engine (containers; and on managers,
    services, networks, secrets)."""
    label = {"label": f"faas.project={project}"}
    with contextlib.closing(node.engine()) as engine:
        listed = engine.api.containers(all=True, filters=label)  # no inspect: they go meanwhile
        found = [f"container {c['Names'][0].lstrip('/')}" for c in listed]
        if node.role == "manager":
            found += [f"service {s.name}" for s in engine.services.list(filters=label)]
            found += [f"secret {s.name}" for s in engine.secrets.list(filters=label)]
        found += [f"network {n.name}" for n in engine.networks.list(filters=label)]
    return found


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
