"""A multi-node Docker Swarm on one host: Docker engines in containers, as nodes.

Each node is a container of the node image (tests/cluster/node/, built by
scripts/build-cluster-node-image.sh) running its own `dockerd`, with
`/var/lib/docker` on a volume of its own. The nodes share one bridge network,
on which Swarm's control plane and overlay (VXLAN) traffic flow as between
machines. The first manager also runs the registry (Debian's docker-registry,
on port 5000) that function and gateway images are pushed to and workers pull
from; NATS runs in a container of its own, so no node's loss takes it along.

The host reaches each engine through a Unix socket the node publishes in a
directory bind-mounted from the host (not over TCP, which function tasks inside
the nodes could reach). The host reaches the nodes' addresses directly, as it
reaches any container's, so a gateway published in host mode answers there.

What this kernel lacks shapes the cluster: there is no IPVS, so neither service
VIPs nor the ingress routing mesh work (publish in host mode); there is no ESP, so
encrypted overlays do not. `--privileged` is refused, so the node gets every
capability but SYS_RESOURCE, no seccomp or AppArmor profile, writable /proc and
/sys paths, and every device.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

NODE_DIR = Path(__file__).resolve().parent / "node"
GATEWAY_PORT = 18080
"""The port `faas deploy --port` publishes the gateway on, on each manager node."""
REGISTRY_PORT = 5000
NATS_PORT = 4222
LABEL = "faas.test-cluster"
ENGINE_TIMEOUT = 30.0
HEARTBEAT_NS = 5_000_000_000
"""How often nodes report to the managers (Swarm's default); a node that stops is found
down after a few of these, and its tasks are rescheduled then. Shorter beats make a
node busy on this 2-core machine look down when it is not."""
NODE_HARDENING_OFF = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
]  # fmt: skip


def node_image_tag() -> str:
    """The node image's tag: a hash of what it is built from, so a change rebuilds it."""
    digest = hashlib.sha256()
    for path in sorted(NODE_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"faas-cluster-node:{digest.hexdigest()[:16]}"


class ClusterError(RuntimeError):
    pass


@dataclass
class Node:
    name: str
    """The node's hostname, and (with the cluster's prefix) its container's name."""
    role: str
    container: str
    socket_dir: Path
    address: str = ""
    """Its IP address on the cluster's network."""

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_dir}/docker.sock"

    @property
    def gateway_url(self) -> str:
        """Where a gateway task on this node answers (`faas deploy --publish-mode host`)."""
        return f"http://{self.address}:{GATEWAY_PORT}"

    def engine(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, timeout=60)


@dataclass
class Cluster:
    """A swarm of `managers` + `workers` node containers, a registry and NATS."""

    host: docker.DockerClient
    managers: int = 1
    workers: int = 2
    base_image: str = "python:3.11-slim-bookworm"
    prefix: str = field(default_factory=lambda: f"faas-cl-{uuid.uuid4().hex[:6]}")
    nodes: list[Node] = field(default_factory=list)
    nats_address: str = ""
    killed: set[str] = field(default_factory=set)
    """Names of the nodes `kill` stopped."""
    _network: str = ""
    _state: Path | None = None

    # -- what tests use ----------------------------------------------------------------

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def by_role(self, role: str) -> list[Node]:
        return [node for node in self.nodes if node.role == role]

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    @property
    def host_address(self) -> str:
        """This host's address on the cluster's network: what tasks reach it on."""
        network = self.host.networks.get(self._network)
        return str(network.attrs["IPAM"]["Config"][0]["Gateway"])

    @property
    def registry(self) -> str:
        return f"{self.manager.address}:{REGISTRY_PORT}"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.nats_address}:{NATS_PORT}"

    def kill(self, node: Node) -> None:
        """The node's machine dies: its engine and every task on it, at once."""
        self.host.containers.get(node.container).kill()
        self.killed.add(node.name)

    def restart(self, node: Node) -> None:
        """The node's engine restarts (its swarm state survives on its volume)."""
        self.host.containers.get(node.container).restart(timeout=10)
        self._wait_engine(node)

    # -- bringing it up and down -------------------------------------------------------

    def start(self) -> None:
        image = node_image_tag()
        try:
            self.host.images.get(image)
        except docker.errors.ImageNotFound:
            raise ClusterError(
                f"the cluster node image {image} is missing: "
                "scripts/build-cluster-node-image.sh builds it (scripts/test runs it)"
            ) from None
        self._state = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        network = self.host.networks.create(
            f"{self.prefix}-net", driver="bridge", labels={LABEL: self.prefix}
        )
        self._network = network.name
        subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
        roles = ["manager"] * self.managers + ["worker"] * self.workers
        for index, role in enumerate(roles):
            name = f"{role[0]}{index + 1}"
            self.nodes.append(self._start_node(image, name, role, subnet))
        nats = self.host.containers.run(
            image,
            name=f"{self.prefix}-nats",
            entrypoint=["nats-server", "-js", "-p", str(NATS_PORT), "-sd", "/data"],
            network=self._network,
            labels={LABEL: self.prefix},
            detach=True,
        )
        for node in self.nodes:
            self._wait_engine(node)
        self._form_swarm()
        self._start_registry()
        self._load_base_image()
        nats.reload()
        self.nats_address = nats.attrs["NetworkSettings"]["Networks"][self._network]["IPAddress"]

    def _start_node(self, image: str, name: str, role: str, subnet: str) -> Node:
        assert self._state is not None
        socket_dir = self._state / name
        socket_dir.mkdir()
        container = f"{self.prefix}-{name}"
        # The CLI, not the SDK: `systempaths=unconfined` is the CLI's name for empty
        # MaskedPaths/ReadonlyPaths, which the SDK cannot set.
        started = subprocess.run(
            ["docker", "run", "--detach", "--name", container, "--hostname", name,
             "--network", self._network, "--label", f"{LABEL}={self.prefix}",
             "--volume", f"{container}-docker:/var/lib/docker",
             "--volume", f"{socket_dir}:/run/faas-node",
             *NODE_HARDENING_OFF, image,
             "-H", "unix:///var/run/docker.sock", "-H", "unix:///run/faas-node/docker.sock",
             "--insecure-registry", subnet],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if started.returncode:
            raise ClusterError(f"starting node {name}: {started.stderr.strip()}")
        return Node(name=name, role=role, container=container, socket_dir=socket_dir)

    def _wait_engine(self, node: Node) -> None:
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while time.monotonic() < deadline:
            if _answers_ping(node.socket_dir / "docker.sock"):
                break
            time.sleep(0.2)
        else:
            logs = self.host.containers.get(node.container).logs(tail=20).decode(errors="replace")
            raise ClusterError(f"the engine of node {node.name} did not answer:\n{logs}")
        container = self.host.containers.get(node.container)
        node.address = container.attrs["NetworkSettings"]["Networks"][self._network]["IPAddress"]

    def _form_swarm(self) -> None:
        with contextlib.closing(self.manager.engine()) as leader:
            leader.swarm.init(
                advertise_addr=self.manager.address,
                dispatcher_heartbeat_period=HEARTBEAT_NS,
            )
            tokens = leader.swarm.attrs["JoinTokens"]
        for node in self.nodes[1:]:
            with contextlib.closing(node.engine()) as engine:
                engine.swarm.join(
                    remote_addrs=[f"{self.manager.address}:2377"],
                    join_token=tokens["Manager" if node.role == "manager" else "Worker"],
                    advertise_addr=node.address,
                )

    def _start_registry(self) -> None:
        config = (
            "version: 0.1\n"
            "storage: {filesystem: {rootdirectory: /var/lib/docker/faas-registry}}\n"
            f"http: {{addr: '0.0.0.0:{REGISTRY_PORT}'}}\n"
        )
        container = self.host.containers.get(self.manager.container)
        container.exec_run(
            ["sh", "-c", f"printf %s \"{config}\" > /etc/faas-registry.yml && "
             "exec docker-registry serve /etc/faas-registry.yml >/var/log/registry.log 2>&1"],
            detach=True,
        )  # fmt: skip
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while time.monotonic() < deadline:
            probe = container.exec_run(
                ["python3", "-c", f"import urllib.request as u; u.urlopen('http://127.0.0.1:{REGISTRY_PORT}/v2/')"]
            )  # fmt: skip
            if probe.exit_code == 0:
                return
            time.sleep(0.2)
        raise ClusterError("the registry on the manager did not answer")

    def _load_base_image(self) -> None:
        """The base image, into the manager only: it builds every image and pushes it."""
        with subprocess.Popen(["docker", "save", self.base_image], stdout=subprocess.PIPE) as save:
            loaded = subprocess.run(
                ["docker", "-H", self.manager.docker_host, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                check=False,
            )
        if save.returncode or loaded.returncode:
            raise ClusterError(f"loading {self.base_image} into the manager: {loaded.stderr!r}")

    def stop(self) -> None:
        """Remove every container, volume and network of the cluster (what nodes ran goes
        with them) and the socket directories."""
        label = {"label": f"{LABEL}={self.prefix}"}
        found = self.host.containers.list(all=True, filters=label)

        def remove(container: Container) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)

        with ThreadPoolExecutor(max_workers=len(found) or 1) as removing:
            list(removing.map(remove, found))  # each takes seconds: its engine's containers
        for node in self.nodes:
            with contextlib.suppress(docker.errors.NotFound):
                self.host.volumes.get(f"{node.container}-docker").remove(force=True)
        for network in self.host.networks.list(filters=label):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
        if self._state is not None:
            shutil.rmtree(self._state, ignore_errors=True)


def _answers_ping(path: Path) -> bool:
    """The engine behind the Unix socket `path` answers GET /_ping (no client library:
    a connection refused mid-restart must not leave a socket for the collector)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in sock.recv(64)
        except OSError:
            return False


@contextlib.contextmanager
def running_cluster(host: docker.DockerClient, **options: object) -> Iterator[Cluster]:
    cluster = Cluster(host, **options)  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
