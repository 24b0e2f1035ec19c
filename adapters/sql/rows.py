"""Rows to Structs and back (times as integer microseconds, JSON as text), for every area."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from adapters.sql.driver import Row
from contract.routes import ApiSpec
from contract.traffic import TrafficPolicy
from registry.catalog.domain import (
    AuditEvent,
    Model,
    ModelVersion,
    Role,
    Stage,
    Token,
    VersionStatus,
)

_enc = msgspec.json.Encoder()
_str_map = msgspec.json.Decoder(dict[str, str])
_float_map = msgspec.json.Decoder(dict[str, float])
_apis = msgspec.json.Decoder(list[ApiSpec])
_traffic = msgspec.json.Decoder(TrafficPolicy)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)


def to_micros(at: datetime) -> int:
    """Exact integer microseconds (no float rounding: audit hashes cover these times)."""
    return (at - _EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def dumps(value: Any) -> str:
    return _enc.encode(value).decode()


MODEL_COLUMNS: Final = (
    "m.name, m.description, m.tags, m.owner, m.created_at, m.updated_at, m.revision,"
    " m.latest_version, m.traffic, m.id"
)
MODEL_ID_COLUMN: Final = 9


def _aliases_of_model(packed: str | None) -> dict[str, int]:
    """`champion=3,challenger=4` (a string aggregate; alias names never hold `,` or `=`)."""
    if not packed:
        return {}
    pairs = (item.split("=", 1) for item in packed.split(","))
    return {alias: int(number) for alias, number in sorted(pairs)}


def _aliases_of_version(packed: str | None) -> list[str]:
    return sorted(packed.split(",")) if packed else []


def model_from_row(row: Row, aliases: dict[str, int] | None = None) -> Model:
    """A model row; its aliases come from `aliases` or else from a packed 11th column."""
    if aliases is None:
        aliases = _aliases_of_model(row[10]) if len(row) > 10 else {}
    return Model(
        name=row[0],
        description=row[1],
        tags=_str_map.decode(row[2]),
        owner=row[3],
        created_at=from_micros(row[4]),
        updated_at=from_micros(row[5]),
        revision=row[6],
        latest_version=row[7],
        aliases=aliases,
        traffic=None if row[8] is None else _traffic.decode(row[8]),
    )


def model_values(m: Model) -> tuple[Any, ...]:
    """The first nine columns of MODEL_COLUMNS (all but the row id), in order."""
    return (
        m.name,
        m.description,
        dumps(m.tags),
        m.owner,
        to_micros(m.created_at),
        to_micros(m.updated_at),
        m.revision,
        m.latest_version,
        traffic_value(m),
    )


def traffic_value(m: Model) -> str | None:
    return None if m.traffic is None else dumps(m.traffic)


VERSION_COLUMNS: Final = (
    "v.version, v.stage, v.status, v.description, v.artifact_uri, v.digest, v.size_bytes,"
    " v.format, v.bento_tag, v.apis, v.endpoint, v.run_id, v.source, v.metrics, v.params,"
    " v.tags, v.created_by, v.created_at, v.updated_at, v.revision, v.logged_model_id,"
    " v.run_link"
)
VERSION_WIDTH: Final = 22


def version_from_row(model: str, row: Row, aliases: list[str] | None = None) -> ModelVersion:
    """A version row; its aliases come from `aliases` or else from a packed 23rd column."""
    if aliases is None:
        aliases = _aliases_of_version(row[VERSION_WIDTH]) if len(row) > VERSION_WIDTH else []
    return ModelVersion(
        model=model,
        version=row[0],
        stage=Stage(row[1]),
        status=VersionStatus(row[2]),
        description=row[3],
        artifact_uri=row[4],
        digest=row[5],
        size_bytes=row[6],
        format=row[7],
        bento_tag=row[8],
        apis=_apis.decode(row[9]),
        endpoint=row[10],
        run_id=row[11],
        source=row[12],
        metrics=_float_map.decode(row[13]),
        params=_str_map.decode(row[14]),
        tags=_str_map.decode(row[15]),
        created_by=row[16],
        created_at=from_micros(row[17]),
        updated_at=from_micros(row[18]),
        revision=row[19],
        aliases=aliases,
        logged_model_id=row[20],
        run_link=row[21],
    )


def version_values(v: ModelVersion) -> tuple[Any, ...]:
    """The columns of VERSION_COLUMNS, in order."""
    return (
        v.version,
        v.stage.value,
        v.status.value,
        v.description,
        v.artifact_uri,
        v.digest,
        v.size_bytes,
        v.format,
        v.bento_tag,
        dumps(v.apis),
        v.endpoint,
        v.run_id,
        v.source,
        dumps(v.metrics),
        dumps(v.params),
        dumps(v.tags),
        v.created_by,
        to_micros(v.created_at),
        to_micros(v.updated_at),
        v.revision,
        v.logged_model_id,
        v.run_link,
    )


AUDIT_COLUMNS: Final = (
    "scope, seq, at, actor, action, model, version, alias, before, after, reason, request_id,"
    " prev_hash, hash"
)


def audit_from_row(row: Row) -> AuditEvent:
    return AuditEvent(
        scope=row[0],
        seq=row[1],
        at=from_micros(row[2]),
        actor=row[3],
        action=row[4],
        model=row[5],
        version=row[6],
        alias=row[7],
        before=None if row[8] is None else msgspec.Raw(row[8].encode()),
        after=None if row[9] is None else msgspec.Raw(row[9].encode()),
        reason=row[10],
        request_id=row[11],
        prev_hash=row[12],
        hash=row[13],
    )


def audit_values(ev: AuditEvent) -> tuple[Any, ...]:
    return (
        ev.scope,
        ev.seq,
        to_micros(ev.at),
        ev.actor,
        ev.action,
        ev.model,
        ev.version,
        ev.alias,
        None if ev.before is None else bytes(ev.before).decode(),
        None if ev.after is None else bytes(ev.after).decode(),
        ev.reason,
        ev.request_id,
        ev.prev_hash,
        ev.hash,
    )


TOKEN_COLUMNS: Final = "id, name, role, prefix, created_by, created_at, revoked_at"  # noqa: S105


def token_from_row(row: Row) -> Token:
    return Token(
        id=row[0],
        name=row[1],
        role=Role(row[2]),
        prefix=row[3],
        created_by=row[4],
        created_at=from_micros(row[5]),
        revoked_at=None if row[6] is None else from_micros(row[6]),
    )
