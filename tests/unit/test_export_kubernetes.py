"""`faas export kubernetes`: every manifest checked offline against the API's schemas.

Built-in kinds are validated with kubernetes-validate (the OpenAPI schemas of each
Kubernetes release, bundled, in strict mode: unknown fields fail). The KEDA
ScaledObject is a CRD those schemas lack; tests/unit/schemas/keda-scaledobject.json
is written from KEDA's documented spec and checked with jsonschema.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from faas import cli, cli_export
from runtime.errors import FaasError
from runtime.events.jetstream import names as jetstream_names
from runtime.export import kubernetes as k8s
from runtime.spec import Project, load_project, load_project_text, placeholder_values

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.30"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas/keda-scaledobject.json").read_text())
TAG = "faas-function:0123456789abcdef"

CLUSTER_PROJECT = """\
version: 1
project: shop
cluster:
  registry: registry.example.com/team
  queue: nats
  nats_url: nats://nats.nats.svc.cluster.local:4222
gateway:
  port: 9000
  callback_allow: [hooks.example.com]
  callback_secret: callback-key
defaults:
  scale: {min: 0, max: 4, target_concurrency: 3, idle_timeout: 90s}
functions:
  orders:
    handler: functions/orders.py:main
    secrets: [db-password, api_key]
    environment: {REGION: eu}
    memory: 96MiB
    cpus: 0.25
    events: ["orders.*"]
    http:
      - path: /hooks/orders
        methods: [POST]
        webhook_secret: orders-hook
  report:
    handler: functions/report.py
    public: false
    schedule: "0 6 * * *"
    scale: {min: 2, max: 6, idle_timeout: 2h}
"""


def validate(manifest: dict[str, Any]) -> None:
    if manifest["apiVersion"] == "keda.sh/v1alpha1":
        jsonschema.validate(manifest, KEDA_SCHEMA)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def export(project: Project, text: str, **options: Any) -> list[dict[str, Any]]:
    return k8s.manifests(project, text, {name: TAG for name in project.functions}, **options)


def examples() -> tuple[Project, str]:
    return load_project(REPO / "functions.yaml"), (REPO / "functions.yaml").read_text()


def cluster_project(text: str = CLUSTER_PROJECT) -> tuple[Project, str]:
    return load_project_text(text, filename="functions.yaml", root=Path("/srv/shop")), text


def find(found: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [match] = [m for m in found if m["kind"] == kind and m["metadata"]["name"] == name]
    return match


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    [only] = containers
    return only


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


# -- every manifest is valid -----------------------------------------------------------


@pytest.mark.parametrize("which", ["examples", "cluster", "cluster-namespace"])
def test_every_manifest_validates(which: str) -> None:
    project, text = examples() if which == "examples" else cluster_project()
    namespace = "apps" if which == "cluster-namespace" else None
    found = export(project, text, namespace=namespace)
    kinds = sorted({m["kind"] for m in found})
    expected = ["ConfigMap", "Deployment", "NetworkPolicy", "ScaledObject", "Service"]
    assert kinds == sorted(expected + ([] if namespace else ["Namespace"]))
    for manifest in found:
        validate(manifest)
    # and what a file holds is what was validated
    assert list(yaml.safe_load_all(k8s.dump(found))) == found


def test_kubernetes_validator_rejects_a_broken_deployment() -> None:
    project, text = cluster_project()
    deployment = find(export(project, text), "Deployment", "orders")
    validate(deployment)

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="'two' is not"):
        validate(wrong_type)

    unknown_field = copy.deepcopy(deployment)
    container(unknown_field)["securityContext"]["readOnlyRootFs"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFs"):
        validate(unknown_field)

    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError, match="'selector' is a required"):
        validate(no_selector)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "minReplicaCount"), "0", "is not of type 'integer'"),
        (("spec", "triggers", 0, "metadata", "lagThreshold"), 3, "is not of type 'string'"),
        (("spec", "triggers", 0, "metadata", "lagThreshold"), "three", "does not match"),
        (("spec", "triggers", 0, "metadata", "stream_name"), "x", "Additional properties"),
        (("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown",
          "stabilizationWindowSeconds"), 7200, "is greater than the maximum"),
        (("spec", "coolDownPeriod"), 60, "Additional properties"),
    ],
)  # fmt: skip
def test_keda_schema_rejects_a_broken_scaled_object(
    path: tuple[str | int, ...], value: Any, message: str
) -> None:
    project, text = cluster_project()
    scaled = find(export(project, text), "ScaledObject", "orders")
    validate(scaled)
    broken = copy.deepcopy(scaled)
    target: Any = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate(broken)


def test_keda_schema_requires_the_stream_and_consumer() -> None:
    project, text = cluster_project()
    scaled = find(export(project, text), "ScaledObject", "orders")
    del scaled["spec"]["triggers"][0]["metadata"]["consumer"]
    with pytest.raises(jsonschema.ValidationError, match="'consumer' is a required"):
        validate(scaled)


# -- what maps to what -----------------------------------------------------------------


def test_scaled_object_reads_the_functions_jetstream_backlog() -> None:
    project, text = cluster_project()
    found = export(project, text)
    orders = find(found, "ScaledObject", "orders")["spec"]
    assert orders["scaleTargetRef"] == {"name": "orders"}
    assert (orders["minReplicaCount"], orders["maxReplicaCount"]) == (0, 4)
    assert orders["cooldownPeriod"] == 90
    [trigger] = orders["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"] == {
        "natsServerMonitoringEndpoint": "nats.nats.svc.cluster.local:8222",
        "account": "$G",
        "stream": jetstream_names.stream("shop", "orders"),
        "consumer": jetstream_names.CONSUMER,
        "lagThreshold": "3",
        "activationLagThreshold": "0",
    }
    report = find(found, "ScaledObject", "report")["spec"]
    assert (report["minReplicaCount"], report["maxReplicaCount"]) == (2, 6)
    assert report["cooldownPeriod"] == 7200
    window = report["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert window == {"stabilizationWindowSeconds": 3600}  # the HPA's maximum
    assert find(found, "Deployment", "report")["spec"]["replicas"] == 2
    assert find(found, "Deployment", "orders")["spec"]["replicas"] == 0

    endpoint = export(project, text, monitoring_endpoint="nats-mon.ops:8222")
    metadata = find(endpoint, "ScaledObject", "orders")["spec"]["triggers"][0]["metadata"]
    assert metadata["natsServerMonitoringEndpoint"] == "nats-mon.ops:8222"


def test_function_pods_are_hardened_like_docker_replicas() -> None:
    project, text = cluster_project()
    deployment = find(export(project, text), "Deployment", "orders")
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "orders"
    assert labels["app.kubernetes.io/part-of"] == "shop"
    assert labels["faas.function"] == "orders"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    main = container(deployment)
    assert main["image"] == f"registry.example.com/team/{TAG}"
    assert main["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert main["resources"]["limits"] == {"cpu": "250m", "memory": "96Mi"}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    # the readiness probe asks the watchdog with the token, as the gateway does
    probe = main["readinessProbe"]["exec"]["command"]
    assert probe[0] == "python3" and "/_/ready" in probe[2] and "X-Faas-Token" in probe[2]


def test_watchdog_environment_and_secrets_are_references_only() -> None:
    project, text = cluster_project()
    found = export(project, text)
    deployment = find(found, "Deployment", "orders")
    env = env_of(deployment)
    assert env["REGION"] == "eu"
    assert env["FAAS_HANDLER_FILE"] == "functions/orders.py"
    assert env["FAAS_HANDLER_NAME"] == "main"
    assert env["FAAS_FUNCTION_NAME"] == "orders"
    assert env["FAAS_PORT"] == "8080"
    # a replica stopped at scale-down finishes its calls: drain, then up to the timeout
    assert (env["FAAS_DRAIN_DELAY"], env["FAAS_SHUTDOWN_GRACE"]) == ("5", "30")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 36
    assert env["FAAS_TOKEN"] == {"secretKeyRef": {"name": "shop-replica-token", "key": "token"}}
    main = container(deployment)
    assert {"name": "secrets", "mountPath": "/run/secrets", "readOnly": True} in main[
        "volumeMounts"
    ]
    [volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "projected" in v]
    sources = [s["secret"] for s in volume["projected"]["sources"]]
    assert sources == [
        {"name": "shop-db-password", "items": [{"key": "db-password", "path": "db-password"}]},
        {"name": "shop-api-key", "items": [{"key": "api_key", "path": "api_key"}]},
    ]
    assert not [m for m in found if m["kind"] == "Secret"]  # the user creates them
    gateway_env = env_of(find(found, "Deployment", "shop-gateway"))
    assert gateway_env["FAAS_SECRET_ORDERS_HOOK"] == {
        "secretKeyRef": {"name": "shop-orders-hook", "key": "orders-hook"}
    }
    assert "FAAS_SECRET_CALLBACK_KEY" in gateway_env
    assert "FAAS_SECRET_DB_PASSWORD" not in gateway_env  # a function's secret, not the gateway's


def test_only_the_gateway_reaches_function_pods() -> None:
    project, text = cluster_project()
    found = export(project, text)
    policy = find(found, "NetworkPolicy", "shop-functions")["spec"]
    [rule] = policy["ingress"]
    [source] = rule["from"]
    gateway_pod = find(found, "Deployment", "shop-gateway")["spec"]["template"]["metadata"]
    function_pod = find(found, "Deployment", "orders")["spec"]["template"]["metadata"]

    def selects(selector: dict[str, Any], pod: dict[str, Any]) -> bool:
        return bool(selector["matchLabels"].items() <= pod["labels"].items())

    assert policy["policyTypes"] == ["Ingress"]
    assert selects(policy["podSelector"], function_pod)
    assert not selects(policy["podSelector"], gateway_pod)
    assert selects(source["podSelector"], gateway_pod)
    assert not selects(source["podSelector"], function_pod)
    service = find(found, "Service", "orders")["spec"]
    assert service["clusterIP"] == "None"  # headless: one address per ready pod
    assert selects({"matchLabels": service["selector"]}, function_pod)


def test_gateway_serves_the_configmap_on_the_nats_queue() -> None:
    project, text = cluster_project()
    found = export(project, text, gateway_image="registry.example.com/team/faas-gateway:0.1")
    config = find(found, "ConfigMap", "shop-functions")
    assert config["data"] == {"functions.yaml": text}
    deployment = find(found, "Deployment", "shop-gateway")
    gateway = container(deployment)
    assert gateway["image"] == "registry.example.com/team/faas-gateway:0.1"
    assert gateway["command"] == ["faas"]
    assert gateway["args"][:3] == ["up", "--file", "/srv/faas/functions.yaml"]
    assert "--no-reload" in gateway["args"] and "0.0.0.0" in gateway["args"]
    assert gateway["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert find(found, "Service", "shop-gateway")["spec"]["ports"][0]["port"] == 9000
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    changed = export(project, text + "# edited\n")
    assert (
        annotations
        != find(changed, "Deployment", "shop-gateway")["spec"]["template"]["metadata"][
            "annotations"
        ]
    )  # a new functions.yaml rolls the gateway


def test_namespace_defaults_to_the_project() -> None:
    project, text = cluster_project()
    found = export(project, text)
    namespace = found[0]
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "shop"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {m["metadata"].get("namespace") for m in found[1:]} == {"shop"}
    given = export(project, text, namespace="apps")
    assert {m["metadata"]["namespace"] for m in given} == {"apps"}  # and no Namespace object


def test_a_function_named_like_the_gateway_is_refused() -> None:
    text = CLUSTER_PROJECT.replace("  report:\n", "  shop-gateway:\n")
    project, text = cluster_project(text)
    with pytest.raises(FaasError, match="'shop-gateway'"):
        export(project, text)


def test_warnings_name_what_to_set() -> None:
    project, _ = examples()
    found = "\n".join(k8s.warnings(project))
    assert "cluster.registry" in found and "cluster.queue" in found
    assert "cluster.nats_url" in found and "gateway.callback_secret" in found
    assert "hello: scale.min is 0" in found and "audit:" not in found  # not public, no routes
    cluster, _ = cluster_project()
    assert [w.split(":")[0] for w in k8s.warnings(cluster)] == ["orders", "report"]


def test_files_order_for_kubectl_apply() -> None:
    project, text = cluster_project()
    grouped = k8s.files(export(project, text))
    assert (
        sorted(grouped)
        == list(grouped)
        == [
            "00-namespace.yaml",
            "10-gateway.yaml",
            "20-function-orders.yaml",
            "20-function-report.yaml",
        ]
    )
    assert [m["kind"] for m in grouped["20-function-orders.yaml"]] == [
        "Deployment",
        "Service",
        "ScaledObject",
    ]


def test_cli_writes_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # image_tags asks the engine for base image ids; here a fixed tag stands in for it
    monkeypatch.setattr(cli_export, "image_tags", lambda p: dict.fromkeys(p.functions, TAG))
    spec = tmp_path / "functions.yaml"
    spec.write_text(CLUSTER_PROJECT)
    runner = CliRunner()
    out = tmp_path / "k8s"
    result = runner.invoke(cli.main, ["export", "kubernetes", "-f", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(k8s.files(export(*cluster_project())))
    for path in out.iterdir():
        for manifest in yaml.safe_load_all(path.read_text()):
            validate(manifest)

    args = ["export", "kubernetes", "-f", str(spec), "--namespace", "apps"]
    args += ["--nats-monitoring-endpoint", "mon:8222"]
    printed = runner.invoke(cli.main, args)
    assert printed.exit_code == 0, printed.output
    documents = list(yaml.safe_load_all(printed.stdout))
    assert {d["metadata"]["namespace"] for d in documents} == {"apps"}
    triggers = [d["spec"]["triggers"][0] for d in documents if d["kind"] == "ScaledObject"]
    assert {t["metadata"]["natsServerMonitoringEndpoint"] for t in triggers} == {"mon:8222"}


def test_registry_reference() -> None:
    assert k8s.image_reference(None, TAG) == TAG
    assert k8s.image_reference("127.0.0.1:5000", TAG) == f"127.0.0.1:5000/{TAG}"
    assert k8s.nats_monitoring_endpoint("nats://user:pw@nats.ops:4222") == "nats.ops:8222"


def test_yaml_keeps_strings_strings() -> None:
    text = k8s.dump([{"a": "0", "b": "$G", "c": "true", "d": "x\ny\n"}])
    assert yaml.safe_load(text) == {"a": "0", "b": "$G", "c": "true", "d": "x\ny\n"}
    assert "d: |" in text


def test_the_gateway_reads_placeholders_as_the_exporting_machine_did(tmp_path: Path) -> None:
    """The ConfigMap keeps `${NAME}`; the gateway gets the values as its environment."""
    text = CLUSTER_PROJECT.replace("port: 9000", "port: ${GATEWAY_PORT:-9000}")
    (tmp_path / "functions.yaml").write_text(text)
    (tmp_path / ".env").write_text("GATEWAY_PORT=9100\nHOME=/not/the/gateway/home\n")
    project = load_project(tmp_path / "functions.yaml", environ={})
    variables = placeholder_values(project, environ={})
    assert variables == {"GATEWAY_PORT": "9100"}  # only what the file reads
    found = export(project, text, variables={**variables, "HOME": "/elsewhere"})
    assert find(found, "ConfigMap", "shop-functions")["data"] == {"functions.yaml": text}
    env = env_of(find(found, "Deployment", "shop-gateway"))
    assert (env["GATEWAY_PORT"], env["HOME"]) == ("9100", "/tmp")  # the gateway's own win
    for manifest in found:
        validate(manifest)
