"""`faas export kubernetes`: the project as Kubernetes manifests (runtime/export/kubernetes.py)."""

from __future__ import annotations

from pathlib import Path

import click

from faas.cli_common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    errors,
    fail,
    file_option,
    load,
    project_option,
    refuse_debug,
)
from runtime.errors import EngineUnavailable, FaasError
from runtime.export import DEFAULT_GATEWAY_IMAGE
from runtime.export.tags import image_tags
from runtime.spec import placeholder_values


@click.group()
def export() -> None:
    """Describe the project for another platform."""


@export.command()
@file_option
@project_option
@click.option("--namespace", default=None, help="Namespace [default: the project's name].")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one file per function and one for the gateway here [default: stdout].",
)
@click.option(
    "--gateway-image",
    default=DEFAULT_GATEWAY_IMAGE,
    show_default=True,
    help="An image with this package installed, that runs `faas`.",
)
@click.option(
    "--nats-monitoring-endpoint",
    default=None,
    help="host:port where KEDA reads the JetStream backlog "
    "[default: the host of cluster.nats_url, port 8222].",
)
def kubernetes(
    spec_file: Path,
    project: str | None,
    namespace: str | None,
    out: Path | None,
    gateway_image: str,
    nats_monitoring_endpoint: str | None,
) -> None:
    """Write the project as Kubernetes manifests, scaled by KEDA (docs/kubernetes.md).

    Per function a Deployment, a Service and a KEDA ScaledObject, plus the gateway.
    Images are named by the tags `faas build` makes: build (and push) first.

    \b
    Examples:
      faas export kubernetes --out k8s/ && kubectl apply -f k8s/
      faas export kubernetes --namespace apps --gateway-image reg.example/faas-gateway:0.1
    """
    from runtime.export import kubernetes as k8s  # loads the Docker SDK: only for this command

    loaded = load(spec_file, project)
    refuse_debug(loaded, spec_file, "an export runs it in a cluster")
    try:
        found = k8s.manifests(
            loaded,
            spec_file.read_text(encoding="utf-8"),
            image_tags(loaded),
            namespace=namespace,
            gateway_image=gateway_image,
            monitoring_endpoint=nats_monitoring_endpoint,
            variables=placeholder_values(loaded),
        )
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except FaasError as exc:
        fail(str(exc), EXIT_FAILED)
    for warning in k8s.warnings(loaded):
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if out is None:
        click.echo(k8s.dump(found), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, manifests in k8s.files(found).items():
        (out / name).write_text(k8s.dump(manifests), encoding="utf-8")
        errors.print(f"wrote {out / name}", highlight=False)
