"""Response bodies of the REST API that are not domain entities themselves."""

from __future__ import annotations

import msgspec

from registry.catalog.domain import AuditEvent, Model, ModelVersion, Token


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
