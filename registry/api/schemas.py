"""Response bodies of the REST API that are not domain entities themselves."""

from __future__ import annotations

import msgspec

from registry.domain import AuditEvent, Model, ModelVersion, Token
from registry.serving import VersionHealth


class ModelPage(msgspec.Struct):
    items: list[Model]
    next_cursor: str | None = None


class VersionPage(msgspec.Struct):
    items: list[ModelVersion]
    next_cursor: str | None = None


class AuditPage(msgspec.Struct):
    items: list[AuditEvent]
    next_cursor: str | None = None


class TokenList(msgspec.Struct):
    items: list[Token]


class IssuedTokenBody(msgspec.Struct):
    token: str
    id: int
    name: str
    role: str
    note: str = "store this token now: it is shown only once"


class Health(msgspec.Struct, omit_defaults=True):
    status: str  # ok | starting (503: model servers on their way) | unavailable (503: store)
    detail: str | None = None
    rollouts: str | None = None  # "leading": this replica drives the rollouts; or "standby"
    #: Served versions that do not answer now (registry.serving lists the statuses).
    not_ready: list[VersionHealth] = []
