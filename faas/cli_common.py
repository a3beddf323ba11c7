"""What every `faas` command shares: exit codes, options, loading the project, the admin API."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx
from rich.console import Console

from faas import state
from runtime.errors import Problem, SpecError
from runtime.spec import Project, load_project
from runtime.spec._values import ENGINES, ISOLATIONS, REPLICA_ACCESS
from runtime.spec.debug import debug_problems

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3

console = Console()
errors = Console(stderr=True)


def _file_option(*flags: str, note: str = "") -> Callable[[F], F]:
    return click.option(
        *flags,
        "spec_file",
        default="functions.yaml",
        show_default=True,
        envvar="FAAS_FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"The project's functions.yaml{note}.",
    )


file_option = _file_option("-f", "--file")
file_long_option = _file_option("--file", note=" (no -f here: it means --follow)")
project_option = click.option(
    "--project", default=None, envvar="FAAS_PROJECT", help="Project name (overrides the file)."
)


def complete_function(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of a function's name: those in the project's functions.yaml.

    Reads the file without validating it (a completion must be quick and never fail).
    """
    import yaml

    spec_file = ctx.params.get("spec_file") or Path(os.environ.get("FAAS_FILE", "functions.yaml"))
    try:
        document = yaml.safe_load(Path(spec_file).read_text())
        names = list((document or {}).get("functions") or {})
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        return []
    return [name for name in names if isinstance(name, str) and name.startswith(incomplete)]


def fail(message: str, code: int) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


engine_option = click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=None,
    help="The container engine: docker (also rootless and Docker Desktop) or podman "
    "[default: cluster.engine, else docker]. DOCKER_HOST / CONTAINER_HOST say where it is.",
)


access_option = click.option(
    "--replica-access",
    "access",
    type=click.Choice(REPLICA_ACCESS),
    default=None,
    help="How the gateway dials replicas: at their address on the project network or at a "
    "port published on 127.0.0.1 [default: cluster.replica_access, else auto].",
)
isolation_option = click.option(
    "--isolation",
    type=click.Choice(ISOLATIONS),
    default=None,
    help="Run every function under this isolation (gvisor: in a gVisor sandbox) "
    "[default: each function's `isolation`].",
)


def with_engine(
    project: Project,
    engine: str | None,
    access: str | None = None,
    isolation: str | None = None,
) -> Project:
    """`project` with what the command line chose: the engine, how replicas are reached,
    and an isolation for every function."""
    cluster = project.cluster
    if engine is not None:
        cluster = dataclasses.replace(cluster, engine=engine)
    if access is not None:
        cluster = dataclasses.replace(cluster, replica_access=access)
    functions = project.functions
    if isolation is not None:
        functions = {
            name: dataclasses.replace(function, isolation=isolation)
            for name, function in functions.items()
        }
    return dataclasses.replace(project, cluster=cluster, functions=functions)


def load(spec_file: Path, project: str | None) -> Project:
    try:
        return load_project(spec_file, project_name=project)
    except SpecError as exc:
        noun = "problem" if len(exc.problems) == 1 else "problems"
        errors.print(f"[bold red]{spec_file} has {len(exc.problems)} {noun}:[/]", highlight=False)
        for problem in exc.problems:
            errors.print(f"  {problem}", highlight=False, markup=False)
        sys.exit(EXIT_INVALID)


def print_problems(spec_file: Path, problems: list[Problem]) -> NoReturn:
    """Every problem of `spec_file`, then exit 2."""
    noun = "problem" if len(problems) == 1 else "problems"
    errors.print(f"[bold red]{spec_file} has {len(problems)} {noun}:[/]", highlight=False)
    for problem in problems:
        errors.print(f"  {problem}", highlight=False, markup=False)
    sys.exit(EXIT_INVALID)


def refuse_debug(project: Project, spec_file: Path, why_not: str) -> None:
    """Exit 2 if a function is in debug mode where debugging cannot be (`why_not`)."""
    problems = debug_problems(project, why_not, str(spec_file))
    if problems:
        print_problems(spec_file, problems)


def running_gateway(project: Project) -> state.GatewayState:
    found = state.read(project.root, project.name)
    if found is None:
        fail(f"no gateway is running for project {project.name}; start one with `faas up`", 3)
    return found


def read_data(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            fail(f"cannot read {data[1:]}: {exc.strerror}", EXIT_INVALID)
    return data.encode()


def admin_api(
    loaded: Project, running: state.GatewayState, method: str, path: str, **kwargs: Any
) -> Any:
    """Call the admin API (on the admin listener) with the token `faas up` wrote; exits
    with a message on failure."""
    token = state.admin_token(loaded.root)
    headers = {
        **kwargs.pop("headers", {}),
        **({"authorization": f"Bearer {token}"} if token else {}),
    }
    try:
        response = httpx.request(
            method,
            running.admin_url + path,
            headers=headers,
            timeout=10,
            trust_env=False,
            verify=not running.tls,  # our own gateway on loopback, maybe with a self-signed cert
            **kwargs,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the admin API at {running.admin_url}: {exc}", EXIT_UNAVAILABLE)
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        fail(f"the gateway answered {response.status_code}: {message}", EXIT_FAILED)
    return response.json()
