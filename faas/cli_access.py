"""`faas keys` and `faas secrets`: API keys and secrets of a project."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.table import Table

from faas import state
from faas.cli_common import (
    EXIT_FAILED,
    EXIT_INVALID,
    admin_api,
    console,
    errors,
    fail,
    file_option,
    load,
    project_option,
)
from gateway.keys import KeyStore
from runtime.errors import FaasError
from runtime.secrets import SecretStore


@click.group()
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
        created = admin_api(
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
        listed = admin_api(loaded, running, "GET", "/system/keys")["keys"]
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
        admin_api(loaded, running, "DELETE", f"/system/keys/{key_id}")
    else:
        try:
            KeyStore(state.state_dir(loaded.root)).revoke(key_id)
        except FaasError as exc:
            fail(str(exc), EXIT_FAILED)
    errors.print(f"revoked key {key_id}")


@click.group(name="secrets")
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
