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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx

from faas import (
    cli_access,
    cli_deploy,
    cli_events,
    cli_export,
    function_tests,
    listing,
    logging_setup,
    scaffold,
    state,
)
from faas.cli_common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_UNAVAILABLE,
    access_option,
    admin_api,
    complete_function,
    console,
    engine_option,
    errors,
    fail,
    file_long_option,
    file_option,
    isolation_option,
    load,
    print_problems,
    project_option,
    read_data,
    running_gateway,
    with_engine,
)
from runtime import distribution
from runtime.backends import BACKENDS
from runtime.debug_relay import DEFAULT_PORT as DEFAULT_DEBUG_PORT
from runtime.errors import EngineUnavailable, FaasError, SpecError, UnsupportedSetting
from runtime.secrets import SecretMissing, SecretStore
from runtime.spec import (
    Project,
    handler_problems,
    missing_secrets,
    parse_duration,
    secret_references,
)
from runtime.spec.debug import debug_problems, unknown_functions, with_debug


def _print_version(context: click.Context, _: click.Parameter, value: bool) -> None:
    """--version: the installed distribution's, whatever pyproject.toml names it."""
    if value and not context.resilient_parsing:
        try:
            version = distribution.version()
        except FaasError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"faas, version {version}")
        context.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Run Python functions in Docker containers behind an HTTP gateway.

    \b
    Examples:
      faas up                      deploy functions.yaml and serve on 127.0.0.1:8080
      faas ls                      list functions and their state
      faas invoke hello            call a function and print its answer
      faas new resize --template async   add a function to the project
      faas test                    run the project's function tests, in-process
    faas logs hello -f           follow what hello's replicas print
      faas publish orders.created '{"id": 1}'
      faas ui --open               the dashboard
      faas down                    stop the gateway and remove every container
      faas init my-project         start a new project
    """


def load_checked(spec_file: Path, project: str | None, *, secrets: bool) -> Project:
    """The project, once what building and serving it needs is known to be there.

    Each handler file must parse and define its function, and (`secrets`) each
    secret it names must have a value; otherwise exit 2 with every such line,
    before an image is built or the engine is asked for anything. Commands
    that only talk to a running gateway use plain `load`: they must keep
    working while a handler is half edited.
    """
    loaded = load(spec_file, project)
    problems = handler_problems(loaded, str(spec_file))
    if secrets:
        store = SecretStore(loaded.root / state.STATE_DIR)  # read only: no directory is made
        named = {name for _, name in secret_references(loaded)}
        problems += missing_secrets(loaded, _with_values(store, named), str(spec_file))
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        errors.print(f"[bold red]{spec_file} has {len(problems)} {noun}:[/]", highlight=False)
        for problem in sorted(problems, key=lambda problem: problem.line or 0):
            errors.print(f"  {problem}", highlight=False, markup=False)
        sys.exit(EXIT_INVALID)
    return loaded


def _with_values(store: SecretStore, names: set[str]) -> set[str]:
    found = set()
    for name in names:
        try:
            store.get(name)
        except SecretMissing:
            continue
        found.add(name)
    return found


@main.command()
@file_option
@project_option
@click.option("--host", default=None, help="Address to listen on [default: gateway.host].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: gateway.port].")
@click.option(
    "--admin-port",
    type=int,
    default=None,
    help="Port of the admin API and dashboard, on gateway.admin_host; 0 picks a free one "
    "[default: gateway.admin_port].",
)
@click.option(
    "--backend",
    type=click.Choice(sorted(BACKENDS)),
    default=None,
    help="Where replicas run: docker or swarm [default: cluster.backend, else docker].",
)
@engine_option
@access_option
@isolation_option
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Development: mount the code and apply every saved change. --no-reload bakes the "
    "code into images (production).",
)
@click.option(
    "--debug",
    "debug",
    multiple=True,
    metavar="NAME[,NAME...]",
    help="Debug these functions (as `debug: true` does): one replica each, debugpy "
    "listening on a port of 127.0.0.1, no call timeout. Development only.",
)
@click.option(
    "--debug-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_DEBUG_PORT,
    show_default=True,
    help="The first debugged function's port on 127.0.0.1; the others get the next free "
    "ones, in name order (0: any free port).",
)
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option("--log-level", default="info", show_default=True)
def up(
    spec_file: Path,
    project: str | None,
    host: str | None,
    port: int | None,
    admin_port: int | None,
    backend: str | None,
    engine: str | None,
    access: str | None,
    isolation: str | None,
    reload: bool,
    debug: tuple[str, ...],
    debug_port: int,
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
      faas up --debug hello        attach a debugger to hello on 127.0.0.1:5678
    """
    logging_setup.configure(log_level, json_lines=log_json)
    loaded = with_engine(load_checked(spec_file, project, secrets=True), engine, access, isolation)
    debugged = [name.strip() for value in debug for name in value.split(",") if name.strip()]
    unknown = unknown_functions(loaded, debugged)
    if unknown:
        fail(f"--debug: {spec_file} has no function named {', '.join(unknown)}", EXIT_INVALID)
    backend_name = backend or loaded.cluster.backend
    if not reload:
        why_not = "--no-reload serves the project as in production"
    elif backend_name != "docker":
        why_not = f"the {backend_name} backend runs replicas as services"
    else:
        why_not = ""

    adjust = command_line_changes(engine, access, isolation, debugged, why_not, spec_file)
    try:
        loaded = adjust(loaded)
    except SpecError as exc:
        print_problems(spec_file, exc.problems)
    from faas.serve import run, serve_platform  # uvicorn and the gateway: only for `up`

    def announce(platform: Any, url: str, admin_url: str) -> None:
        errors.print(f"[bold green]Gateway ready[/] on {url}", highlight=False)
        for name, function in loaded.functions.items():
            routes = ", ".join(f"{' '.join(r.methods)} {r.path}" for r in function.routes)
            errors.print(f"  {url}/function/{name}" + (f"   ({routes})" if routes else ""))
        from gateway.dashboard import dashboard_url  # dashboard (issue 7)

        # the token only on a terminal: stderr of `faas up` often ends up in log files
        token = state.admin_token(loaded.root) if errors.is_terminal else None
        hint = "" if token else "   (`faas ui` prints it with the token)"
        link = f"  dashboard: {dashboard_url(admin_url, token)}{hint}"
        errors.print(link, highlight=False, markup=False, soft_wrap=True)  # a URL in one piece
        for name, relay in sorted(platform.debuggers.relays.items()):
            errors.print(
                f'debug: {name} listening on {relay.address} (attach with VS Code "Python: '
                'Remote Attach"; anyone on this host who connects can run any code in it)',
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    try:
        run(  # on uvloop: measured 0.42x -> 0.56x of direct throughput at 32 connections
            serve_platform(
                loaded,
                host=host or loaded.gateway.host,
                port=loaded.gateway.port if port is None else port,
                admin_port=admin_port,
                backend_name=backend or loaded.cluster.backend,
                dev=reload,
                on_ready=announce,
                adjust=adjust,
                debug_port=debug_port,
            )
        )
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except UnsupportedSetting as exc:
        fail(str(exc), EXIT_INVALID)
    except FaasError as exc:
        fail(str(exc), EXIT_FAILED)


@main.command()
@file_option
@project_option
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default=None)
@engine_option
def build(spec_file: Path, project: str | None, backend: str | None, engine: str | None) -> None:
    """Build the base image and every function's image, then exit.

    Unchanged functions are not rebuilt. Useful to warm the cache before `faas up`.
    """
    logging_setup.configure("info")
    # images need no secret values
    loaded = with_engine(load_checked(spec_file, project, secrets=False), engine)
    from faas.console import ProgressDisplay
    from runtime.backends import backend_for
    from runtime.platform import Platform

    async def run() -> list[str]:
        platform = Platform(loaded, backend_for(loaded, backend))
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
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default=None)
@engine_option
def down(
    spec_file: Path, project: str | None, timeout: float, backend: str | None, engine: str | None
) -> None:
    """Stop the running gateway and remove every container and network of the project.

    Also removes what a gateway that crashed left behind.
    """
    loaded = with_engine(load(spec_file, project), engine)
    running = state.read(loaded.root, loaded.name)
    if running is not None:
        os.kill(running.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while state.read(loaded.root, loaded.name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        errors.print(f"stopped gateway (pid {running.pid})")
    from runtime.backends import backend_for

    async def teardown() -> int:
        engine = backend_for(loaded, backend)
        try:
            return await engine.teardown()
        finally:
            await engine.close()

    try:
        removed = asyncio.run(teardown())
    except EngineUnavailable as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    errors.print(f"project {loaded.name}: removed {removed} replica(s) and the project's networks")


def command_line_changes(
    engine: str | None,
    access: str | None,
    isolation: str | None,
    debugged: list[str],
    why_not_debug: str,
    spec_file: Path,
) -> Callable[[Project], Project]:
    """What `faas up`'s options change in each functions.yaml loaded while serving: the one
    at start-up and every one a saved edit loads (so a reload keeps `--isolation gvisor`).

    The function raises SpecError when debugging is asked for where it cannot be.
    """

    def adjust(project: Project) -> Project:
        project = with_debug(with_engine(project, engine, access, isolation), debugged)
        if why_not_debug:
            problems = debug_problems(project, why_not_debug, str(spec_file))
            if problems:
                raise SpecError(problems)
        return project

    return adjust


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
    warm: dict[str, Any] | None = None
    if running is not None:
        answer = admin_api(loaded, running, "GET", "/system/functions")
        rows, warm = answer["functions"], answer.get("warm")
    if as_json:
        document: dict[str, Any] = {"project": loaded.name, "functions": rows}
        if warm is not None:
            document["warm"] = warm
        click.echo(json.dumps(document, indent=2))
        return
    title = f"project {loaded.name}" + ("" if running else " (not running)")
    console.print(listing.functions_table(rows, title, console.width))
    if warm is not None and warm["pools"]:
        console.print(listing.warm_table(warm, console.width))


def invoke_headers(headers: tuple[str, ...], api_key: str | None) -> dict[str, str]:
    """`-H 'Name: value'` options as a mapping, with `-k` as the bearer credential unless a
    header already sets Authorization. ValueError names a header that is not 'Name: value'."""
    result: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header {header!r} is not 'Name: value'")
        result[name.strip()] = value.strip()
    if api_key and not any(name.lower() == "authorization" for name in result):
        result["Authorization"] = f"Bearer {api_key}"
    return result


@main.command()
@click.argument("name", shell_complete=complete_function)
@file_option
@project_option
@click.option("-d", "--data", default=None, help="Request body; @FILE reads a file, - reads stdin.")
@click.option(
    "-X", "--method", default=None, help="HTTP method [default: POST with data, else GET]."
)
@click.option("--path", default="/", show_default=True, help="Path below the function.")
@click.option("-H", "--header", "headers", multiple=True, help="Extra header 'Name: value'.")
@click.option("-i", "--include", is_flag=True, help="Print the status and headers too.")
@click.option(
    "--stream/--no-stream",
    default=True,
    show_default=True,
    help="Print the answer as it arrives (a streamed one chunk by chunk), or all at the end.",
)
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
    stream: bool,
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
    body = read_data(data)
    try:
        header_map = invoke_headers(headers, key)
    except ValueError as exc:
        fail(str(exc), EXIT_INVALID)
    verb = method or ("POST" if body is not None else "GET")
    url = f"{running.url}/function/{name}/{path.lstrip('/')}".rstrip("/")
    try:
        with httpx.stream(
            verb,
            url,
            content=body,
            headers=header_map,
            timeout=None,
            trust_env=False,
            verify=not running.tls,
        ) as response:
            if include:
                click.echo(f"HTTP {response.status_code} {response.reason_phrase}")
                for name, value in response.headers.items():
                    click.echo(f"{name}: {value}")
                click.echo()
            last = _print_as_it_arrives(response) if stream else _print_whole(response)
    except httpx.RemoteProtocolError:  # a streamed answer ended without its last chunk
        sys.stdout.flush()
        fail("the answer was cut off (see `faas logs` for why)", EXIT_FAILED)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the gateway at {running.url}: {exc}", EXIT_UNAVAILABLE)
    if last and not last.endswith(b"\n") and sys.stdout.isatty():
        click.echo()
    if response.status_code >= 400:
        errors.print(f"[red]HTTP {response.status_code}[/]", highlight=False)
        sys.exit(EXIT_FAILED)


def _print_whole(response: httpx.Response) -> bytes:
    body = response.read()
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()
    return body


def _print_as_it_arrives(response: httpx.Response) -> bytes:
    """Write the body to stdout chunk by chunk, as a streamed answer produces it; the last
    chunk is returned."""
    last = b""
    for chunk in response.iter_bytes():
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        last = chunk
    return last


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
    test = scaffold.test_file(spec_file.parent, name)
    errors.print(f"wrote {written} and {test}; added {name!r} to {spec_file}")


@main.command(
    name="test",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@file_option
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def test_functions(spec_file: Path, pytest_args: tuple[str, ...]) -> None:
    """Run the project's function tests (tests/ next to functions.yaml) on the host.

    The tests call handlers in-process with faas.testing, with no Docker needed.
    Arguments after the options go to pytest.

    \b
    Examples:
      faas test
      faas test -k hello -x
      faas test tests/test_thumbnail.py
    """
    try:
        code = function_tests.run(spec_file.resolve().parent, pytest_args)
    except FaasError as exc:
        fail(str(exc), EXIT_INVALID)
    sys.exit(code)


@main.command(name="logs")
@click.argument("name", required=False, shell_complete=complete_function)
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
        for line in admin_api(loaded, running, "GET", "/system/logs", params=params)["lines"]:
            _print_log(line, as_json)
        return
    params["follow"] = "1"
    token = state.admin_token(loaded.root)
    try:
        with httpx.stream(
            "GET",
            running.admin_url + "/system/logs",
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
        fail(f"lost the gateway at {running.admin_url}: {exc}", EXIT_UNAVAILABLE)


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


@main.command()
@click.argument("name", shell_complete=complete_function)
@file_option
@project_option
@click.option("--min", "minimum", type=int, default=None, help="Replicas kept running.")
@click.option("--max", "maximum", type=int, default=None, help="Replicas at most.")
def scale(
    name: str, spec_file: Path, project: str | None, minimum: int | None, maximum: int | None
) -> None:
    """Set a function's replica bounds on the running gateway (until functions.yaml changes).

    \b
    Examples:
      faas scale hello --min 2          keep two replicas warm
      faas scale hello --min 0 --max 8
    """
    loaded = load(spec_file, project)
    running = running_gateway(loaded)
    body = {k: v for k, v in (("min", minimum), ("max", maximum)) if v is not None}
    if not body:
        fail("give --min, --max or both", EXIT_INVALID)
    answer = admin_api(loaded, running, "POST", f"/system/functions/{name}/scale", json=body)
    errors.print(f"{name}: min {answer['min']}, max {answer['max']}", highlight=False)


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
    url = dashboard_url(running.admin_url, token)
    click.echo(url)
    if open_browser and not webbrowser.open(url):
        fail("could not open a web browser; open the URL above", EXIT_FAILED)


main.add_command(cli_access.keys)
main.add_command(cli_access.secrets_group)
main.add_command(cli_events.publish)
main.add_command(cli_events.dlq)
main.add_command(cli_export.export)
main.add_command(cli_deploy.deploy)
