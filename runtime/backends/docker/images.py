"""Base and function images on the engine (Docker or Podman, through the Docker API).

A function image's tag is a hash of its inputs, so `build` is a no-op for an
unchanged function. The base image is pulled when a registry answers; when
none does, `build-base-image.sh` makes an equivalent root filesystem from
Debian packages (debootstrap), which takes under a minute, and it is imported
through the API: into whichever engine answers, with no engine CLI needed.

The script is package data next to this module (what a wheel installs), found
through importlib.resources; scripts/build-base-image.sh in a checkout runs it too.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker.errors
from docker.api.client import APIClient

from runtime.backends.base import ImageRequest, ProgressCallback
from runtime.errors import ImageBuildError

log = logging.getLogger("faas.images")

BASE_IMAGE_SCRIPT = "build-base-image.sh"
"""Package data of this module's package (pyproject.toml's package-data)."""
PACKAGE = __name__.rpartition(".")[0]
DEBOOTSTRAP_EXPECTED_LINES = 430
"""About how many lines debootstrap prints for a minbase + python3 root: drives the progress bar."""

PULL_TIMEOUT = 20.0

BASE_IMAGE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LABEL faas.base=debootstrap",
    'CMD ["python3"]',
)
"""The image settings of a base image built from Debian packages (as in the script's import)."""

FAILED_COMMAND = re.compile(r"The command '.*' returned a non-zero code: (\d+)", re.DOTALL)

BUILD_STEP = re.compile(r"step (\d+)/(\d+)", re.IGNORECASE)
"""A build step's line: Docker says "Step 2/5 : RUN ...", Podman "STEP 2/5: RUN ..."."""


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
    _build_base_from_debian(api, image, progress)
    if image_id(api, image) is None:
        raise ImageBuildError(f"{BASE_IMAGE_SCRIPT} finished but image {image} is missing")


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


@contextlib.contextmanager
def base_image_script() -> Iterator[Path | None]:
    """The base-image script as a file bash can run (None when this installation lacks it)."""
    resource = importlib.resources.files(PACKAGE) / BASE_IMAGE_SCRIPT
    if not resource.is_file():
        yield None
        return
    with importlib.resources.as_file(resource) as path:
        yield path


def _build_base_from_debian(api: APIClient, image: str, progress: ProgressCallback) -> None:
    with base_image_script() as script:
        if script is None:
            raise ImageBuildError(
                f"cannot pull {image} and this installation of faas lacks its "
                f"{BASE_IMAGE_SCRIPT} (package data of {PACKAGE}) to build it; "
                "reinstall faas, pull or build the base image by hand, "
                "or set base_image in functions.yaml"
            )
        _run_base_image_script(api, script, image, progress)


def _run_base_image_script(
    api: APIClient, script: Path, image: str, progress: ProgressCallback
) -> None:
    progress(f"no registry answers: building {image} from Debian packages", 0.0)
    with tempfile.TemporaryDirectory(prefix="faas-base-") as work:
        archive = Path(work) / "rootfs.tar"
        process = subprocess.Popen(
            ["bash", str(script), image],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "FAAS_BASE_ARCHIVE": str(archive)},
        )
        assert process.stdout is not None
        tail: list[str] = []
        for count, line in enumerate(process.stdout, start=1):
            line = line.rstrip()
            tail = [*tail[-19:], line]
            progress(line[:80], min(count / DEBOOTSTRAP_EXPECTED_LINES, 0.98))
        if process.wait() != 0:
            raise ImageBuildError(
                f"building base image {image} failed (exit {process.returncode}):\n"
                + "\n".join(tail)
            )
        progress(f"importing {image}", 0.99)
        _import(api, archive, image)
    progress(f"built {image}", 1.0)


def _import(api: APIClient, archive: Path, image: str) -> None:
    """Import a root filesystem archive as `image` (repository:tag).

    The tag goes in the repository argument: Docker splits it off there, and Podman
    ignores a separate tag on import.
    """
    try:
        answer = api.import_image_from_file(
            str(archive), repository=image, changes=list(BASE_IMAGE_CHANGES)
        )
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"importing base image {image} failed: {exc}") from None
    for line in str(answer).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("error"):
            raise ImageBuildError(f"importing base image {image} failed: {event['error']}")


def _build_failure(subject: str, error: str, output: list[str]) -> str:
    """What a failed build is reported as: a step's own `faas: ` line (the system packages
    step prints one, runtime/images.py) when it said what is wrong, else the engine's error;
    then the last lines of the build's output."""
    said = [line[len("faas: ") :].strip() for line in "".join(output).splitlines()
            if line.startswith("faas: ")]  # fmt: skip
    # Docker quotes the whole failed command; the step's output below shows what it did
    reason = "; ".join(said) if said else FAILED_COMMAND.sub(r"a build step exited with \1", error)
    tail = [line if len(line) < 300 else f"{line[:200]}...\n" for line in output[-20:]
            if not line.startswith("faas: ")]  # fmt: skip
    return f"building the image of {subject} failed: {reason}\n" + "".join(tail)


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
                raise ImageBuildError(_build_failure(subject, event["error"], output))
            text = event.get("stream", "")
            if text:
                output.append(text)
                step = BUILD_STEP.match(text)
                if step is not None:
                    fraction = int(step[1]) / int(step[2]) if int(step[2]) else None
                    progress(f"{subject}: {text.strip()[:70]}", fraction)
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"building the image of {subject} failed: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ImageBuildError(f"unreadable build output for {subject}: {exc}") from None
    return True
