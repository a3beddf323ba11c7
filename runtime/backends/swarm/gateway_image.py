"""The gateway's own image and Swarm service, for `faas deploy` (deploy.py).

The image holds this package (faas, gateway, runtime) on top of the base image,
with its dependencies resolved on the host by pip for cp311 manylinux
(`runtime.requirements.resolve`, as for functions: builds need no network),
plus the project: functions.yaml, each function's code directory and
requirements file. It also carries the host's resolved requirements of the
functions, as the requirements cache (`FAAS_CACHE_DIR`): the gateway inside
computes each function's image tag as the host did (same files, same base
image id) and finds the images `faas deploy` built, so it builds nothing and
never runs pip (the base image has none).

The tag is a hash of the whole context, so an unchanged project and package
reuse the image.

Everything here is pure but for reading files and resolving requirements
through the resolver it is given.
"""

from __future__ import annotations

import importlib.metadata
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from runtime import distribution
from runtime.backends.base import ImageRequest
from runtime.backends.docker import containers
from runtime.backends.swarm import ADDRESS_MODE_ENV, services
from runtime.backends.swarm.warm import warm_network_name
from runtime.errors import FaasError
from runtime.images import RequirementsResolver, code_root, files_digest, tar_files
from runtime.own_code import walk_files
from runtime.spec import Project

ROOT = "/opt/faas-gateway"
PROJECT_DIR = "/srv"
SPEC_FILE = f"{PROJECT_DIR}/functions.yaml"
STATE_DIR = f"{PROJECT_DIR}/.faas"
GATEWAY_PORT = 8080
DOCKER_SOCKET = "/var/run/docker.sock"
PACKAGES = distribution.PACKAGES
ROLE = "gateway"
IPVS = Path("/proc/sys/net/ipv4/vs")
"""Present when this kernel has IPVS, which the routing mesh balances connections with."""
STOP_GRACE = 20.0
"""Seconds a stopping gateway has to finish calls in flight and close its queue."""
PROJECT_ENV = "FAAS_PROJECT"
"""The `faas` CLI's --project: `docker exec <gateway> python3 -m faas ls` finds the project."""

DOCKERFILE = """\
FROM {base}
COPY deps/ {root}/deps/
COPY packages/ {root}/packages/
COPY cache/ {root}/cache/
COPY project/ {project_dir}/
RUN python3 -m compileall -q {root}/packages {root}/deps > /dev/null || true
ENV PYTHONPATH={root}/packages:{root}/deps PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    FAAS_CACHE_DIR={root}/cache
WORKDIR {project_dir}
EXPOSE {port}
CMD {command}
"""


def service_name(project: str) -> str:
    return f"faas-{project}-{ROLE}"


def volume_name(project: str) -> str:
    """The gateway's .faas/ (durable queue, keys): one volume per task slot, on its node."""
    return f"faas-{project}-{ROLE}-{{{{.Task.Slot}}}}"


def default_publish_mode() -> str:
    """`ingress` (the routing mesh) where this host's kernel can run it, else `host`."""
    return "ingress" if IPVS.is_dir() else "host"


def command(project: str) -> list[str]:
    return [
        "python3", "-m", "faas", "up", "--backend", "swarm", "--no-reload",
        "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
        "-f", SPEC_FILE, "--project", project,
    ]  # fmt: skip


def gateway_requirements() -> str:
    """This package's run-time requirements, pinned to the versions installed here."""
    lines = []
    for requirement in distribution.requirements():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?", requirement)
        if match is None:
            continue
        name, extras = match.group(1), match.group(2) or ""
        try:
            lines.append(f"{name}{extras}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(requirement.split(";")[0].strip())
    return "\n".join(sorted(lines)) + "\n"


def resolve_gateway_requirements(resolve: RequirementsResolver) -> Path:
    """The directory of the gateway's dependencies (cached by content, like a function's)."""
    with tempfile.TemporaryDirectory(prefix="faas-gateway-") as directory:
        requirements = Path(directory) / "requirements.txt"
        requirements.write_text(gateway_requirements())
        return resolve(requirements)


def plan_gateway_image(
    project: Project,
    spec_file: Path,
    base_image_id: str,
    gateway_deps: Path,
    resolve: RequirementsResolver,
) -> ImageRequest:
    """The gateway's image: tagged `faas-gateway:<hash of the context>`."""
    if project.gateway.tls is not None:
        raise FaasError(
            "faas deploy does not bake TLS keys into an image: remove gateway.tls and "
            "terminate TLS in front of the published port"
        )
    files: dict[str, bytes] = {"cache/.keep": b"", "deps/.keep": b""}
    for relative, path in walk_files(gateway_deps, PurePosixPath("deps")):
        files[relative] = path.read_bytes()
    files.update(_dist_info())
    for package in PACKAGES:
        directory = distribution.package_directory(package)
        for relative, path in walk_files(directory, PurePosixPath("packages") / package):
            files[relative] = path.read_bytes()
    files["project/functions.yaml"] = spec_file.read_bytes()
    for function in project.functions.values():
        code = code_root(function)
        for relative, path in walk_files(project.root / code, PurePosixPath("project") / code):
            files[relative] = path.read_bytes()
        if function.requirements:
            requirements = project.root / function.requirements
            files[f"project/{function.requirements}"] = requirements.read_bytes()
            resolved = resolve(requirements)
            # An empty resolution must exist too: the gateway finds the cache by directory.
            files[f"cache/deps/{resolved.name}/.keep"] = b""
            for relative, path in walk_files(resolved, PurePosixPath("cache/deps") / resolved.name):
                files[relative] = path.read_bytes()
    dockerfile = DOCKERFILE.format(
        base=base_image_id,
        root=ROOT,
        project_dir=PROJECT_DIR,
        port=GATEWAY_PORT,
        command='["' + '", "'.join(command(project.name)) + '"]',
    )
    files["Dockerfile"] = dockerfile.encode()
    tag = f"faas-{ROLE}:{files_digest(files, extra='')[:16]}"
    return ImageRequest(function=ROLE, tag=tag, context=tar_files(files))


def _dist_info() -> dict[str, bytes]:
    """Metadata of this distribution, so `faas --version` works inside the image too."""
    name, version = distribution.name(), distribution.version()
    folder = f"deps/{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    top_level = "".join(f"{package}\n" for package in PACKAGES)
    return {f"{folder}/METADATA": metadata.encode(), f"{folder}/top_level.txt": top_level.encode()}


def service_args(
    project: str,
    image: str,
    *,
    functions: Sequence[str],
    port: int,
    replicas: int,
    secrets: Mapping[str, tuple[str, str]],
    node_id: str | None,
    publish_mode: str = "ingress",
    variables: Mapping[str, str] | None = None,
    warm: bool = False,
) -> dict[str, Any]:
    """Arguments for `APIClient.create_service` (and `update_service`, with a version).

    `secrets` maps a path inside the container (the admin token, the project's
    secrets under .faas/secrets/) to a Swarm secret's (id, name). `node_id` pins
    the gateway to the node that holds its image (there is no registry to pull it from).
    `publish_mode` is `ingress` (the routing mesh: every node answers) or `host` (only
    the nodes running a gateway task answer: for kernels without IPVS, which the mesh needs).
    `variables`: what the `${NAME}` placeholders of functions.yaml read on this machine
    (runtime.spec.placeholder_values), so that the gateway inside reads the file alike.
    `warm`: also attached to the project's warm network, to claim warm tasks (warm.py).
    """
    labels = {containers.LABEL_PROJECT: project, containers.LABEL_ROLE: ROLE}
    constraints = ["node.role==manager"]
    if node_id is not None:
        constraints.append(f"node.id=={node_id}")
    container_spec = {
        "Image": image,
        "Command": command(project),
        "Env": [f"{ADDRESS_MODE_ENV}=overlay", f"{PROJECT_ENV}={project}"]
        + [
            f"{name}={value}"
            for name, value in sorted((variables or {}).items())
            if name not in (ADDRESS_MODE_ENV, PROJECT_ENV)
        ],
        "Labels": labels,
        "Mounts": [
            # The engine's API: the gateway creates, scales and removes function services.
            {"Type": "bind", "Source": DOCKER_SOCKET, "Target": DOCKER_SOCKET},
            {
                "Type": "volume",
                "Source": volume_name(project),
                "Target": STATE_DIR,
                "VolumeOptions": {"Labels": labels},
            },
        ],
        "Secrets": [
            {
                "SecretID": secret_id,
                "SecretName": swarm_name,
                "File": {"Name": target, "UID": "0", "GID": "0", "Mode": 0o400},
            }
            for target, (secret_id, swarm_name) in sorted(secrets.items())
        ],
        "StopSignal": "SIGTERM",
        "StopGracePeriod": int(STOP_GRACE * 1e9),
    }
    task_template: dict[str, Any] = {
        "ContainerSpec": container_spec,
        "Placement": {"Constraints": constraints},
        "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000, "MaxAttempts": 0},
        "Networks": [{"Target": services.network_name(project, f)} for f in sorted(functions)]
        + ([{"Target": warm_network_name(project)}] if warm else []),
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "10m", "max-file": "3"}},
    }
    return {
        "task_template": task_template,
        "name": service_name(project),
        "labels": labels,
        "mode": {"Replicated": {"Replicas": replicas}},
        # The routing mesh: every node of the swarm answers on `port` (in `ingress` mode).
        "endpoint_spec": {
            "Mode": "vip",
            "Ports": [
                {
                    "Protocol": "tcp",
                    "PublishedPort": port,
                    "TargetPort": GATEWAY_PORT,
                    "PublishMode": publish_mode,
                }
            ],
        },
        # One gateway at a time: a task's volume (its queue) is held by one process.
        "update_config": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"},
    }
