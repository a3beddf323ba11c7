"""The `faas` command: a thin layer over faas.serve, the spec loader and the gateway's API.

Exit codes: 0 success; 1 the operation failed (a call answered an error, a
build failed); 2 invalid input (functions.yaml, arguments); 3 no container
engine or no running gateway to talk to.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
from rich.console import Console
from rich.table import Table

from faas import logs, scaffold, state
from gateway.keys import KeyStore
from runtime.errors import EngineUnavailable, FaasError, SpecError
from runtime.secrets import SecretStore
from runtime.spec import Project, load_project

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3

console = Console()
errors = Console(stderr=True)

file_option = click.option(
    "-f",
    "--file",
    "spec_file",
    default="functions.yaml",
    show_default=True,
    envvar="FAAS_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project's functions.yaml.",
)
project_option = click.option(
    "--project", default=None, envvar="FAAS_PROJECT", help="Project name (overrides the file)."
)


def fail(message: str, code: int) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def load(spec_file: Path, project: str | None) -> Project:
    try:
        return load_project(spec_file, project_name=project)
    except SpecError as exc:
        noun = "problem" if len(exc.problems) == 1 else "problems"
        errors.print(f"[bold red]{spec_file} has {len(exc.problems)} {noun}:[/]", highlight=False)
        for problem in exc.problems:
            errors.print(f"  {problem}", highlight=False, markup=False)
        sys.exit(EXIT_INVALID)


def running_gateway(project: Project) -> state.GatewayState:
    found = state.read(project.root, project.name)
    if found is None:
        fail(f"no gateway is running for project {project.name}; start one with `faas up`", 3)
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faas")
def main() -> None:
    """Run Python functions in Docker containers behind an HTTP gateway.

    \b
    Examples:
      faas up                      deploy functions.yaml and serve on 127.0.0.1:8080
      faas ls                      list functions and their state
      faas invoke hello            call a function and print its answer
      faas new thumbnail --async   add a function to the project
      faas down                    stop the gateway and remove every container
    """


@main.command()
@file_option
@project_option
@click.option("--host", default=None, help="Address to listen on [default: gateway.host].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: gateway.port].")
@click.option("--backend", default="docker", show_default=True, help="Where replicas run.")
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Development: mount the code and apply every saved change. --no-reload bakes the "
    "code into images (production).",
)
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option("--log-level", default="info", show_default=True)
def up(
    spec_file: Path,
    project: str | None,
    host: str | None,
    port: int | None,
    backend: str,
    reload: bool,
    log_json: bool,
    log_level: str,
) -> None:
    """Build the functions' images and serve the gateway until Ctrl-C.

    Ctrl-C (or `faas down` from another terminal) stops the gateway and
    removes every container and network of the project.

    \b
    Examples:
      faas up
      faas up --port 9000 -f examples/functions.yaml
    """
    logs.configure(log_level, json_lines=log_json)
    loaded = load(spec_file, project)
    from faas.serve import serve_platform  # imports uvicorn and the gateway: only for `up`

    def announce(platform: Any, url: str) -> None:
        errors.print(f"[bold green]Gateway ready[/] on {url}", highlight=False)
        for name, function in loaded.functions.items():
            routes = ", ".join(f"{' '.join(r.methods)} {r.path}" for r in function.routes)
            errors.print(f"  {url}/function/{name}" + (f"   ({routes})" if routes else ""))

    try:
        asyncio.run(
            serve_platform(
                loaded,
                host=host or loaded.gateway.host,
                port=loaded.gateway.port if port is None else port,
                backend_name=backend,
                dev=reload,
                on_ready=announce,
            )
        )
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except FaasError as exc:
        fail(str(exc), EXIT_FAILED)


@main.command()
@file_option
@project_option
@click.option("--backend", default="docker", show_default=True)
def build(spec_file: Path, project: str | None, backend: str) -> None:
    """Build the base image and every function's image, then exit.

    Unchanged functions are not rebuilt. Useful to warm the cache before `faas up`.
    """
    logs.configure("info")
    loaded = load(spec_file, project)
    from faas.console import ProgressDisplay
    from runtime.backends import create_backend
    from runtime.platform import Platform

    async def run() -> list[str]:
        platform = Platform(loaded, create_backend(backend, loaded.name))
        try:
            with ProgressDisplay(f"Building project {loaded.name}") as progress:
                await platform.build(progress)
            return [f"{n}: {p.error}" for n, p in platform.pools.items() if p.error]
        finally:
            await platform.shutdown()

    try:
        failures = asyncio.run(run())
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    if failures:
        fail("some functions did not build:\n  " + "\n  ".join(failures), EXIT_FAILED)
    errors.print(f"built {len(loaded.functions)} function image(s)")


@main.command()
@file_option
@project_option
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the gateway.")
def down(spec_file: Path, project: str | None, timeout: float) -> None:
    """Stop the running gateway and remove every container and network of the project.

    Also removes what a gateway that crashed left behind.
    """
    loaded = load(spec_file, project)
    running = state.read(loaded.root, loaded.name)
    if running is not None:
        os.kill(running.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while state.read(loaded.root, loaded.name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        errors.print(f"stopped gateway (pid {running.pid})")
    from runtime.backends import create_backend

    async def teardown() -> int:
        backend = create_backend("docker", loaded.name)
        try:
            leftover = len(await backend.replicas())
            await backend.teardown()
            return leftover
        finally:
            await backend.close()

    try:
        removed = asyncio.run(teardown())
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    errors.print(f"project {loaded.name}: removed {removed} container(s) and the project network")


@main.command(name="ls")
@file_option
@project_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_functions(spec_file: Path, project: str | None, as_json: bool) -> None:
    """List the project's functions with their state and replicas."""
    loaded = load(spec_file, project)
    running = state.read(loaded.root, loaded.name)
    if running is None:
        rows: list[dict[str, Any]] = [
            {
                "name": name,
                "state": "down",
                "replicas": 0,
                "routes": [{"path": r.path, "methods": list(r.methods)} for r in f.routes],
                "error": None,
            }
            for name, f in loaded.functions.items()
        ]
    else:
        rows = _admin(loaded, running, "GET", "/system/functions")["functions"]
    if as_json:
        click.echo(json.dumps({"project": loaded.name, "functions": rows}, indent=2))
        return
    table = Table(title=f"project {loaded.name}" + ("" if running else " (not running)"))
    columns = ("FUNCTION", "STATE", "READY", "STARTING", "QUEUE", "IN FLIGHT", "COLD START")
    for column in (*columns, "ROUTES", "ERROR"):
        table.add_column(column, overflow="fold")
    for row in rows:
        routes = ", ".join(f"{' '.join(r['methods'])} {r['path']}" for r in row["routes"])
        colour = {"ready": "green", "failed": "red", "down": "dim"}.get(row["state"], "yellow")
        cold = row.get("last_cold_start_ms")
        table.add_row(
            row["name"],
            f"[{colour}]{row['state']}[/]",
            str(row["replicas"]),
            str(row.get("starting", 0)),
            str(row.get("queue_depth", 0)),
            str(row.get("in_flight", 0)),
            f"{cold:.0f} ms" if cold else "-",
            routes or "-",
            row.get("error") or row.get("reload_error") or "",
        )
    console.print(table)


@main.command()
@click.argument("name")
@file_option
@project_option
@click.option("-d", "--data", default=None, help="Request body; @FILE reads a file, - reads stdin.")
@click.option(
    "-X", "--method", default=None, help="HTTP method [default: POST with data, else GET]."
)
@click.option("--path", default="/", show_default=True, help="Path below the function.")
@click.option("-H", "--header", "headers", multiple=True, help="Extra header 'Name: value'.")
@click.option("-i", "--include", is_flag=True, help="Print the status and headers too.")
@click.option("-k", "--key", envvar="FAAS_API_KEY", default=None, help="API key for auth: key.")
def invoke(
    name: str,
    spec_file: Path,
    project: str | None,
    data: str | None,
    method: str | None,
    path: str,
    headers: tuple[str, ...],
    include: bool,
    key: str | None,
) -> None:
    """Call a function through the running gateway and print its answer.

    \b
    Examples:
      faas invoke hello
      faas invoke echo --data '{"x": 1}' -H 'Content-Type: application/json'
      faas invoke echo --data @payload.json
    """
    loaded = load(spec_file, project)
    running = running_gateway(loaded)
    body = _read_data(data)
    header_map = {}
    for header in headers:
        key, sep, value = header.partition(":")
        if not sep:
            fail(f"header {header!r} is not 'Name: value'", EXIT_INVALID)
        header_map[key.strip()] = value.strip()
    if key:
        header_map.setdefault("Authorization", f"Bearer {key}")
    verb = method or ("POST" if body is not None else "GET")
    url = f"{running.url}/function/{name}/{path.lstrip('/')}".rstrip("/")
    try:
        response = httpx.request(
            verb,
            url,
            content=body,
            headers=header_map,
            timeout=None,
            trust_env=False,
            verify=not running.tls,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the gateway at {running.url}: {exc}", EXIT_UNAVAILABLE)
    if include:
        click.echo(f"HTTP {response.status_code} {response.reason_phrase}")
        for key, value in response.headers.items():
            click.echo(f"{key}: {value}")
        click.echo()
    sys.stdout.buffer.write(response.content)
    if response.content and not response.content.endswith(b"\n") and sys.stdout.isatty():
        click.echo()
    if response.status_code >= 400:
        errors.print(f"[red]HTTP {response.status_code}[/]", highlight=False)
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("name")
@file_option
@click.option(
    "--template",
    type=click.Choice(sorted(scaffold.TEMPLATES)),
    default="sync",
    show_default=True,
    help="What kind of handler to write.",
)
@click.option("--route", default=None, help="Also declare an HTTP route, e.g. /thumbnail.")
def new(name: str, spec_file: Path, template: str, route: str | None) -> None:
    """Write functions/NAME.py and add its entry to functions.yaml.

    \b
    Examples:
      faas new thumbnail
      faas new fetch --template async --route /fetch
    """
    try:
        written = scaffold.create_function(spec_file, name, template, route)
    except FaasError as exc:
        fail(str(exc), EXIT_INVALID)
    errors.print(f"wrote {written} and added {name!r} to {spec_file}")


@main.group()
def keys() -> None:
    """API keys for functions with `auth: key` (stored as hashes under .faas/).

    \b
    Examples:
      faas keys create --name ci --function echo
      faas keys ls
      faas keys revoke 1a2b3c4d
    """


@keys.command(name="create")
@file_option
@project_option
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option(
    "--function", "functions", multiple=True, help="Limit the key to this function (repeatable)."
)
@click.option("--json", "as_json", is_flag=True)
def keys_create(
    spec_file: Path, project: str | None, name: str, functions: tuple[str, ...], as_json: bool
) -> None:
    """Create a key; its secret is printed once and never stored."""
    loaded = load(spec_file, project)
    unknown = [f for f in functions if f not in loaded.functions]
    if unknown:
        fail(f"unknown functions: {', '.join(unknown)}", EXIT_INVALID)
    running = state.read(loaded.root, loaded.name)
    if running is not None:
        created = _admin(
            loaded, running, "POST", "/system/keys", json={"name": name, "functions": functions}
        )
    else:
        record, secret = KeyStore(state.state_dir(loaded.root)).create(name, functions or ("*",))
        created = {**record.public(), "key": secret}
    if as_json:
        click.echo(json.dumps(created))
        return
    scope = ", ".join(created["functions"])
    errors.print(f"created key {created['id']} ({created['name']}) for: {scope}")
    errors.print("this is the only time the key is shown:")
    click.echo(created["key"])


@keys.command(name="ls")
@file_option
@project_option
@click.option("--json", "as_json", is_flag=True)
def keys_ls(spec_file: Path, project: str | None, as_json: bool) -> None:
    """List keys (ids, names, scopes; never the secrets)."""
    loaded = load(spec_file, project)
    running = state.read(loaded.root, loaded.name)
    if running is not None:
        listed = _admin(loaded, running, "GET", "/system/keys")["keys"]
    else:
        listed = [k.public() for k in KeyStore(state.state_dir(loaded.root)).list()]
    if as_json:
        click.echo(json.dumps({"keys": listed}, indent=2))
        return
    table = Table(title="API keys")
    for column in ("ID", "NAME", "FUNCTIONS", "CREATED"):
        table.add_column(column)
    for key in listed:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(key["created"]))
        table.add_row(key["id"], key["name"], ", ".join(key["functions"]), created)
    console.print(table)


@keys.command(name="revoke")
@click.argument("key_id")
@file_option
@project_option
def keys_revoke(key_id: str, spec_file: Path, project: str | None) -> None:
    """Revoke a key at once."""
    loaded = load(spec_file, project)
    running = state.read(loaded.root, loaded.name)
    if running is not None:
        _admin(loaded, running, "DELETE", f"/system/keys/{key_id}")
    else:
        try:
            KeyStore(state.state_dir(loaded.root)).revoke(key_id)
        except FaasError as exc:
            fail(str(exc), EXIT_FAILED)
    errors.print(f"revoked key {key_id}")


@main.group(name="secrets")
def secrets_group() -> None:
    """Secrets mounted into functions as files under /run/secrets/.

    \b
    Examples:
      printf 's3cr3t' | faas secrets set db-password
      faas secrets set api-token --value "$TOKEN"
      faas secrets ls
    """


@secrets_group.command(name="set")
@click.argument("name")
@file_option
@click.option("--value", default=None, help="The value; without it, read from stdin.")
def secrets_set(name: str, spec_file: Path, value: str | None) -> None:
    """Store a secret (owner-only file under .faas/secrets/); replicas started after see it."""
    data = value.encode() if value is not None else sys.stdin.buffer.read()
    try:
        SecretStore(state.state_dir(spec_file.resolve().parent)).set(name, data)
    except FaasError as exc:
        fail(str(exc), EXIT_INVALID)
    errors.print(f"stored secret {name} ({len(data)} bytes)")


@secrets_group.command(name="ls")
@file_option
def secrets_ls(spec_file: Path) -> None:
    """List stored secret names (never values)."""
    for name in SecretStore(state.state_dir(spec_file.resolve().parent)).names():
        click.echo(name)


@secrets_group.command(name="rm")
@click.argument("name")
@file_option
def secrets_rm(name: str, spec_file: Path) -> None:
    """Delete a stored secret."""
    try:
        removed = SecretStore(state.state_dir(spec_file.resolve().parent)).remove(name)
    except FaasError as exc:
        fail(str(exc), EXIT_INVALID)
    if not removed:
        fail(f"no secret named {name}", EXIT_FAILED)
    errors.print(f"removed secret {name}")


def _read_data(data: str | None) -> bytes | None:
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


def _admin(
    loaded: Project, running: state.GatewayState, method: str, path: str, **kwargs: Any
) -> Any:
    """Call the admin API with the token `faas up` wrote; exits with a message on failure."""
    token = state.admin_token(loaded.root)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method,
            running.url + path,
            headers=headers,
            timeout=10,
            trust_env=False,
            verify=not running.tls,  # our own gateway on loopback, maybe with a self-signed cert
            **kwargs,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the gateway at {running.url}: {exc}", EXIT_UNAVAILABLE)
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        fail(f"the gateway answered {response.status_code}: {message}", EXIT_FAILED)
    return response.json()
