"""Settings, read once when the app is built (never at import time).

Every field can come from a `MODELYARD_<FIELD>` environment variable or a CLI flag; flags win.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
DEFAULT_DATA_DIR: Final = ".modelyard"
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
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: str = DEFAULT_DATA_DIR
    database_url: str = ""  # empty: SQLite at <data_dir>/modelyard.db
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

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'modelyard.db'}"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def load_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Build Settings from MODELYARD_* variables, then explicit overrides (None is ignored)."""
    values: dict[str, Any] = {}
    for field in Settings.__struct_fields__:
        raw = env.get(ENV_PREFIX + field.upper())
        if raw is not None and raw != "":
            values[field] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
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
    scheme = settings.metadata_url.split("://", 1)[0]
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise SettingsError(
            f"unknown metadata store {scheme!r} in database_url: use sqlite:///PATH or"
            " postgresql://USER@HOST/DB"
        )
    return settings
