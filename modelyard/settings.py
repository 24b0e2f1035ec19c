"""Settings, read once when the app is built (never at import time).

Every field can come from a `MODELYARD_<FIELD>` environment variable or a CLI flag; flags win.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
DEFAULT_DATA_DIR: Final = ".modelyard"
DEFAULT_MAX_BODY: Final = 1024 * 1024
SQLITE_SYNC_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
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

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'modelyard.db'}"


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
    scheme = settings.metadata_url.split("://", 1)[0]
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise SettingsError(
            f"unknown metadata store {scheme!r} in database_url: use sqlite:///PATH or"
            " postgresql://USER@HOST/DB"
        )
    return settings
