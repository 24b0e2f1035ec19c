"""Settings, read once when the app is built (never at import time).

Every field can come from a `MODELYARD_<FIELD>` environment variable or a CLI flag; flags win.
Relative paths (the data folder, a `sqlite:///relative.db` URL) are made absolute here, once,
against the working directory at start: nothing later depends on where the process stands.
A field with a fixed set of values is a `Literal`; any wrong value is refused by
`load_settings`, naming the setting and its variable. Each default is defined once, here: the
fields, the CLI's help and the app use these names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin, get_type_hints

import msgspec

from adapters.sql.database_url import BadDatabaseUrl, absolute, parse_database_url, sqlite_url
from registry.web.forwarded import DEFAULT_FORWARDED_ALLOW_IPS, TrustedProxies

ENV_PREFIX: Final = "MODELYARD_"
DB_FILE: Final = "modelyard.db"

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
DEFAULT_DATA_DIR: Final = ".modelyard"  # relative: to the working directory at start
DEFAULT_LOG_LEVEL: Final = "info"
DEFAULT_MAX_BODY: Final = 1024 * 1024
DEFAULT_MAX_ARTIFACT: Final = 20 * 1024**3
DEFAULT_READY_TIMEOUT_S: Final = 120.0
#: Where `modelyard gateway` follows routes, and where the client commands send requests.
DEFAULT_REGISTRY_URL: Final = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
DEFAULT_GATEWAY_MAX_BODY: Final = 16 * 1024 * 1024
DEFAULT_GATEWAY_MAX_INFLIGHT: Final = 1024
DEFAULT_GATEWAY_REPORT_S: Final = 2.0
#: The gateway's gRPC port (KServe v2 GRPCInferenceService), Triton's; 0 turns it off.
DEFAULT_GRPC_PORT: Final = 8001
DEFAULT_ROLLOUT_TICK_S: Final = 0.5
DEFAULT_ROUTE_POLL_S: Final = 0.2
DEFAULT_WINDOWS_RETENTION_H: Final = 7 * 24.0
DEFAULT_BANDIT_REBALANCE_S: Final = 600.0
DEFAULT_EXPERIMENT_READ_S: Final = 300.0
DEFAULT_WEBHOOK_TIMEOUT_S: Final = 10.0
DEFAULT_SWEEP_INTERVAL_S: Final = 600.0
DEFAULT_SWEEP_MIN_AGE_S: Final = 3600.0

SqliteSync = Literal["OFF", "NORMAL", "FULL", "EXTRA"]  # given in any case
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]  # any case
LogFormat = Literal["text", "json"]
TracingMode = Literal["auto", "on", "off"]  # adapters/telemetry.py says what auto means
Deployer = Literal["", "local", "none"]  # "": local for `serve`, none for the other roles

#: Fields whose values are read in any case, and the case they are kept in.
_CASE: Final = {"sqlite_synchronous": str.upper, "log_level": str.lower}
#: What an error message calls a field's value, where its name does not say.
_NOUNS: Final = {"sqlite_synchronous": "mode", "tracing": "tracing mode"}
_AT_FIELD: Final = re.compile(r" - at `\$\.(\w+)`$")


class SettingsError(ValueError):
    """A setting is wrong; modelyard refuses to start rather than guess."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Built by `load_settings`: its paths are absolute, its choices checked."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: str  # absolute: database, uploads, artifacts, signing key, model servers
    database_url: str = ""  # empty: SQLite at <data_dir>/modelyard.db; a SQLite path: absolute
    sqlite_synchronous: SqliteSync = "FULL"
    admin_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    log_level: LogLevel = DEFAULT_LOG_LEVEL
    log_format: LogFormat = "text"  # "json": one JSON object a line, with trace and span ids
    access_log: bool = False  # one line per request (the gateway's hot path included)
    # tracing: "auto" = on when an OTLP endpoint or OTEL_TRACES_EXPORTER is set (OTEL_* vars)
    tracing: TracingMode = "auto"
    # artifacts: empty = files under <data_dir>/artifacts; or s3://bucket/prefix
    artifact_url: str = ""
    s3_endpoint_url: str | None = None  # MinIO, moto...; None = AWS
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # None = the standard AWS credential chain
    s3_secret_access_key: str | None = None
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT
    public_url: str = ""  # how clients reach this server (download links); default from host:port
    # model servers: "local" runs `bentoml serve` per served version; "" = local for `serve`
    deployer: Deployer = ""
    # after a start, /readyz waits at most this long for served versions still on their way
    ready_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_READY_TIMEOUT_S
    # gateway
    registry_url: str = DEFAULT_REGISTRY_URL  # where `modelyard gateway` follows routes
    registry_token: str | None = None  # a deployer token: reads routes, reports windows
    gateway_max_body_bytes: int = DEFAULT_GATEWAY_MAX_BODY
    gateway_max_inflight: int = DEFAULT_GATEWAY_MAX_INFLIGHT  # past this, 503 with Retry-After
    gateway_report_s: float = DEFAULT_GATEWAY_REPORT_S  # how often a gateway reports its windows
    # the gateway's gRPC port (`serve`, `gateway`) on `host`; 0 = no gRPC
    grpc_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = DEFAULT_GRPC_PORT
    # rollouts
    rollout_tick_s: float = DEFAULT_ROLLOUT_TICK_S  # how often the leader looks at rollouts
    route_poll_s: float = DEFAULT_ROUTE_POLL_S  # how often the route feed looks for changes
    # traffic windows are kept this long (and as long as an active rollout reads them)
    windows_retention_h: Annotated[float, msgspec.Meta(ge=0)] = DEFAULT_WINDOWS_RETENTION_H
    # a bandit experiment's arms move at most this often (the leading registry moves them)
    bandit_rebalance_s: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_BANDIT_REBALANCE_S
    # a running experiment's tallies and shares are recorded this often (when they changed)
    experiment_read_s: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_EXPERIMENT_READ_S
    # a webhook receiver gets this long to answer; a crashed worker's rows wait 2.5 times it
    webhook_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = DEFAULT_WEBHOOK_TIMEOUT_S
    # the sweeper (docs/operations.md): at start, then this often; it removes a crashed
    # upload's leftovers and unreferenced artifacts only once they are older than the age
    sweep_interval_s: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_SWEEP_INTERVAL_S
    sweep_min_age_s: Annotated[float, msgspec.Meta(ge=0)] = DEFAULT_SWEEP_MIN_AGE_S
    # peers (IPs, networks, or `*`) whose X-Forwarded-Proto is believed: a TLS proxy in front
    forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS

    @property
    def trusted_proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.forwarded_allow_ips)

    def __post_init__(self) -> None:
        database = parse_database_url(self.metadata_url).sqlite_path
        for path in (Path(self.data_dir), database):
            if path is not None and not path.is_absolute():
                raise ValueError(f"{str(path)!r} is relative (load_settings makes paths absolute)")

    @property
    def metadata_url(self) -> str:
        """The metadata store's URL; SQLite's always with an absolute path (`sqlite:////...`)."""
        return self.database_url or sqlite_url(Path(self.data_dir) / DB_FILE).url

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def load_settings(env: Mapping[str, str], *, cwd: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from MODELYARD_* variables, then explicit overrides (None is ignored).
    Relative paths are resolved against `cwd`: the process's working directory, read here
    once, when not given."""
    values: dict[str, Any] = {}
    for field in Settings.__struct_fields__:
        raw = env.get(ENV_PREFIX + field.upper())
        if raw is not None and raw != "":
            values[field] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    _check_choices(values)
    _resolve_paths(values, Path.cwd() if cwd is None else cwd)
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(values, str(exc)) from None
    from adapters.telemetry import TelemetryError, tracing_wanted  # (the SDK: only here)

    try:  # an unknown OTEL_TRACES_EXPORTER is refused now, not when the app starts
        tracing_wanted(settings.tracing, env)
    except TelemetryError as exc:
        raise SettingsError(str(exc)) from None
    try:
        settings.trusted_proxies  # noqa: B018 (parsed now: a bad entry is refused at start)
    except ValueError as exc:
        raise SettingsError(f"{_named('forwarded_allow_ips')}: {exc}") from None
    if settings.artifact_url and not settings.artifact_url.startswith("s3://"):
        raise SettingsError(
            f"{_named('artifact_url')}: unknown artifact store {settings.artifact_url!r};"
            " use s3://bucket/prefix, or leave it empty for files under the data folder"
        )
    return settings


def _choices() -> dict[str, tuple[Any, ...]]:
    """Each field with a fixed set of values (a `Literal`), and those values."""
    hints = get_type_hints(Settings)
    return {
        field: get_args(hints[field])
        for field in Settings.__struct_fields__
        if get_origin(hints[field]) is Literal
    }


def _named(field: str) -> str:
    return f"{field} ({ENV_PREFIX}{field.upper()})"


def _check_choices(values: dict[str, Any]) -> None:
    """Refuse a value outside its field's `Literal`; keep a case-free one in its case."""
    for field, allowed in _choices().items():
        value = values.get(field)
        if value is None:
            continue
        case = _CASE.get(field)
        kept = case(value) if case is not None and isinstance(value, str) else value
        if kept in allowed:
            values[field] = kept
            continue
        offered = [str(v) for v in allowed if v]
        listed = ", ".join(offered[:-1]) + " or " + offered[-1] if len(offered) > 1 else offered[0]
        empty = ", or leave it empty" if "" in allowed else ""
        noun = _NOUNS.get(field, field.replace("_", " "))
        raise SettingsError(f"{_named(field)}: unknown {noun} {value!r}; use {listed}{empty}")


def _invalid(values: Mapping[str, Any], message: str) -> SettingsError:
    """msgspec's `Expected ... - at `$.port`` as `port (MODELYARD_PORT): ...`."""
    found = _AT_FIELD.search(message)
    if found is None:
        return SettingsError(f"invalid setting: {message}")
    field, detail = found[1], message[: found.start()]
    return SettingsError(f"{_named(field)}: invalid value {values.get(field)!r}: {detail}")


def _resolve_paths(values: dict[str, Any], cwd: Path) -> None:
    """Make the data folder and a SQLite database path absolute against `cwd`, in place."""
    if not cwd.is_absolute():
        raise SettingsError(f"the working directory must be an absolute path, not {str(cwd)!r}")
    data_dir = values.get("data_dir", DEFAULT_DATA_DIR)
    if not isinstance(data_dir, str | Path) or str(data_dir) == "":
        raise SettingsError(f"data_dir must name a folder, not {data_dir!r}")
    values["data_dir"] = str(absolute(data_dir, cwd))
    database_url = values.get("database_url")
    if database_url:
        try:
            values["database_url"] = parse_database_url(str(database_url)).resolved(cwd).url
        except BadDatabaseUrl as exc:
            raise SettingsError(f"invalid database_url: {exc}") from None
