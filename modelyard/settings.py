"""Settings, read once when the app is built (never at import time).

Every field can come from a `MODELYARD_<FIELD>` environment variable or a CLI flag; flags win.
Relative paths (the data folder, a `sqlite:///relative.db` URL) are made absolute here, once,
against the working directory at start: nothing later depends on where the process stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from adapters.sql.database_url import BadDatabaseUrl, absolute, parse_database_url, sqlite_url

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
DEFAULT_DATA_DIR: Final = ".modelyard"  # relative: to the working directory at start
DB_FILE: Final = "modelyard.db"
DEFAULT_MAX_BODY: Final = 1024 * 1024
DEFAULT_MAX_ARTIFACT: Final = 20 * 1024**3
DEPLOYERS: Final = ("", "local", "none")
SQLITE_SYNC_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
TRACING_MODES: Final = ("auto", "on", "off")  # adapters/telemetry.py says what auto means
LOG_FORMATS: Final = ("text", "json")
ENV_PREFIX: Final = "MODELYARD_"


class SettingsError(ValueError):
    """A setting is wrong; modelyard refuses to start rather than guess."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Built by `load_settings`: its paths are absolute."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: str  # absolute: database, uploads, artifacts, signing key, model servers
    database_url: str = ""  # empty: SQLite at <data_dir>/modelyard.db; a SQLite path: absolute
    sqlite_synchronous: str = "FULL"
    admin_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    log_level: str = "info"
    log_format: str = "text"  # "json": one JSON object a line, with trace and span ids
    access_log: bool = False  # one line per request (the gateway's hot path included)
    # tracing: "auto" = on when an OTLP endpoint or OTEL_TRACES_EXPORTER is set (OTEL_* vars)
    tracing: str = "auto"
    # artifacts: empty = files under <data_dir>/artifacts; or s3://bucket/prefix
    artifact_url: str = ""
    s3_endpoint_url: str | None = None  # MinIO, moto...; None = AWS
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # None = the standard AWS credential chain
    s3_secret_access_key: str | None = None
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT
    public_url: str = ""  # how clients reach this server (download links); default from host:port
    # model servers: "local" runs `bentoml serve` per served version; "" = local for `serve`
    deployer: str = ""
    # after a start, /readyz waits at most this long for served versions still on their way
    ready_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    # gateway
    registry_url: str = "http://127.0.0.1:8000"  # where `modelyard gateway` follows routes
    registry_token: str | None = None  # a deployer token: reads routes, reports windows
    gateway_max_body_bytes: int = 16 * 1024 * 1024
    gateway_max_inflight: int = 1024  # past this, 503 with Retry-After (load shedding)
    gateway_report_s: float = 2.0  # how often a gateway reports its traffic windows
    # rollouts
    rollout_tick_s: float = 0.5  # how often the leading registry looks at active rollouts
    # traffic windows are kept this long (and as long as an active rollout reads them)
    windows_retention_h: Annotated[float, msgspec.Meta(ge=0)] = 168.0
    # a webhook receiver gets this long to answer; a crashed worker's rows wait 2.5 times it
    webhook_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0

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
    _resolve_paths(values, Path.cwd() if cwd is None else cwd)
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
    if settings.sqlite_synchronous.upper() not in SQLITE_SYNC_MODES:
        raise SettingsError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNC_MODES)}")
    if settings.tracing not in TRACING_MODES:
        raise SettingsError(f"unknown tracing mode {settings.tracing!r}: use auto, on or off")
    from adapters.telemetry import TelemetryError, tracing_wanted  # (the SDK: only here)

    try:  # an unknown OTEL_TRACES_EXPORTER is refused now, not when the app starts
        tracing_wanted(settings.tracing, env)
    except TelemetryError as exc:
        raise SettingsError(str(exc)) from None
    if settings.log_format not in LOG_FORMATS:
        raise SettingsError(f"unknown log format {settings.log_format!r}: use text or json")
    if settings.deployer not in DEPLOYERS:
        raise SettingsError(f"unknown deployer {settings.deployer!r}: use local or none")
    if settings.artifact_url and not settings.artifact_url.startswith("s3://"):
        raise SettingsError(
            f"unknown artifact store {settings.artifact_url!r}: use s3://bucket/prefix,"
            " or leave it empty for files under the data folder"
        )
    return settings


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
