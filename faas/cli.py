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
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
from rich.console import Console
from rich.table import Table

from faas import logs as logging_setup
from faas import scaffold, state
from gateway.keys import KeyStore
from runtime.errors import EngineUnavailable, FaasError, SpecError
from runtime.secrets import SecretStore
from runtime.spec import Project, load_project, parse_duration

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
file_long_option = click.option(
    "--file",
    "spec_file",
    default="functions.yaml",
    show_default=True,
    envvar="FAAS_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project's functions.yaml (no -f here: it means --follow).",
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
    logging_setup.configure(log_level, json_lines=log_json)
    loaded = load(spec_file, project)
    from faas.serve import serve_platform  # imports uvicorn and the gateway: only for `up`

    def announce(platform: Any, url: str) -> None:
        errors.print(f"[bold green]Gateway ready[/] on {url}", highlight=False)
        for name, function in loaded.functions.items():
            routes = ", ".join(f"{' '.join(r.methods)} {r.path}" for r in function.routes)
            errors.print(f"  {url}/function/{name}" + (f"   ({routes})" if routes else ""))
        from gateway.dashboard import dashboard_url  # dashboard (issue 7)

        # the token only on a terminal: stderr of `faas up` often ends up in log files
        token = state.admin_token(loaded.root) if errors.is_terminal else None
        hint = "" if token else "   (`faas ui` prints it with the token)"
        link = f"  dashboard: {dashboard_url(url, token)}{hint}"
        errors.print(link, highlight=False, markup=False, soft_wrap=True)  # a URL in one piece

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
    logging_setup.configure("info")
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
            return await backend.teardown()
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


@main.command(name="logs")
@click.argument("name", required=False)
@file_long_option
@project_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("--since", default=None, help="Only lines newer than this, e.g. 30s, 10m, 2h.")
@click.option("-n", "--tail", "limit", default=200, show_default=True, help="Lines to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def show_logs(
    name: str | None,
    spec_file: Path,
    project: str | None,
    follow: bool,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Print what the replicas of a function (or of all functions) wrote, and gateway events.

    \b
    Examples:
      faas logs hello
      faas logs hello -f
      faas logs --since 10m --json | jq .message
    """
    loaded = load(spec_file, project)
    if name is not None and name not in loaded.functions:
        fail(f"no function named {name!r} in {spec_file}", EXIT_INVALID)
    running = running_gateway(loaded)
    params: dict[str, str] = {"limit": str(limit)}
    if name:
        params["function"] = name
    if since:
        try:
            params["since"] = str(time.time() - parse_duration(since))
        except ValueError as exc:
            fail(f"--since: {exc}", EXIT_INVALID)
    if not follow:
        for line in _admin(loaded, running, "GET", "/system/logs", params=params)["lines"]:
            _print_log(line, as_json)
        return
    params["follow"] = "1"
    token = state.admin_token(loaded.root)
    try:
        with httpx.stream(
            "GET",
            running.url + "/system/logs",
            params=params,
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10, read=None),
            trust_env=False,
            verify=not running.tls,
        ) as response:
            for raw in response.iter_lines():
                if raw:
                    _print_log(json.loads(raw), as_json)
    except KeyboardInterrupt:
        return
    except httpx.HTTPError as exc:
        fail(f"lost the gateway at {running.url}: {exc}", EXIT_UNAVAILABLE)


def _print_log(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(line))
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(line["ts"]))
    call = f"  call_id={line['call_id']}" if line.get("call_id") else ""
    level = "" if line["level"] == "info" else f"{line['level'].upper()} "
    click.echo(f"{stamp} {line['replica']:<28} | {level}{line['message']}{call}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Project name [default: the directory's name].")
def init(directory: Path, name: str | None) -> None:
    """Create a new project directory with a working example function.

    \b
    Examples:
      faas init my-project && cd my-project && faas up
    """
    try:
        created = scaffold.create_project(directory, name)
    except FaasError as exc:
        fail(str(exc), EXIT_INVALID)
    errors.print(f"created {created}: run `cd {directory} && faas up`, then")
    errors.print("  curl http://127.0.0.1:8080/hello")


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


@main.command()
@file_option
@project_option
@click.option("--open", "open_browser", is_flag=True, help="Also open it in a web browser.")
def ui(spec_file: Path, project: str | None, open_browser: bool) -> None:
    """Print the running gateway's dashboard URL, the admin token in its fragment.

    The fragment (after #) never leaves the browser: the page keeps the token for
    its tab and sends it only to the gateway's admin API. Treat the URL like the
    token. --open hands it to the browser on its command line, where other users
    of this host can see it in `ps`.

    \b
    Examples:
      faas ui
      faas ui --open
    """
    import webbrowser

    from gateway.dashboard import dashboard_url

    loaded = load(spec_file, project)
    running = running_gateway(loaded)
    token = state.admin_token(loaded.root)
    if token is None:
        fail(f"no admin token in {loaded.root / state.STATE_DIR / 'admin-token'}", EXIT_FAILED)
    url = dashboard_url(running.url, token)
    click.echo(url)
    if open_browser and not webbrowser.open(url):
        fail("could not open a web browser; open the URL above", EXIT_FAILED)


# -- durable work (issue 5): faas publish, faas dlq ------------------------------------------


@main.command()
@click.argument("topic")
@click.argument("data", required=False)
@file_option
@project_option
@click.option("-d", "--data", "data_option", default=None, help="The body; @FILE or - (stdin).")
@click.option(
    "-t",
    "--content-type",
    default=None,
    help="[default: application/json when the data parses as JSON, else text/plain]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the gateway's answer as JSON.")
def publish(
    topic: str,
    data: str | None,
    spec_file: Path,
    project: str | None,
    data_option: str | None,
    content_type: str | None,
    as_json: bool,
) -> None:
    """Publish an event to TOPIC; every subscribed function gets it, at least once.

    The gateway stores the event before it answers. Prints the event id.

    \b
    Examples:
      faas publish orders.created '{"order": 42}'
      faas publish orders.created --data @order.json
      echo hello | faas publish chat.message --data - -t text/plain
    """
    loaded = load(spec_file, project)
    running = running_gateway(loaded)
    if data is not None and data_option is not None:
        fail("give the data once: as an argument or with --data", EXIT_INVALID)
    body = _read_data(data_option if data_option is not None else data) or b""
    kind = content_type or _guess_content_type(body)
    path = "/events/" + urllib.parse.quote(topic, safe="")
    answer = _admin(loaded, running, "POST", path, content=body, headers={"content-type": kind})
    if as_json:
        click.echo(json.dumps(answer))
        return
    to = ", ".join(answer["subscribers"]) or "no subscriber (nothing stored)"
    errors.print(f"published to {topic}: {to}", highlight=False)
    click.echo(answer["event_id"])


@main.group()
def dlq() -> None:
    """Dead letters: deliveries that failed every attempt (or with a status not retried).

    Through the running gateway's admin API, or the queue file when none runs.

    \b
    Examples:
      faas dlq ls
      faas dlq ls --function mailer --json
      faas dlq replay 12 13        # pending again, attempts from 1
      faas dlq replay --all --function mailer
      faas dlq drop 12
    """


@dlq.command(name="ls")
@file_option
@project_option
@click.option("--function", default=None, help="Only this function's dead letters.")
@click.option("--json", "as_json", is_flag=True)
def dlq_ls(spec_file: Path, project: str | None, function: str | None, as_json: bool) -> None:
    """List dead letters, oldest first."""
    loaded = load(spec_file, project)
    letters = _dead_letters(loaded, function)
    if as_json:
        click.echo(json.dumps({"dead_letters": letters}, indent=2))
        return
    table = Table(title=f"dead letters of project {loaded.name}")
    for column in ("ID", "FUNCTION", "KIND", "TOPIC", "ATTEMPTS", "STATUS", "FAILED", "ERROR"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        failed = letter["failed_at"]
        table.add_row(
            str(letter["id"]),
            letter["function"],
            letter["kind"],
            letter["topic"] or "-",
            str(letter["attempts"]),
            str(letter["status"] or "-"),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(failed)) if failed else "-",
            letter["error"] or "",
        )
    console.print(table)


@dlq.command(name="replay")
@click.argument("ids", nargs=-1, type=int)
@file_option
@project_option
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --function).")
@click.option("--function", default=None, help="With --all: only this function's.")
def dlq_replay(
    ids: tuple[int, ...],
    spec_file: Path,
    project: str | None,
    everything: bool,
    function: str | None,
) -> None:
    """Deliver dead letters again, their attempts counted from 1."""
    _dlq_act(spec_file, project, ids, everything, function, replay=True)


@dlq.command(name="drop")
@click.argument("ids", nargs=-1, type=int)
@file_option
@project_option
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --function).")
@click.option("--function", default=None, help="With --all: only this function's.")
def dlq_drop(
    ids: tuple[int, ...],
    spec_file: Path,
    project: str | None,
    everything: bool,
    function: str | None,
) -> None:
    """Forget dead letters for good."""
    _dlq_act(spec_file, project, ids, everything, function, replay=False)


def _dead_letters(loaded: Project, function: str | None) -> list[dict[str, Any]]:
    running = state.read(loaded.root, loaded.name)
    if running is None:
        from faas import dlq as offline

        try:
            return offline.dead_letters(loaded.root, loaded.name, function)
        except FaasError as exc:
            fail(str(exc), EXIT_FAILED)
    query = "?" + urllib.parse.urlencode({"function": function}) if function else ""
    letters: list[dict[str, Any]] = _admin(loaded, running, "GET", "/system/dlq" + query)[
        "dead_letters"
    ]
    return letters


def _dlq_act(
    spec_file: Path,
    project: str | None,
    ids: tuple[int, ...],
    everything: bool,
    function: str | None,
    *,
    replay: bool,
) -> None:
    loaded = load(spec_file, project)
    if bool(ids) == everything:
        fail("give dead letter ids, or --all", EXIT_INVALID)
    wanted = [d["id"] for d in _dead_letters(loaded, function)] if everything else list(ids)
    running = state.read(loaded.root, loaded.name)
    done: list[int] = []
    if running is None:
        from faas import dlq as offline

        try:
            act = offline.replay if replay else offline.drop
            done = act(loaded.root, loaded.name, wanted)
        except FaasError as exc:
            fail(str(exc), EXIT_FAILED)
    else:
        for delivery_id in wanted:
            if replay:
                _admin(loaded, running, "POST", f"/system/dlq/{delivery_id}/replay")
            else:
                _admin(loaded, running, "DELETE", f"/system/dlq/{delivery_id}")
            done.append(delivery_id)
    missing = sorted(set(wanted) - set(done))
    verb = "replayed" if replay else "dropped"
    errors.print(
        f"{verb} {len(done)} dead letter(s)" + (f" {', '.join(map(str, done))}" if done else "")
    )
    if missing:
        fail(f"no dead letter(s) {', '.join(map(str, missing))}", EXIT_FAILED)


def _guess_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


# -- end durable work --------------------------------------------------------------------------


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
    headers = {
        **kwargs.pop("headers", {}),
        **({"authorization": f"Bearer {token}"} if token else {}),
    }
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
