"""Kubernetes manifests for a project: what `faas export kubernetes` writes.

Pure: a Project, the text of its functions.yaml and each function's image tag in,
a list of manifest dicts out. Each function gets a Deployment, a ClusterIP
Service and a KEDA ScaledObject; the project gets the gateway (ConfigMap,
Deployment, Service) and a NetworkPolicy. Replica pods get the hardening of the
Docker backend (runtime/backends/docker/containers.py), expressed in pod terms,
and the watchdog environment it sets.

Choices worth knowing:

- KEDA scales on the function's JetStream stream (`faas_<project>_<fn>`, consumer
  `workers`). Its lag is pending + acknowledgement-pending messages, i.e. queued
  plus in flight, over `lagThreshold` = `target_concurrency`: the formula of
  runtime/scaling/decide.py. Scale-down waits `idle_timeout`: `cooldownPeriod`
  for the last replica, the HPA's scale-down stabilization window (which, like
  our autoscaler, keeps the highest recommendation of the window) above it.
- The readiness probe runs the image's python3: the watchdog answers `/_/ready`
  only with the replica token, and an httpGet probe can only send literal
  headers, which would put the token into the Deployment for anyone who reads it.
- One replica token per project, from a Secret the user creates, where the
  Docker backend makes one per replica: Kubernetes injects a Secret into every
  pod of a Deployment alike. Replicas still cannot reach each other: the
  NetworkPolicy admits the gateway only.
- Secrets of functions.yaml are Kubernetes Secrets `<project>-<name>` with one
  key, the secret's name, that the user creates; no value is ever emitted.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import yaml

from runtime.backends.docker.containers import (
    LABEL_FUNCTION,
    LABEL_PROJECT,
    REPLICA_PORT,
    REPLICA_USER,
    SECRETS_DIR,
    TMPFS_SIZE,
)
from runtime.errors import FaasError
from runtime.events.jetstream import names as jetstream_names
from runtime.export import DEFAULT_GATEWAY_IMAGE
from runtime.images import image_reference
from runtime.secrets import env_name
from runtime.spec import SPEC_FILENAME, FunctionSpec, GiB, KiB, MiB, Project, parse_size
from runtime.watchdog import wire

Manifest = dict[str, Any]

GATEWAY_BACKEND = "kubernetes"
"""The backend the gateway pod is started with: it resolves a function to its Service
and leaves replica counts to KEDA. Assumed here; see docs/kubernetes.md."""
GATEWAY_ROOT = "/srv/faas"
NATS_MONITORING_PORT = 8222
KEDA_POLLING_INTERVAL = 5
"""Seconds between KEDA's reads of the backlog, the floor of a scale from zero (default 30)."""
HPA_MAX_STABILIZATION = 3600
"""The largest scale-down stabilization window the HPA API accepts, in seconds."""
SECRET_MODE = 0o440
PROBE_PERIOD = 2
DRAIN_DELAY = 5
"""Seconds a stopping replica keeps accepting calls (FAAS_DRAIN_DELAY): a pod leaves its
Service's endpoints some time after it is told to stop, and calls keep arriving meanwhile."""

LABEL_NAME = "app.kubernetes.io/name"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"


def secret_name(project: str, secret: str) -> str:
    """The Kubernetes Secret holding a functions.yaml secret (`_` is not allowed there)."""
    return f"{project}-{secret.replace('_', '-')}"


def token_secret_name(project: str) -> str:
    return f"{project}-replica-token"


def gateway_name(project: str) -> str:
    return f"{project}-gateway"


def nats_monitoring_endpoint(nats_url: str) -> str:
    """The NATS server's monitoring address, on the host of `cluster.nats_url`."""
    host = urlsplit(nats_url).hostname or "127.0.0.1"
    return f"{host}:{NATS_MONITORING_PORT}"


def manifests(
    project: Project,
    spec_text: str,
    images: Mapping[str, str],
    *,
    namespace: str | None = None,
    gateway_image: str = DEFAULT_GATEWAY_IMAGE,
    monitoring_endpoint: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """Every object the project needs, in an order `kubectl apply` accepts.

    `variables`: what the `${NAME}` placeholders of `spec_text` read here
    (runtime.spec.placeholder_values), given to the gateway as its environment
    so that it reads the file as this machine did.

    `images` maps each function to its image tag (`faas-function:<hash>`, as
    runtime/images.py names it). Without `namespace` the project's name is used and
    a Namespace enforcing the `restricted` Pod Security Standard is included; a
    namespace given is the user's, and is left alone.
    """
    ns = namespace or project.name
    endpoint = monitoring_endpoint or nats_monitoring_endpoint(project.cluster.nats_url)
    found: list[Manifest] = [] if namespace else [_namespace(project)]
    found += _gateway(project, ns, spec_text, gateway_image, variables or {})
    found.append(_network_policy(project, ns))
    for function in project.functions.values():
        image = image_reference(project.cluster.registry, images[function.name])
        found.append(_deployment(project, ns, function, image))
        found.append(_service(project, ns, function))
        found.append(_scaled_object(project, ns, function, endpoint))
    _check_unique(found)
    return found


def warnings(project: Project) -> list[str]:
    """What in functions.yaml will not work as written on Kubernetes, and what to set."""
    found: list[str] = []
    cluster = project.cluster
    if cluster.registry is None:
        found.append(
            "cluster.registry is not set: the Deployments name local images "
            "(faas-function:<hash>) that every node must already have; set a registry "
            "and push the images to it"
        )
    if cluster.queue != "nats":
        found.append(
            "cluster.queue is not nats: KEDA scales on the JetStream backlog and "
            "gateway pods share work through it; set cluster.queue: nats"
        )
    if urlsplit(cluster.nats_url).hostname in ("127.0.0.1", "localhost", "::1"):
        found.append(
            f"cluster.nats_url is {cluster.nats_url}, a loopback address: set it to the "
            "NATS Service, e.g. nats://nats.nats.svc.cluster.local:4222"
        )
    gateway = project.gateway
    unkeyed = any(f.callback_secret is None for f in project.functions.values())
    if gateway.callback_allow and gateway.callback_secret is None and unkeyed:
        found.append(
            "gateway.callback_secret is not set: each gateway pod would sign callbacks "
            "with its own generated key; name a secret"
        )
    if gateway.tls is not None or (gateway.jwt and gateway.jwt.public_key_file):
        found.append(
            "gateway.tls and gateway.jwt.public_key_file name files that are not exported: "
            "terminate TLS at an Ingress, and add the key file to the ConfigMap"
        )
    for function in project.functions.values():
        if function.scale.min == 0 and (function.public or function.routes):
            found.append(
                f"{function.name}: scale.min is 0, and KEDA starts replicas for queued "
                "work only, so a synchronous HTTP call waits for a replica that only "
                "events or async calls start; set scale.min: 1 or call it through "
                "/async-function"
            )
        if function.scale.idle_timeout > HPA_MAX_STABILIZATION:
            found.append(
                f"{function.name}: scale.idle_timeout above 1h: replicas above one step "
                "down after 1h, the longest window the HPA accepts"
            )
    return found


def files(found: Iterable[Manifest]) -> dict[str, list[Manifest]]:
    """Manifests by file, named so that `kubectl apply -f DIR` (alphabetical) creates the
    namespace first: 00-namespace.yaml, 10-gateway.yaml, 20-function-<name>.yaml."""
    grouped: dict[str, list[Manifest]] = {}
    for manifest in found:
        function = manifest["metadata"].get("labels", {}).get(LABEL_FUNCTION)
        if manifest["kind"] == "Namespace":
            name = "00-namespace.yaml"
        elif function is None:
            name = "10-gateway.yaml"
        else:
            name = f"20-function-{function}.yaml"
        grouped.setdefault(name, []).append(manifest)
    return grouped


def dump(found: Iterable[Manifest]) -> str:
    """A multi-document YAML stream; multi-line strings (functions.yaml) as blocks."""
    return yaml.dump_all(list(found), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


# -- the parts ---------------------------------------------------------------------------


def _labels(project: Project, name: str, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: name,
        LABEL_PART_OF: project.name,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: "faas",
        LABEL_PROJECT: project.name,
    }


def _function_labels(project: Project, function: FunctionSpec) -> dict[str, str]:
    return {**_labels(project, function.name, "function"), LABEL_FUNCTION: function.name}


def _selector(project: Project, function: FunctionSpec) -> dict[str, str]:
    return {LABEL_PROJECT: project.name, LABEL_FUNCTION: function.name}


def _metadata(name: str, ns: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": ns, "labels": dict(labels)}


def _namespace(project: Project) -> Manifest:
    labels = {
        LABEL_PART_OF: project.name,
        LABEL_MANAGED_BY: "faas",
        "pod-security.kubernetes.io/enforce": "restricted",
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": project.name, "labels": labels},
    }


def _user_ids() -> tuple[int, int]:
    user, _, group = REPLICA_USER.partition(":")
    return int(user), int(group or user)


def _pod_security() -> dict[str, Any]:
    user, group = _user_ids()
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": group,
        "fsGroup": group,  # makes mounted secrets readable by the replica's group
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _quantity(size: int) -> str:
    for unit, suffix in ((GiB, "Gi"), (MiB, "Mi"), (KiB, "Ki")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _tmp_volume() -> dict[str, Any]:
    """/tmp in memory, sized as the Docker backend's tmpfs (and, as there, counted
    against the container's memory limit)."""
    size = _quantity(parse_size(TMPFS_SIZE))
    return {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": size}}


def _ready_command() -> list[str]:
    url = f"http://127.0.0.1:{REPLICA_PORT}{wire.READY_PATH}"
    token = f"{{{wire.TOKEN_HEADER.title()!r}: os.environ[{wire.TOKEN_ENV!r}]}}"
    script = (
        f"import os, urllib.request as r; r.urlopen(r.Request({url!r}, headers={token}), timeout=1)"
    )
    return ["python3", "-c", script]


def _deployment(project: Project, ns: str, function: FunctionSpec, image: str) -> Manifest:
    env: list[dict[str, Any]] = [
        {"name": key, "value": value} for key, value in function.environment.items()
    ]
    env += [
        {"name": wire.FUNCTION_NAME_ENV, "value": function.name},
        {"name": wire.HANDLER_FILE_ENV, "value": function.handler_file},
        {"name": wire.HANDLER_NAME_ENV, "value": function.handler_name},
        {"name": wire.PORT_ENV, "value": str(REPLICA_PORT)},
        {"name": wire.DRAIN_DELAY_ENV, "value": str(DRAIN_DELAY)},
        {"name": wire.SHUTDOWN_GRACE_ENV, "value": f"{function.timeout:g}"},
        {
            "name": wire.TOKEN_ENV,  # the watchdog drops it from the handler's environment
            "valueFrom": {
                "secretKeyRef": {"name": token_secret_name(project.name), "key": "token"}
            },
        },
    ]
    cpu = f"{max(1, round(function.cpus * 1000))}m"
    limits = {"cpu": cpu, "memory": _quantity(function.memory)}
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [_tmp_volume()]
    if function.secrets:
        sources = [
            {
                "secret": {
                    "name": secret_name(project.name, name),
                    "items": [{"key": name, "path": name}],
                }
            }
            for name in function.secrets
        ]
        mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        volumes.append(
            {"name": "secrets", "projected": {"defaultMode": SECRET_MODE, "sources": sources}}
        )
    container = {
        "name": "function",
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # tags name content: a tag never changes
        "env": env,
        "ports": [{"name": "http", "containerPort": REPLICA_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": _ready_command()},
            "periodSeconds": PROBE_PERIOD,
            "timeoutSeconds": PROBE_PERIOD,
        },
        "resources": {"requests": dict(limits), "limits": limits},
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    labels = _function_labels(project, function)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(function.name, ns, labels),
        "spec": {
            "replicas": function.scale.min,
            "selector": {"matchLabels": _selector(project, function)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,  # a function has no use for the API
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(),
                    # calls in flight at scale-down may run their whole timeout
                    "terminationGracePeriodSeconds": DRAIN_DELAY + math.ceil(function.timeout) + 1,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _service(project: Project, ns: str, function: FunctionSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(function.name, ns, _function_labels(project, function)),
        "spec": {
            # Headless: the name resolves to one address per ready pod, which is how the
            # gateway's kubernetes backend finds replicas (runtime/backends/kubernetes.py).
            "clusterIP": "None",
            "selector": _selector(project, function),
            "ports": [
                {"name": "http", "port": REPLICA_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def _scaled_object(project: Project, ns: str, function: FunctionSpec, endpoint: str) -> Manifest:
    scale = function.scale
    idle = math.ceil(scale.idle_timeout)
    trigger = {
        "type": "nats-jetstream",
        "metadata": {
            "natsServerMonitoringEndpoint": endpoint,
            "account": "$G",  # the global account: the one a server without accounts has
            "stream": jetstream_names.stream(project.name, function.name),
            "consumer": jetstream_names.CONSUMER,
            "lagThreshold": str(scale.target_concurrency),
            "activationLagThreshold": "0",  # one waiting call wakes a function at zero
        },
    }
    behavior = {"scaleDown": {"stabilizationWindowSeconds": min(idle, HPA_MAX_STABILIZATION)}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(function.name, ns, _function_labels(project, function)),
        "spec": {
            "scaleTargetRef": {"name": function.name},
            "pollingInterval": KEDA_POLLING_INTERVAL,
            "cooldownPeriod": idle,
            "minReplicaCount": scale.min,
            "maxReplicaCount": scale.max,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
            "triggers": [trigger],
        },
    }


def _network_policy(project: Project, ns: str) -> Manifest:
    """Only the gateway reaches a function's pods, as on the Docker backend's network."""
    policy_labels = {LABEL_PART_OF: project.name, LABEL_MANAGED_BY: "faas"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(f"{project.name}-functions", ns, policy_labels),
        "spec": {
            "podSelector": {
                "matchLabels": {LABEL_PROJECT: project.name, LABEL_COMPONENT: "function"}
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {
                                    LABEL_PROJECT: project.name,
                                    LABEL_COMPONENT: "gateway",
                                }
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": REPLICA_PORT}],
                }
            ],
        },
    }


def _gateway_secrets(project: Project) -> list[str]:
    """Secrets the gateway itself reads: webhook signatures, JWT and callback keys."""
    gateway = project.gateway
    names = {route.webhook_secret for f in project.functions.values() for route in f.routes}
    names |= {f.callback_secret for f in project.functions.values()}
    names |= {gateway.callback_secret, gateway.jwt.secret if gateway.jwt else None}
    return sorted(name for name in names if name)


def _gateway(
    project: Project, ns: str, spec_text: str, image: str, variables: Mapping[str, str]
) -> list[Manifest]:
    """The ConfigMap holding functions.yaml, and the gateway's Deployment and Service.

    The gateway runs `faas up` on that file, in an emptyDir as project root (its
    `.faas/` state); its own secrets come as FAAS_SECRET_<NAME>, the variables
    runtime/secrets.py reads when the store has no value.
    """
    name = gateway_name(project.name)
    labels = _labels(project, name, "gateway")
    port = project.gateway.port
    config_name = f"{project.name}-functions"
    selector = {LABEL_PROJECT: project.name, LABEL_COMPONENT: "gateway"}
    config: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(config_name, ns, labels),
        "data": {SPEC_FILENAME: spec_text},
    }
    spec_path = f"{GATEWAY_ROOT}/{SPEC_FILENAME}"
    args = ["up", "--file", spec_path, "--host", "0.0.0.0", "--port", str(port)]
    args += ["--backend", GATEWAY_BACKEND, "--no-reload", "--log-json"]
    env: list[dict[str, Any]] = [
        {"name": "FAAS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HOME", "value": "/tmp"},
        {
            "name": "FAAS_REPLICA_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": token_secret_name(project.name), "key": "token"}
            },
        },
    ]
    env += [
        {
            "name": env_name(secret),
            "valueFrom": {
                "secretKeyRef": {"name": secret_name(project.name, secret), "key": secret}
            },
        }
        for secret in _gateway_secrets(project)
    ]
    taken = {entry["name"] for entry in env}
    env += [{"name": k, "value": v} for k, v in sorted(variables.items()) if k not in taken]
    container = {
        "name": "gateway",
        "image": image,
        "command": ["faas"],
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {
                "path": "/healthz",
                "port": "http",
                "scheme": "HTTPS" if project.gateway.tls else "HTTP",
            },
            "periodSeconds": PROBE_PERIOD,
        },
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "project", "mountPath": GATEWAY_ROOT},
            {"name": "config", "mountPath": spec_path, "subPath": SPEC_FILENAME, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    # A subPath mount never sees a changed ConfigMap: the hash rolls the pods instead.
    digest = hashlib.sha256(spec_text.encode()).hexdigest()[:16]
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, ns, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": {"faas.spec-sha256": digest}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [
                        {"name": "project", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": config_name}},
                        _tmp_volume(),
                    ],
                },
            },
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, ns, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [config, deployment, service]


def _check_unique(found: list[Manifest]) -> None:
    """Function objects are named after the function; refuse names the project's own take."""
    seen: set[tuple[str, str]] = set()
    for manifest in found:
        key = (manifest["kind"], manifest["metadata"]["name"])
        if key in seen:
            raise FaasError(
                f"two {key[0]}s would be named {key[1]!r}: rename the function that "
                "clashes with the project's own objects"
            )
        seen.add(key)
