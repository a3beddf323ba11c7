"""Base and function images on the local Docker Engine.

A function image's tag is a hash of its inputs, so `build` is a no-op for an
unchanged function. The base image is pulled when a registry answers; when
none does, `scripts/build-base-image.sh` makes an equivalent from Debian
packages (debootstrap), which takes under a minute.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
from pathlib import Path

import docker.errors
from docker.api.client import APIClient

from runtime.backends.base import ImageRequest, ProgressCallback
from runtime.errors import ImageBuildError

log = logging.getLogger("faas.images")

BASE_IMAGE_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "build-base-image.sh"
DEBOOTSTRAP_EXPECTED_LINES = 430
"""About how many lines debootstrap prints for a minbase + python3 root: drives the progress bar."""

PULL_TIMEOUT = 20.0


def image_id(api: APIClient, image: str) -> str | None:
    try:
        return str(api.inspect_image(image)["Id"])
    except docker.errors.ImageNotFound:
        return None


def ensure_base_image(api: APIClient, image: str, progress: ProgressCallback) -> None:
    if image_id(api, image) is not None:
        return
    progress(f"pulling {image}", None)
    pull_error = _try_pull(api, image)
    if pull_error is None:
        return
    log.info(
        "pull failed, building from Debian packages", extra={"image": image, "error": pull_error}
    )
    _build_base_from_debian(image, progress)
    if image_id(api, image) is None:
        raise ImageBuildError(f"{BASE_IMAGE_SCRIPT.name} finished but image {image} is missing")


def _try_pull(api: APIClient, image: str) -> str | None:
    """Pull the image; returns why it failed, or None on success."""
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    original_timeout = api.timeout
    api.timeout = PULL_TIMEOUT
    try:
        for event in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                return str(event["error"])
    except (docker.errors.DockerException, OSError) as exc:
        return str(exc)
    finally:
        api.timeout = original_timeout
    return None


def _build_base_from_debian(image: str, progress: ProgressCallback) -> None:
    if not BASE_IMAGE_SCRIPT.exists():
        raise ImageBuildError(
            f"cannot pull {image} and {BASE_IMAGE_SCRIPT} is missing to build it; "
            "pull or build the base image by hand, or set base_image in functions.yaml"
        )
    progress(f"no registry answers: building {image} from Debian packages", 0.0)
    process = subprocess.Popen(
        ["bash", str(BASE_IMAGE_SCRIPT), image],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    tail: list[str] = []
    for count, line in enumerate(process.stdout, start=1):
        line = line.rstrip()
        tail = [*tail[-19:], line]
        progress(line[:80], min(count / DEBOOTSTRAP_EXPECTED_LINES, 0.99))
    if process.wait() != 0:
        raise ImageBuildError(
            f"building base image {image} failed (exit {process.returncode}):\n" + "\n".join(tail)
        )
    progress(f"built {image}", 1.0)


def build_function_image(api: APIClient, request: ImageRequest, progress: ProgressCallback) -> bool:
    if image_id(api, request.tag) is not None:
        return False
    progress(f"building {request.tag}", 0.0)
    subject = request.function or "the warm pool"
    output: list[str] = []
    try:
        events = api.build(
            fileobj=io.BytesIO(request.context),
            custom_context=True,
            tag=request.tag,
            rm=True,
            forcerm=True,
            decode=True,
            # containers inherit image labels: a warm watchdog's image names no function
            labels={"faas.function": request.function} if request.function else {},
            use_config_proxy=False,
        )
        for event in events:
            if "error" in event:
                raise ImageBuildError(
                    f"building the image of {subject} failed: {event['error'].strip()}\n"
                    + "".join(output[-20:])
                )
            text = event.get("stream", "")
            if text:
                output.append(text)
                if text.startswith("Step "):
                    step, _, total = text.split(" ", 2)[1].partition("/")
                    fraction = int(step) / int(total) if total.isdigit() else None
                    progress(f"{subject}: {text.strip()[:70]}", fraction)
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"building the image of {subject} failed: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ImageBuildError(f"unreadable build output for {subject}: {exc}") from None
    return True
