"""The raw shape of functions.yaml, as pydantic models.

Every field carries its built-in default, and `model_fields_set` tells what the
file actually wrote, which is what merging `defaults` into functions relies on.
An empty block (`scale:` with nothing under it) means the same as leaving it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, NamedTuple, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
)

from runtime.spec import _values as v
from runtime.spec._model import (
    DEFAULT_ADMIN_HOST,
    DEFAULT_ADMIN_PORT,
    DEFAULT_AUTH,
    DEFAULT_BACKOFF,
    DEFAULT_BASE_IMAGE,
    DEFAULT_CORS_MAX_AGE,
    DEFAULT_CPUS,
    DEFAULT_EVENTS_AUTH,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_ISOLATION,
    DEFAULT_JWKS_LIFESPAN,
    DEFAULT_JWKS_REFETCH_INTERVAL,
    DEFAULT_JWT_LEEWAY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MEMORY,
    DEFAULT_METHODS,
    DEFAULT_NATS_URL,
    DEFAULT_PORT,
    DEFAULT_RESULT_RETENTION,
    DEFAULT_RETRY_ON,
    DEFAULT_SCALE_MAX,
    DEFAULT_SCALE_MIN,
    DEFAULT_TARGET_CONCURRENCY,
    DEFAULT_TIMEOUT,
    DEFAULT_TIMEZONE,
    DEFAULT_WARM_POOL,
    DEFAULT_WARM_POOL_MEMORY,
    DEFAULT_WARM_TASKS,
)
from runtime.spec._yaml import Loc

T = TypeVar("T")


def _empty_if_null(empty: object) -> BeforeValidator:
    return BeforeValidator(lambda value: empty if value is None else value)


def _not_empty(value: dict[str, RawFunction]) -> dict[str, RawFunction]:
    if not value:
        raise ValueError("expected at least one function")
    return value


Count = Annotated[int, PlainValidator(v.integer(0))]
PositiveCount = Annotated[int, PlainValidator(v.integer(1))]
Duration = Annotated[float, PlainValidator(v.duration)]
EnvName = Annotated[str, PlainValidator(v.env_name)]
EnvValue = Annotated[str, PlainValidator(v.env_value)]
Method = Annotated[str, PlainValidator(v.method)]
FunctionName = Annotated[str, PlainValidator(v.name("function name"))]
ScaleBlock = Annotated["RawScale", _empty_if_null({})]
RetryBlock = Annotated["RawRetry", _empty_if_null({})]
DefaultsBlock = Annotated["RawDefaults", _empty_if_null({})]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RawScale(_Raw):
    min: Count = DEFAULT_SCALE_MIN
    max: PositiveCount = DEFAULT_SCALE_MAX
    target_concurrency: PositiveCount = DEFAULT_TARGET_CONCURRENCY
    concurrency: Annotated[int | None, PlainValidator(v.optional(v.integer(1)))] = None
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    max_queue: Count = DEFAULT_MAX_QUEUE


SecretName = Annotated[str, PlainValidator(v.secret_name)]
MAX_ATTEMPTS_LIMIT = 100


class RawRetry(_Raw):
    max_attempts: Annotated[int, PlainValidator(v.integer(1, MAX_ATTEMPTS_LIMIT))] = (
        DEFAULT_MAX_ATTEMPTS
    )
    backoff: Duration = DEFAULT_BACKOFF
    max_backoff: Duration = DEFAULT_MAX_BACKOFF
    retry_on: Annotated[
        tuple[Annotated[int, PlainValidator(v.status_code)], ...], _empty_if_null(())
    ] = DEFAULT_RETRY_ON


class RawCors(_Raw):
    """A `cors` block; a route's lays the fields it writes over `gateway.cors`."""

    allow_origins: Annotated[
        tuple[Annotated[str, PlainValidator(v.origin)], ...], _empty_if_null(())
    ] = ()
    allow_methods: Annotated[
        tuple[Annotated[str, PlainValidator(v.cors_method)], ...] | None,
        _empty_if_null(()),
    ] = None
    allow_headers: Annotated[
        tuple[Annotated[str, PlainValidator(v.header_name)], ...], _empty_if_null(())
    ] = ()
    expose_headers: Annotated[
        tuple[Annotated[str, PlainValidator(v.header_name)], ...], _empty_if_null(())
    ] = ()
    allow_credentials: Annotated[bool, PlainValidator(v.boolean)] = False
    max_age: Annotated[int, PlainValidator(v.whole_seconds)] = DEFAULT_CORS_MAX_AGE
    allow_private_network: Annotated[bool, PlainValidator(v.boolean)] = False


def _route_cors(value: object) -> object:
    """`cors: false` turns CORS off on a route (None); an empty block inherits (as absent)."""
    if value is False:
        return None
    if value is True:
        raise ValueError("expected a cors block, or false to turn CORS off on this route")
    return {} if value is None else value


class RawRoute(_Raw):
    path: Annotated[str, PlainValidator(v.route_path)]
    methods: tuple[Method, ...] = DEFAULT_METHODS
    webhook_secret: Annotated[str | None, PlainValidator(v.optional(v.secret_name))] = None
    cors: Annotated[RawCors | None, BeforeValidator(_route_cors)] = RawCors()


class RawJwt(_Raw):
    algorithms: tuple[Annotated[str, PlainValidator(v.jwt_algorithm)], ...] = ("HS256",)
    secret: Annotated[str | None, PlainValidator(v.optional(v.secret_name))] = None
    public_key_file: Annotated[str | None, PlainValidator(v.optional(v.project_path))] = None
    issuer: Annotated[str | None, PlainValidator(v.optional(v.word("an issuer")))] = None
    audience: Annotated[str | None, PlainValidator(v.optional(v.word("an audience")))] = None
    leeway: Annotated[float, PlainValidator(v.duration)] = DEFAULT_JWT_LEEWAY
    jwks_url: Annotated[str | None, PlainValidator(v.optional(v.http_url))] = None
    jwks_lifespan: Duration = DEFAULT_JWKS_LIFESPAN
    jwks_refetch_interval: Annotated[float, PlainValidator(v.duration_or_zero)] = (
        DEFAULT_JWKS_REFETCH_INTERVAL
    )


class RawTls(_Raw):
    cert_file: Annotated[str, PlainValidator(v.project_path)]
    key_file: Annotated[str, PlainValidator(v.project_path)]


class RawGateway(_Raw):
    host: Annotated[str, PlainValidator(v.word("a host name or IP address"))] = DEFAULT_HOST
    port: Annotated[int, PlainValidator(v.integer(1, 65535, noun="a port number"))] = DEFAULT_PORT
    max_body_size: Annotated[int, PlainValidator(v.size)] = DEFAULT_MAX_BODY_SIZE
    max_response_size: Annotated[int, PlainValidator(v.size)] = DEFAULT_MAX_RESPONSE_SIZE
    max_header_size: Annotated[int, PlainValidator(v.size)] = DEFAULT_MAX_HEADER_SIZE
    header_timeout: Duration = DEFAULT_HEADER_TIMEOUT
    max_connections: Annotated[
        int | None, PlainValidator(v.optional(v.integer(1, noun="a connection count")))
    ] = None
    admin_host: Annotated[str, PlainValidator(v.word("a host name or IP address"))] = (
        DEFAULT_ADMIN_HOST
    )
    admin_port: Annotated[int, PlainValidator(v.integer(1, 65535, noun="a port number"))] = (
        DEFAULT_ADMIN_PORT
    )
    rate_limit: Annotated[tuple[int, float] | None, PlainValidator(v.optional(v.rate))] = None
    jwt: RawJwt | None = None
    tls: RawTls | None = None
    admin_remote: Annotated[bool, PlainValidator(v.boolean)] = False
    events_auth: Annotated[str, PlainValidator(v.auth_mode)] = DEFAULT_EVENTS_AUTH
    callback_allow: Annotated[
        tuple[Annotated[str, PlainValidator(v.callback_entry)], ...], _empty_if_null(())
    ] = ()
    callback_secret: Annotated[str | None, PlainValidator(v.optional(v.secret_name))] = None
    result_retention: Duration = DEFAULT_RESULT_RETENTION
    warm_pool: Annotated[int, PlainValidator(v.integer(0, 64, noun="a pool size"))] = (
        DEFAULT_WARM_POOL
    )
    warm_pool_memory: Annotated[int, PlainValidator(v.size)] = DEFAULT_WARM_POOL_MEMORY
    warm_tasks: Annotated[int, PlainValidator(v.integer(0, 64, noun="a number of tasks"))] = (
        DEFAULT_WARM_TASKS
    )
    cors: RawCors | None = None


class RawCluster(_Raw):
    backend: Annotated[str, PlainValidator(v.one_of("a backend", v.BACKENDS))] = "docker"
    registry: Annotated[str | None, PlainValidator(v.optional(v.registry))] = None
    queue: Annotated[str, PlainValidator(v.one_of("a queue", v.QUEUES))] = "sqlite"
    nats_url: Annotated[str, PlainValidator(v.nats_url)] = DEFAULT_NATS_URL
    engine: Annotated[str, PlainValidator(v.one_of("an engine", v.ENGINES))] = "docker"
    replica_access: Annotated[
        str, PlainValidator(v.one_of("a replica access", v.REPLICA_ACCESS))
    ] = "auto"
    placement: Annotated[
        tuple[Annotated[str, PlainValidator(v.placement)], ...], _empty_if_null(())
    ] = ()


class RawDefaults(_Raw):
    """The settings a function may inherit from the `defaults` block."""

    base_image: Annotated[str, PlainValidator(v.word("an image reference"))] = DEFAULT_BASE_IMAGE
    timeout: Duration = DEFAULT_TIMEOUT
    max_duration: Duration = DEFAULT_MAX_DURATION
    memory: Annotated[int, PlainValidator(v.memory)] = DEFAULT_MEMORY
    cpus: Annotated[float, PlainValidator(v.cpus)] = DEFAULT_CPUS
    environment: Annotated[dict[EnvName, EnvValue], _empty_if_null({})] = Field(
        default_factory=dict
    )
    scale: ScaleBlock = RawScale()
    auth: Annotated[str, PlainValidator(v.auth_mode)] = DEFAULT_AUTH
    public: Annotated[bool, PlainValidator(v.boolean)] = True
    timezone: Annotated[str, PlainValidator(v.timezone)] = DEFAULT_TIMEZONE
    retry: RetryBlock = RawRetry()
    max_backlog: PositiveCount = DEFAULT_MAX_BACKLOG
    callback_secret: Annotated[str | None, PlainValidator(v.optional(v.secret_name))] = None
    isolation: Annotated[str, PlainValidator(v.one_of("an isolation", v.ISOLATIONS))] = (
        DEFAULT_ISOLATION
    )
    system_packages: Annotated[
        tuple[Annotated[str, PlainValidator(v.debian_package)], ...], _empty_if_null(())
    ] = ()


class RawFunction(RawDefaults):
    handler: Annotated[v.HandlerRef, PlainValidator(v.handler)]
    http: Annotated[tuple[RawRoute, ...], _empty_if_null(())] = ()
    requirements: Annotated[str | None, PlainValidator(v.optional(v.project_path))] = None
    include: Annotated[
        tuple[Annotated[str, PlainValidator(v.project_path)], ...], _empty_if_null(())
    ] = ()
    secrets: Annotated[tuple[SecretName, ...], _empty_if_null(())] = ()
    events: Annotated[
        tuple[Annotated[str, PlainValidator(v.topic_pattern)], ...], _empty_if_null(())
    ] = ()
    schedule: Annotated[str | None, PlainValidator(v.optional(v.schedule))] = None
    preload: Annotated[tuple[str, ...] | None, PlainValidator(v.optional(v.preload))] = None
    request_body: Annotated[
        str, PlainValidator(v.one_of("a request body mode", v.REQUEST_BODIES))
    ] = "whole"
    debug: Annotated[bool, PlainValidator(v.boolean)] = False
    websocket: Annotated[bool, PlainValidator(v.boolean)] = False
    max_message_size: Annotated[int, PlainValidator(v.message_size)] = DEFAULT_MAX_MESSAGE_SIZE


class RawDocument(_Raw):
    version: Annotated[int, PlainValidator(v.version)]
    project: Annotated[str | None, PlainValidator(v.optional(v.name("project name")))] = None
    gateway: Annotated[RawGateway, _empty_if_null({})] = RawGateway()
    cluster: Annotated[RawCluster, _empty_if_null({})] = RawCluster()
    defaults: DefaultsBlock = RawDefaults()
    functions: Annotated[dict[FunctionName, RawFunction], AfterValidator(_not_empty)]


FUNCTION_ONLY_FIELDS = frozenset(RawFunction.model_fields) - frozenset(RawDefaults.model_fields)


class Checked(NamedTuple):
    """What the checks spanning several fields read of one function.

    `routes` pairs each valid route with its index in the file's `http` list.
    """

    scale: RawScale | None
    routes: tuple[tuple[int, RawRoute], ...]


def checked_parts(document: RawDocument) -> tuple[RawScale, dict[str, Checked]]:
    functions = document.functions.items()
    return document.defaults.scale, {
        name: Checked(raw.scale, tuple(enumerate(raw.http))) for name, raw in functions
    }


_SCALE = TypeAdapter(ScaleBlock)
_ROUTE = TypeAdapter(RawRoute)
_FUNCTION_NAME = TypeAdapter(FunctionName)


def salvage(data: Mapping[str, object]) -> tuple[RawScale | None, dict[str, Checked]]:
    """The parts of an invalid document that are valid on their own.

    The checks that span fields still run on these, so one bad value does not
    hide a route conflict or a scale bound elsewhere. The errors that made the
    document invalid are reported separately.
    """
    defaults = _mapping(data.get("defaults"))
    functions: dict[str, Checked] = {}
    for name, raw in _mapping(data.get("functions")).items():
        if _valid(_FUNCTION_NAME, name) is None:
            continue
        function = _mapping(raw)
        http = function.get("http")
        items = http if isinstance(http, list) else []
        routes = tuple(
            (index, route)
            for index, item in enumerate(items)
            if (route := _valid(_ROUTE, item)) is not None
        )
        functions[name] = Checked(_valid(_SCALE, function.get("scale")), routes)
    return _valid(_SCALE, defaults.get("scale")), functions


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _valid(adapter: TypeAdapter[T], value: object) -> T | None:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def allowed_fields(loc: Loc) -> tuple[str, ...]:
    """The keys a RawDocument allows in the mapping at `loc`, or () if it is not a model."""
    annotation: object = RawDocument
    for part in loc:
        annotation = _child(annotation, part)
    model = _unwrap(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return tuple(model.model_fields)
    return ()


def _unwrap(annotation: object) -> object:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _child(annotation: object, part: str | int) -> object:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict:
        return args[1]
    if origin is tuple:
        return args[0]
    return None
