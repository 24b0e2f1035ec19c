"""Registry entities and the rules of names. Pure: no IO, only msgspec Structs."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import msgspec

from contract.routes import ApiSpec
from contract.traffic import TrafficPolicy
from contract.windows import MAX_MODEL_NAME
from registry.errors import InvalidInput

#: The longest model name, in every store and in the gateway's reports (MLflow's own registry
#: column is VARCHAR(256)).
MAX_NAME: Final = MAX_MODEL_NAME
#: A model name as MLflow accepts one (mlflow/utils/validation.py `_validate_model_name`): not
#: blank, no `/` or `:`, not `.` and not starting with `..` (it must not resolve to another
#: path); spaces and any other character allowed, but no control characters (newlines, NUL).
NAME_PATTERN: Final = rf"^(?!\.\.)(?!\.$)(?=.*\S)[^/:\x00-\x1f\x7f]{{1,{MAX_NAME}}}$"
ALIAS_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
MAX_TAG_KEY: Final = 250
MAX_TAG_VALUE: Final = 5000
MAX_DESCRIPTION: Final = 5000
MAX_TAGS: Final = 100

_NAME_RE = re.compile(NAME_PATTERN)
_ALIAS_RE = re.compile(ALIAS_PATTERN)
_RESERVED_ALIAS_RE = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)

ModelName = Annotated[
    str, msgspec.Meta(pattern=NAME_PATTERN, description="as MLflow: no `/`, `:` or control chars")
]
AliasName = Annotated[str, msgspec.Meta(pattern=ALIAS_PATTERN)]
Description = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION)]
TagKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_KEY)]
TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE)]
Tags = Annotated[dict[TagKey, TagValue], msgspec.Meta(max_length=MAX_TAGS)]


class Stage(enum.StrEnum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


#: Stages that hold at most one version once `archive_existing` was used (Production: always).
EXCLUSIVE_STAGES: Final = (Stage.STAGING, Stage.PRODUCTION)


class VersionStatus(enum.StrEnum):
    READY = "READY"
    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"


class Role(enum.StrEnum):
    READER = "reader"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_ROLE_RANK: Final = {Role.READER: 0, Role.DEPLOYER: 1, Role.ADMIN: 2}


class Model(msgspec.Struct, frozen=True):
    name: str
    description: str
    tags: dict[str, str]
    owner: str
    created_at: datetime
    updated_at: datetime
    revision: int
    latest_version: int
    aliases: dict[str, int] = {}
    traffic: TrafficPolicy | None = None


class ModelVersion(msgspec.Struct, frozen=True):
    model: str
    version: int
    stage: Stage
    status: VersionStatus
    description: str
    artifact_uri: str | None
    digest: str | None
    size_bytes: int | None
    format: str
    bento_tag: str | None
    apis: list[ApiSpec]
    endpoint: str | None
    run_id: str | None
    source: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    revision: int
    aliases: list[str] = []
    # what an MLflow 3 client links a version it registers to: the tracking server's logged
    # model (`m-...`) and a link to the run; None for versions made through /api/v1
    logged_model_id: str | None = None
    run_link: str | None = None


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: a token's name and role."""

    token_id: int
    name: str
    role: Role


class Token(msgspec.Struct, frozen=True):
    id: int
    name: str
    role: Role
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class AuditEvent(msgspec.Struct, frozen=True):
    """One appended change. `hash` covers every other field, `prev_hash` links the chain."""

    scope: str
    seq: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None
    alias: str | None
    before: msgspec.Raw | None
    after: msgspec.Raw | None
    reason: str | None
    request_id: str | None
    prev_hash: str
    hash: str


def validate_name(name: str, field: str = "name") -> str:
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"`{field}` must be 1-{MAX_NAME} characters, not blank, without `/`, `:` or control"
            f" characters, and not `.` or starting with `..`; got {name[: MAX_NAME + 12]!r}",
            field=field,
        )
    return name


def validate_alias(alias: str, field: str = "alias") -> str:
    if not _ALIAS_RE.match(alias) or _RESERVED_ALIAS_RE.match(alias):
        raise InvalidInput(
            f"`{field}` must match {ALIAS_PATTERN} and not be `latest` or `v<number>`;"
            f" got {alias[:80]!r}",
            field=field,
        )
    return alias


def validate_tag_key(key: str, field: str = "key") -> str:
    if not 0 < len(key) <= MAX_TAG_KEY:
        raise InvalidInput(f"`{field}` must be 1-{MAX_TAG_KEY} characters", field=field)
    return key


MODEL_SCOPE_PREFIX: Final = "model:"


def model_scope(name: str) -> str:
    """The audit chain (and write lock) that a model's changes go into."""
    return f"{MODEL_SCOPE_PREFIX}{name}"


SYSTEM_SCOPE: Final = "system"


def _micros(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def model_etag(model: Model) -> str:
    """Opaque: changes with every write, and differs for a re-created model of the same name."""
    return f'"m{model.revision}.{_micros(model.created_at)}"'


def version_etag(version: ModelVersion) -> str:
    return f'"v{version.version}.{version.revision}.{_micros(version.created_at)}"'
