"""Where functions.yaml names a secret, and which of those have no value.

The values live in the secret store (`.faas/secrets/`, or `FAAS_SECRET_<NAME>`),
which the loader never reads: the command that serves the project passes the
names that have a value, and gets back each line that names one without.
"""

from __future__ import annotations

from collections.abc import Collection

from runtime.errors import Problem
from runtime.secrets import env_name
from runtime.spec._handlers import line_of
from runtime.spec._model import Project
from runtime.spec._yaml import Loc, dotted


def secret_references(project: Project) -> list[tuple[Loc, str]]:
    """Every (field, secret name) the project uses, in file order.

    A secret a function inherits from `defaults` is placed on `defaults`.
    """
    found: list[tuple[Loc, str]] = []
    gateway, jwt = project.gateway, project.gateway.jwt
    if jwt and jwt.secret and any(a.startswith("HS") for a in jwt.algorithms):
        found.append((("gateway", "jwt", "secret"), jwt.secret))
    if gateway.callback_secret:
        found.append((("gateway", "callback_secret"), gateway.callback_secret))
    for name, function in project.functions.items():
        at: Loc = ("functions", name)
        found += [((*at, "secrets", i), secret) for i, secret in enumerate(function.secrets)]
        found += [
            ((*at, "http", index, "webhook_secret"), route.webhook_secret)
            for index, route in enumerate(function.routes)
            if route.webhook_secret
        ]
        if function.callback_secret:
            own: Loc = (*at, "callback_secret")
            where = own if own in project.lines else ("defaults", "callback_secret")
            found.append((where, function.callback_secret))
    unique = dict.fromkeys(found)
    return sorted(unique, key=lambda ref: line_of(project.lines, ref[0]) or 0)


def missing_secrets(
    project: Project, available: Collection[str], filename: str | None = None
) -> list[Problem]:
    """A problem for each place that names a secret not in `available`, with how to set it."""
    label = str(project.file) if filename is None else filename
    return [
        Problem(
            label,
            line_of(project.lines, loc),
            dotted(loc),
            f"secret {secret!r} has no value; set it with `faas secrets set {secret}` "
            f"or the environment variable {env_name(secret)}",
        )
        for loc, secret in secret_references(project)
        if secret not in available
    ]
