"""`faas deploy`'s runtime side without an engine: the gateway service's arguments, and
the function images built through a backend's image verbs (an in-memory fake here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faas import cli_deploy
from runtime.backends.base import ImageRequest, ProgressCallback
from runtime.backends.swarm import ADDRESS_MODE_ENV, deploy, gateway_image
from runtime.interpreter import Interpreter
from runtime.requirements import default_interpreter
from runtime.spec import load_project_text

SPEC = """\
version: 1
project: shop
functions:
  hello:
    handler: functions/hello.py
  broken:
    handler: functions/missing.py
"""


class ImageVerbs:
    """The image verbs of a backend, recorded."""

    def __init__(self) -> None:
        self.prepared = False
        self.bases: list[str] = []
        self.built: list[ImageRequest] = []
        self.pushed_bases: list[str] = []

    async def prepare(self) -> None:
        self.prepared = True

    async def ensure_base_image(self, image: str, progress: ProgressCallback) -> None:
        self.bases.append(image)

    async def image_id(self, image: str) -> str | None:
        return f"sha256:{image}"

    async def push_base_image(self, image: str, progress: ProgressCallback) -> None:
        self.pushed_bases.append(image)

    async def build_image(self, request: ImageRequest, progress: ProgressCallback) -> bool:
        self.built.append(request)
        return True

    async def interpreter(self, image_id: str) -> Interpreter:
        return default_interpreter()


def test_function_images_build_and_failures_are_named(tmp_path: Path) -> None:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "hello.py").write_text("def handle(e, c):\n    return 'hi'\n")
    project = load_project_text(SPEC, filename="functions.yaml", root=tmp_path)
    verbs = ImageVerbs()
    seen: list[tuple[str, str]] = []

    failures = asyncio.run(
        deploy.build_function_images(
            verbs,  # type: ignore[arg-type]
            project,
            lambda task, message, _: seen.append((task, message)),
        )
    )

    assert verbs.prepared  # the manager check comes first
    assert verbs.bases == [project.functions["hello"].base_image]
    assert verbs.pushed_bases == verbs.bases  # gateways on other managers plan from it
    # The function's image, then its kind's warm image for the warm services.
    assert [request.function for request in verbs.built] == ["hello", ""]
    assert verbs.built[0].tag.startswith("faas-function:")
    assert verbs.built[1].tag.startswith("faas-warm:")
    assert failures == ["broken: handler file functions/missing.py not found"]
    assert ("hello", f"built {verbs.built[0].tag}") in seen


def test_the_gateway_service_runs_in_overlay_mode_for_its_project() -> None:
    args = gateway_image.service_args(
        "shop",
        "faas-gateway:0123",
        functions=["hello"],
        port=9000,
        replicas=2,
        secrets={},
        node_id="node-1",
        publish_mode="host",
    )
    container = args["task_template"]["ContainerSpec"]
    assert container["Env"] == [f"{ADDRESS_MODE_ENV}=overlay", "FAAS_PROJECT=shop"]
    assert args["mode"] == {"Replicated": {"Replicas": 2}}
    assert args["endpoint_spec"]["Ports"][0]["PublishMode"] == "host"
    assert args["task_template"]["Placement"]["Constraints"] == [
        "node.role==manager",
        "node.id==node-1",
    ]


def test_the_gateway_service_gets_the_values_of_the_placeholders() -> None:
    args = gateway_image.service_args(
        "shop",
        "faas-gateway:0123",
        functions=["hello"],
        port=9000,
        replicas=1,
        secrets={},
        node_id=None,
        variables={"REGISTRY": "r.example", "FAAS_PROJECT": "other"},
    )
    assert args["task_template"]["ContainerSpec"]["Env"] == [
        f"{ADDRESS_MODE_ENV}=overlay",
        "FAAS_PROJECT=shop",  # the service's own settings are not overridden
        "REGISTRY=r.example",
    ]


def test_options_default_to_the_routing_mesh_on_port_8080() -> None:
    options = deploy.GatewayOptions()
    assert (options.port, options.replicas, options.publish_mode) == (8080, 1, "ingress")
    assert options.ready_timeout == deploy.DEFAULT_TIMEOUT == cli_deploy.DEFAULT_TIMEOUT
