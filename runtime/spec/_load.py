"""Turning functions.yaml into a Project, reporting every problem found at once."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from types import MappingProxyType

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from runtime.errors import Problem, SpecError
from runtime.spec import _values as v
from runtime.spec import origins
from runtime.spec._dotenv import DOTENV_FILENAME, parse_dotenv
from runtime.spec._handlers import handler_problems
from runtime.spec._interpolate import Substituted, interpolate, needs_variables, referenced
from runtime.spec._model import (
    SPEC_FILENAME,
    ClusterSettings,
    CorsSettings,
    FunctionSpec,
    GatewaySettings,
    JwtSettings,
    Project,
    RateLimit,
    RetryPolicy,
    Route,
    ScalePolicy,
    TlsSettings,
)
from runtime.spec._schema import (
    FUNCTION_ONLY_FIELDS,
    RawCors,
    RawDefaults,
    RawDocument,
    RawFunction,
    RawGateway,
    RawJwt,
    RawRetry,
    RawRoute,
    RawScale,
    allowed_fields,
    checked_parts,
    salvage,
)
from runtime.spec._yaml import MAX_SPEC_SIZE, TOO_LARGE, LineMap, Loc, Tree, dotted, read_yaml
from runtime.spec.debug import debugged

_INHERITED_AS_IS = frozenset(RawDefaults.model_fields) - {
    "environment",
    "scale",
    "retry",
    "system_packages",
}
_MAPPING_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})
_LIST_ERRORS = frozenset({"list_type", "tuple_type"})


def load_project(
    path: Path,
    *,
    project_name: str | None = None,
    check_handlers: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Project:
    """Load the project described by `path`, a functions.yaml or the directory holding one.

    `project_name`, when given, overrides the file's `project` and the name
    derived from the directory. `check_handlers` also reads each handler file
    (see runtime/spec/_handlers.py): wanted by what builds or serves the
    functions, not by commands that only talk to a running gateway, which must
    keep working while a handler is being edited. `environ` (default: os.environ)
    holds the variables that `${NAME}` placeholders read before `.env` does.
    """
    file = path / SPEC_FILENAME if path.is_dir() else path
    text = _read_text(file)
    if text is None:
        raise SpecError([Problem(str(file), None, "", "file not found")])
    return load_project_text(
        text,
        filename=str(file),
        root=file.resolve().parent,
        project_name=project_name,
        check_handlers=check_handlers,
        environ=environ,
    )


def _read_text(file: Path) -> str | None:
    """The UTF-8 text of `file`, None if there is none, or a SpecError naming the file."""
    try:
        with file.open("rb") as handle:  # bounded: a size from stat() is not to be trusted
            data = handle.read(MAX_SPEC_SIZE + 1)
        if len(data) > MAX_SPEC_SIZE:
            raise SpecError([Problem(str(file), None, "", TOO_LARGE)])
        return data.decode("utf-8-sig")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        message = f"expected UTF-8 text, found byte {error.object[error.start]:#04x}"
        raise SpecError([Problem(str(file), None, "", message)]) from None
    except OSError as error:
        message = f"cannot read the file: {error.strerror}"
        raise SpecError([Problem(str(file), None, "", message)]) from None


def load_project_text(
    text: str,
    *,
    filename: str,
    root: Path,
    project_name: str | None = None,
    check_handlers: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Project:
    """Load a project from the text of its functions.yaml; `filename` only labels problems.

    Placeholders read `environ` (default: os.environ), then `root/.env`.
    """
    substituted = _substitute(read_yaml(text, filename), filename, root, environ)
    tree = substituted.tree
    if tree.data is None:
        message = "the file is empty; expected a mapping with 'version: 1' and 'functions'"
        raise SpecError([Problem(filename, None, "", message)])
    if not isinstance(tree.data, dict):
        message = (
            "expected a mapping with 'version' and 'functions' at the top level, "
            f"got {v.describe(tree.data)}"
        )
        raise SpecError([Problem(filename, tree.lines.value_line(()), "", message)])

    report = _Report(filename, tree.lines, tree.problems, substituted)
    document: RawDocument | None
    default_scale: RawScale | None
    try:
        document = RawDocument.model_validate(tree.data)
        default_scale, checked = checked_parts(document)
    except ValidationError as error:
        report.validation_error(error)
        document = None
        default_scale, checked = salvage(tree.data)

    name = _project_name(tree.data, document, project_name, root, report)
    if document is not None:
        _check_auth(document, report)
        _check_admin(document, report)
        _check_events(document, report)
        _check_cors(document, report)
    _check_routes({function: parts.routes for function, parts in checked.items()}, report)
    for function, parts in checked.items():
        if parts.scale is not None and default_scale is not None:
            _check_scale(function, parts.scale, default_scale, report)
    if report.problems or document is None or name is None:
        raise report.error()
    root = root.absolute()
    project = Project(
        name=name,
        root=root,
        file=root / PurePath(filename).name,
        gateway=_gateway(document.gateway),
        cluster=ClusterSettings(**dict(document.cluster)),
        functions=MappingProxyType(
            {
                function: _function_spec(function, raw, document.defaults, document.gateway.cors)
                for function, raw in document.functions.items()
            }
        ),
        lines=MappingProxyType(dict(tree.lines.keys)),
    )
    if check_handlers and (problems := handler_problems(project, filename)):
        raise SpecError(problems)
    return project


def placeholder_values(
    project: Project, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables `project.file`'s placeholders read that are set, with their values.

    For what serves the same file elsewhere (`faas deploy`, `faas export kubernetes`):
    given these as environment variables, it reads every value as this machine did,
    with no .env beside it.
    """
    text = _read_text(project.file) or ""
    tree = read_yaml(text, str(project.file))
    lookup = _lookup(tree, str(project.file), project.root, environ)
    return {name: value for name in referenced(tree) if (value := lookup(name)) is not None}


def _substitute(
    tree: Tree, filename: str, root: Path, environ: Mapping[str, str] | None
) -> Substituted:
    return interpolate(tree, _lookup(tree, filename, root, environ), filename)


def _lookup(
    tree: Tree, filename: str, root: Path, environ: Mapping[str, str] | None
) -> Callable[[str], str | None]:
    """Variables from `environ` (default os.environ), then `.env`, read only if a value
    has a placeholder."""
    variables: Mapping[str, str] = {}
    if needs_variables(tree):
        dotenv = str(PurePath(filename).with_name(DOTENV_FILENAME))
        text = _read_text(root / DOTENV_FILENAME)
        if text is not None:
            variables, problems = parse_dotenv(text, dotenv)
            if problems:
                raise SpecError(problems)
    environ = os.environ if environ is None else environ
    return lambda name: environ.get(name, variables.get(name))


class _Report:
    """The problems found so far, each placed on its line through the LineMap."""

    def __init__(
        self,
        filename: str,
        lines: LineMap,
        problems: tuple[Problem, ...],
        substituted: Substituted | None = None,
    ) -> None:
        self.filename = filename
        self.lines = lines
        self.problems = list(problems)
        self.substituted = substituted or Substituted(Tree(None, lines, ()))

    def add(self, line: int | None, field: str, message: str) -> None:
        self.problems.append(Problem(self.filename, line, field, message))

    def at_key(self, loc: Loc, message: str) -> None:
        if loc not in self.substituted.failed:
            message = self.substituted.shown(loc, message, v.describe)
            self.add(self.lines.key_line(loc), dotted(loc), message)

    def at_value(self, loc: Loc, message: str) -> None:
        if loc not in self.substituted.failed:
            message = self.substituted.shown(loc, message, v.describe)
            self.add(self.lines.value_line(loc), dotted(loc), message)

    def error(self) -> SpecError:
        unique = dict.fromkeys(self.problems)
        return SpecError(sorted(unique, key=lambda problem: problem.line or 0))

    def validation_error(self, error: ValidationError) -> None:
        for detail in error.errors():
            loc = tuple(detail["loc"])
            if loc and loc[-1] == "[key]":
                self.at_key(loc[:-1], _reason(detail))
            elif detail["type"] == "extra_forbidden":
                self.at_key(loc, _unknown_field(loc))
            elif detail["type"] == "missing":
                self.at_key(loc, f"missing required field '{loc[-1]}'")
            else:
                self.at_value(loc, _reason(detail))


def _reason(detail: ErrorDetails) -> str:
    kind = detail["type"]
    if kind == "value_error" and "ctx" in detail:
        return str(detail["ctx"]["error"])
    if kind in _MAPPING_ERRORS:
        return f"expected a mapping, got {v.describe(detail['input'])}"
    if kind in _LIST_ERRORS:
        return f"expected a list, got {v.describe(detail['input'])}"
    return detail["msg"]


def _unknown_field(loc: Loc) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    if parent == ("defaults",) and key in FUNCTION_ONLY_FIELDS:
        return f"'{key}' cannot have a default; set it on each function"
    allowed = allowed_fields(parent)
    if close := difflib.get_close_matches(key, allowed, n=1):
        return f"unknown field '{key}'; did you mean '{close[0]}'?"
    return f"unknown field '{key}'; expected one of: {', '.join(sorted(allowed))}"


def _project_name(
    data: Mapping[str, object],
    document: RawDocument | None,
    argument: str | None,
    root: Path,
    report: _Report,
) -> str | None:
    check = v.name("project name")
    if argument is not None:
        try:
            return check(argument)
        except ValueError as error:
            report.add(None, "project", f"invalid project name given to the loader: {error}")
            return None
    if document is not None and document.project is not None:
        return document.project
    if data.get("project") is not None:
        return None
    derived = re.sub(r"[^a-z0-9-]", "-", root.name.lower())
    try:
        return check(derived)
    except ValueError:
        report.at_key(
            ("project",),
            f"no project name is set and the directory name {root.name!r} does not make one "
            f"({derived!r}); add 'project:' with lowercase letters, digits and '-', "
            "starting with a letter",
        )
        return None


def _check_routes(
    functions: Mapping[str, tuple[tuple[int, RawRoute], ...]], report: _Report
) -> None:
    """Each (method, path) must lead to one function, and each function list a path once."""
    owners: dict[tuple[str, str], tuple[str, Loc]] = {}
    for function, routes in functions.items():
        paths: dict[str, int] = {}
        for index, route in routes:
            at: Loc = ("functions", function, "http", index)
            template = v.route_template(route.path)
            if template in paths:
                report.at_value(
                    (*at, "path"),
                    f"path {route.path!r} is already declared in http[{paths[template]}]; "
                    "list all of its methods in that entry",
                )
                continue
            paths[template] = index
            if not route.methods:
                report.at_value((*at, "methods"), "expected at least one HTTP method")
            listed: set[str] = set()
            for position, method in enumerate(route.methods):
                loc: Loc = (*at, "methods", position)
                if method in listed:
                    report.at_value(loc, f"method {method} is listed twice")
                    continue
                listed.add(method)
                if "methods" not in route.model_fields_set:
                    loc = (*at, "path")
                other, other_loc = owners.setdefault((method, template), (function, loc))
                if other != function:
                    report.at_value(
                        loc,
                        f"{method} {route.path} is declared by both '{other}' "
                        f"(line {report.lines.value_line(other_loc)}) and '{function}'; "
                        "a method and path can lead to one function only",
                    )


def _function_spec(
    name: str, raw: RawFunction, defaults: RawDefaults, cors: RawCors | None
) -> FunctionSpec:
    settings = defaults.model_copy(
        update={field: getattr(raw, field) for field in raw.model_fields_set & _INHERITED_AS_IS}
    )
    spec = FunctionSpec(
        name=name,
        handler_file=raw.handler.file,
        handler_name=raw.handler.function,
        routes=tuple(
            Route(r.path, r.methods, r.webhook_secret, _cors(_merge_cors(r.cors, cors)))
            for r in raw.http
        ),
        environment=MappingProxyType({**defaults.environment, **raw.environment}),
        timeout=settings.timeout,
        max_duration=settings.max_duration,
        request_body=raw.request_body,
        websocket=raw.websocket,
        max_message_size=raw.max_message_size,
        memory=settings.memory,
        cpus=settings.cpus,
        requirements=raw.requirements,
        base_image=settings.base_image,
        scale=_merge_scale(raw.scale, defaults.scale),
        auth=settings.auth,
        public=settings.public,
        secrets=raw.secrets,
        events=raw.events,
        schedule=raw.schedule,
        timezone=settings.timezone,
        retry=_merge_retry(raw.retry, defaults.retry),
        max_backlog=settings.max_backlog,
        callback_secret=settings.callback_secret,
        isolation=settings.isolation,
        include=raw.include,
        preload=raw.preload,
        system_packages=tuple(dict.fromkeys((*defaults.system_packages, *raw.system_packages))),
    )
    return debugged(spec) if raw.debug else spec


def _gateway(raw: RawGateway) -> GatewaySettings:
    jwt = raw.jwt
    return GatewaySettings(
        host=raw.host,
        port=raw.port,
        max_body_size=raw.max_body_size,
        max_response_size=raw.max_response_size,
        max_header_size=raw.max_header_size,
        header_timeout=raw.header_timeout,
        max_connections=raw.max_connections,
        admin_host=raw.admin_host,
        admin_port=raw.admin_port,
        rate_limit=RateLimit(*raw.rate_limit) if raw.rate_limit else None,
        jwt=JwtSettings(
            algorithms=_jwt_algorithms(jwt),
            secret=jwt.secret,
            public_key_file=jwt.public_key_file,
            issuer=jwt.issuer,
            audience=jwt.audience,
            leeway=jwt.leeway,
            jwks_url=jwt.jwks_url,
            jwks_lifespan=jwt.jwks_lifespan,
            jwks_refetch_interval=jwt.jwks_refetch_interval,
        )
        if jwt
        else None,
        tls=TlsSettings(raw.tls.cert_file, raw.tls.key_file) if raw.tls else None,
        admin_remote=raw.admin_remote,
        events_auth=raw.events_auth,
        callback_allow=raw.callback_allow,
        callback_secret=raw.callback_secret,
        result_retention=raw.result_retention,
        warm_pool=raw.warm_pool,
        warm_pool_memory=raw.warm_pool_memory,
        warm_tasks=raw.warm_tasks,
        cors=_cors(raw.cors),
    )


def _merge_cors(own: RawCors | None, inherited: RawCors | None) -> RawCors | None:
    """A route's CORS: `gateway.cors` with the fields its own block writes laid over it;
    None for `cors: false`, or when neither says anything."""
    if own is None or not own.model_fields_set:
        return None if own is None else inherited
    update = {field: getattr(own, field) for field in own.model_fields_set}
    return (inherited or RawCors()).model_copy(update=update)


def _cors(raw: RawCors | None) -> CorsSettings | None:
    return CorsSettings(**raw.model_dump()) if raw is not None else None


def _check_cors(document: RawDocument, report: _Report) -> None:
    """What browsers would refuse, on the values as merged, named where the file wrote them."""
    inherited = document.gateway.cors
    if inherited is not None:
        _check_cors_block(("gateway", "cors"), inherited, inherited, report)
    for name, raw in document.functions.items():
        for index, route in enumerate(raw.http):
            own = route.cors
            if own is not None and own.model_fields_set:
                merged = _merge_cors(own, inherited) or own
                _check_cors_block(("functions", name, "http", index, "cors"), own, merged, report)


def _check_cors_block(at: Loc, own: RawCors, merged: RawCors, report: _Report) -> None:
    written = own.model_fields_set
    if not merged.allow_origins:
        where = "" if at[0] == "gateway" else " (here or in gateway.cors)"
        report.at_key(at, f"a cors block needs allow_origins{where}, like {origins.EXAMPLES}")
        return
    own_origins = own.allow_origins
    if "allow_origins" in written and origins.ANY in own_origins and len(own_origins) > 1:
        report.at_value(
            (*at, "allow_origins", own_origins.index(origins.ANY)),
            "'*' allows every origin: list '*' alone, or only the origins",
        )
    if merged.allow_methods == ():
        report.at_value((*at, "allow_methods"), "expected at least one HTTP method")
    if not merged.allow_credentials:
        return
    for field, why in (
        ("allow_origins", "browsers refuse a credentialed answer that allows any origin"),
        ("expose_headers", "browsers read it as a header named '*' on credentialed calls"),
    ):
        listed: tuple[str, ...] = getattr(merged, field)
        if "*" not in listed:
            continue
        if field in written:
            loc: Loc = (*at, field, listed.index("*"))
        elif "allow_credentials" in written:
            loc = (*at, "allow_credentials")
        else:
            continue  # both inherited: reported on gateway.cors
        report.at_value(
            loc,
            f"{field} '*' cannot go with allow_credentials: true ({why}, as the CORS "
            "standard says); list them instead",
        )


def _check_admin(document: RawDocument, report: _Report) -> None:
    """The admin listener stays on loopback unless `admin_remote` says otherwise on purpose."""
    gateway = document.gateway
    if gateway.admin_port == gateway.port:
        report.at_value(("gateway", "admin_port"), "admin_port must differ from port")
    if not gateway.admin_remote and not _is_loopback(gateway.admin_host):
        report.at_value(
            ("gateway", "admin_host"),
            f"admin_host {gateway.admin_host} is not a loopback address; "
            "set gateway.admin_remote: true to serve the admin API there",
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_auth(document: RawDocument, report: _Report) -> None:
    """JWT functions need gateway.jwt, and gateway.jwt needs a key for its algorithms."""
    jwt = document.gateway.jwt
    if jwt is None and document.gateway.events_auth == "jwt":
        report.at_value(
            ("gateway", "events_auth"),
            "events_auth: jwt needs a gateway.jwt block (algorithms and a key)",
        )
        return
    for name, raw in document.functions.items():
        uses_jwt = (raw.auth if "auth" in raw.model_fields_set else document.defaults.auth) == "jwt"
        if uses_jwt and jwt is None:
            loc: Loc = ("functions", name, "auth")
            if "auth" not in raw.model_fields_set:
                loc = ("defaults", "auth")
            report.at_value(loc, "auth: jwt needs a gateway.jwt block (algorithms and a key)")
            return
    if jwt is None:
        return
    algorithms = _jwt_algorithms(jwt)
    wants_secret = any(a.startswith("HS") for a in algorithms)
    wants_key = any(a.startswith("RS") for a in algorithms)
    if wants_secret and wants_key:
        report.at_value(
            ("gateway", "jwt", "algorithms"),
            "use HS* or RS* algorithms, not both (one key verifies every token)",
        )
        return
    if jwt.jwks_url is not None:
        _check_jwks(jwt, wants_secret, report)
        return
    if wants_secret and jwt.secret is None:
        report.at_key(("gateway", "jwt"), "HS* algorithms need 'secret' (the name of a secret)")
    if wants_key and jwt.public_key_file is None:
        report.at_key(
            ("gateway", "jwt"),
            "RS* algorithms need 'public_key_file' (a PEM file) or 'jwks_url'",
        )
    for field in ("jwks_lifespan", "jwks_refetch_interval"):
        if field in jwt.model_fields_set:
            message = f"{field} applies to jwks_url, which is not set"
            report.at_key(("gateway", "jwt", field), message)


def _jwt_algorithms(jwt: RawJwt) -> tuple[str, ...]:
    """A JWKS serves public keys, so with `jwks_url` the default algorithm is RS256."""
    if jwt.jwks_url is not None and "algorithms" not in jwt.model_fields_set:
        return ("RS256",)
    return jwt.algorithms


def _check_jwks(jwt: RawJwt, wants_secret: bool, report: _Report) -> None:
    """One source of keys: the JWKS, with the RS* algorithms its public keys verify."""
    if wants_secret:
        report.at_value(
            ("gateway", "jwt", "algorithms"),
            "jwks_url serves public keys, which verify RS* algorithms only (HS* needs 'secret')",
        )
    for field in ("secret", "public_key_file"):
        if field in jwt.model_fields_set:
            report.at_key(
                ("gateway", "jwt", field),
                f"set jwks_url or {field}, not both (one source of keys verifies every token)",
            )


def _merge_retry(own: RawRetry, inherited: RawRetry) -> RetryPolicy:
    update = {field: getattr(own, field) for field in own.model_fields_set}
    return RetryPolicy(**inherited.model_copy(update=update).model_dump())


def _check_events(document: RawDocument, report: _Report) -> None:
    """Subscriptions listed once, retry bounds in order, on the values as merged."""
    _check_retry(("defaults", "retry"), document.defaults.retry, None, report)
    for name, raw in document.functions.items():
        seen: dict[str, int] = {}
        for index, pattern in enumerate(raw.events):
            if pattern in seen:
                report.at_value(
                    ("functions", name, "events", index),
                    f"topic pattern {pattern!r} is already listed in events[{seen[pattern]}]",
                )
            seen.setdefault(pattern, index)
        if "timezone" in raw.model_fields_set and raw.schedule is None:
            report.at_key(
                ("functions", name, "timezone"),
                "timezone applies to a schedule, and this function has none",
            )
        if "retry" in raw.model_fields_set:
            _check_retry(("functions", name, "retry"), raw.retry, document.defaults.retry, report)
        _check_max_duration(name, raw, document.defaults, report)


def _check_max_duration(
    name: str, raw: RawFunction, defaults: RawDefaults, report: _Report
) -> None:
    """A streamed answer may not end before its first byte is due."""
    fields = raw.model_fields_set
    timeout = raw.timeout if "timeout" in fields else defaults.timeout
    longest = raw.max_duration if "max_duration" in fields else defaults.max_duration
    if longest < timeout:
        at = "max_duration" if "max_duration" in fields else "timeout"
        report.at_value(
            ("functions", name, at),
            f"max_duration ({longest:g}s) must be at least the timeout ({timeout:g}s)",
        )


def _check_retry(at: Loc, own: RawRetry, inherited: RawRetry | None, report: _Report) -> None:
    policy = _merge_retry(own, inherited) if inherited is not None else _merge_retry(own, own)
    for index, code in enumerate(own.retry_on):
        if own.retry_on.index(code) != index:
            report.at_value((*at, "retry_on", index), f"status {code} is listed twice")
    if policy.max_backoff < policy.backoff:
        field = "max_backoff" if "max_backoff" in own.model_fields_set else "backoff"
        if field not in own.model_fields_set:
            return  # both inherited: reported on the defaults
        report.at_value(
            (*at, field),
            f"expected max_backoff ({policy.max_backoff:g}s) >= backoff ({policy.backoff:g}s)",
        )


def _merge_scale(own: RawScale, inherited: RawScale) -> ScalePolicy:
    update = {field: getattr(own, field) for field in own.model_fields_set}
    return ScalePolicy(**inherited.model_copy(update=update).model_dump())


def _check_scale(name: str, own: RawScale, inherited: RawScale, report: _Report) -> None:
    """Check the bounds that only the merged values can break."""
    policy = _merge_scale(own, inherited)

    def origin(field: str) -> Loc | None:
        if field in own.model_fields_set:
            return ("functions", name, "scale", field)
        if field in inherited.model_fields_set:
            return ("defaults", "scale", field)
        return None

    _check_order(report, origin, "min", policy.min, "max", policy.max)
    if policy.concurrency is not None:
        _check_order(
            report,
            origin,
            "target_concurrency",
            policy.target_concurrency,
            "concurrency",
            policy.concurrency,
        )


def _check_order(
    report: _Report,
    origin: Callable[[str], Loc | None],
    low: str,
    low_value: int,
    high: str,
    high_value: int,
) -> None:
    """Report `high` < `low` on whichever of the two the file set closest to the function."""
    if high_value >= low_value:
        return
    high_origin, low_origin = origin(high), origin(low)
    if _rank(high_origin) >= _rank(low_origin) and high_origin is not None:
        report.at_value(
            high_origin,
            f"expected {high} >= {low} ({low_value}{_source(low_origin)}), got {high_value}",
        )
    elif low_origin is not None:
        report.at_value(
            low_origin,
            f"expected {low} <= {high} ({high_value}{_source(high_origin)}), got {low_value}",
        )


def _rank(origin: Loc | None) -> int:
    if origin is None:
        return 0
    return 2 if origin[0] == "functions" else 1


def _source(origin: Loc | None) -> str:
    if origin is None:
        return ", the default"
    return ", set in defaults" if origin[0] == "defaults" else ""
